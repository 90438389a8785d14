"""Parses query parameters for the plugin's routes, answering bad ones with a 400 that names them."""

import math
import re

from tensorboard import errors

# A plain decimal number: no "inf", "nan", underscores or non-ASCII digits, which float() accepts.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def required(request, name):
    """The value of a required query parameter.

    Raises:
        errors.InvalidArgumentError: the parameter is missing or empty.
    """
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"query parameter '{name}' is required")
    return value


def optional(request, name):
    """The value of an optional query parameter, ``None`` when absent.

    Raises:
        errors.InvalidArgumentError: the parameter is present but empty.
    """
    value = request.args.get(name)
    if value == "":
        raise errors.InvalidArgumentError(f"query parameter '{name}' is empty; leave it out instead")
    return value


def choice(request, name, options, default):
    """The value of an optional parameter that must be one of ``options``.

    Raises:
        errors.InvalidArgumentError: the value is not one of ``options``.
    """
    value = request.args.get(name)
    if value is None:
        return default
    if value not in options:
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be one of {', '.join(options)}; got {value!r}"
        )
    return value


def integer(request, name, default, low, high):
    """The value of an optional integer parameter within ``[low, high]``.

    Raises:
        errors.InvalidArgumentError: the value is not a decimal integer or out of range.
    """
    value = request.args.get(name)
    if value is None:
        return default
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > max(12, len(str(high))):
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be an integer from {low} to {high}; got {value!r}"
        )
    number = int(text)
    if not low <= number <= high:
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be an integer from {low} to {high}; got {number}"
        )
    return number


def required_choice(request, name, options):
    """The value of a required parameter that must be one of ``options``.

    Raises:
        errors.InvalidArgumentError: the parameter is missing or not one of ``options``.
    """
    required(request, name)
    return choice(request, name, options, None)


def required_integer(request, name, low, high):
    """The value of a required integer parameter within ``[low, high]``.

    Raises:
        errors.InvalidArgumentError: the parameter is missing, not a decimal integer or out of
            range.
    """
    required(request, name)
    return integer(request, name, None, low, high)


def number(request, name, default, low):
    """The value of an optional finite decimal number of at least ``low``.

    Raises:
        errors.InvalidArgumentError: the value is not a plain decimal number, not finite, or
            below ``low``.
    """
    value = request.args.get(name)
    if value is None:
        return default
    text = value.strip()
    parsed = float(text) if len(text) <= 40 and _DECIMAL.fullmatch(text) else math.nan
    if not (math.isfinite(parsed) and parsed >= low):
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be a number of at least {low}; got {value!r}"
        )
    return parsed
