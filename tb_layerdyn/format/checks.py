"""Small checks of decoded JSON content, shared by the payload kinds.

Each raises ``envelope.FormatError`` with a message that names the key and what it holds, so a
reader's one warning says exactly what was wrong with a payload.
"""

import math

from tb_layerdyn.format.envelope import FormatError


def built(content, parse, kind, version):
    """``content``, a layout a writer built, once ``parse`` accepts it as ``kind`` at ``version``.

    Raises:
        ValueError: the layout breaks its rules (the writer's arguments do); the message names the
            key, as readers' warnings do.
    """
    try:
        parse(dict(content, kind=kind, version=version))
    except FormatError as error:
        raise ValueError(str(error)) from None
    return content


def names(content, key, *, unique=True, allow_empty=False):
    """``content[key]`` as a list of strings."""
    value = content.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"content key {key!r} must be a list of strings, got {_kind(value)}")
    if not value and not allow_empty:
        raise FormatError(f"content key {key!r} is empty")
    if unique and len(set(value)) != len(value):
        raise FormatError(f"content key {key!r} names some entries twice")
    return value


def optional_string(content, key):
    """``content[key]`` as a string, or ``None`` when absent or null."""
    value = content.get(key)
    if value is None or isinstance(value, str):
        return value
    raise FormatError(f"content key {key!r} must be a string, got {_kind(value)}")


def counts(content, key, length):
    """``content[key]`` as a list of ``length`` non-negative integers."""
    value = content.get(key)
    if not isinstance(value, list) or not all(_is_int(v) and v >= 0 for v in value):
        raise FormatError(f"content key {key!r} must be a list of non-negative integers")
    if len(value) != length:
        raise FormatError(f"content key {key!r} has {len(value)} entries for {length}")
    return value


def number(content, key):
    """``content[key]`` as a finite float."""
    value = content.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FormatError(f"content key {key!r} must be a finite number, got {_kind(value)}")
    return float(value)


def numbers(content, key):
    """``content[key]`` as a non-empty list of finite floats."""
    value = content.get(key)
    if (
        not isinstance(value, list)
        or not value
        or not all(not isinstance(v, bool) and isinstance(v, (int, float)) for v in value)
        or not all(math.isfinite(v) for v in value)
    ):
        raise FormatError(f"content key {key!r} must be a non-empty list of finite numbers")
    return [float(v) for v in value]


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(value):
    return "nothing" if value is None else type(value).__name__
