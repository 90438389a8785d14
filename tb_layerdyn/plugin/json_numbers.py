"""JSON text for large float arrays, written by numpy instead of one ``repr`` per number.

A series route of 100 layers x 5,000 steps holds half a million numbers; ``json.dumps`` formats
each with a Python-level ``repr`` and takes longer than everything else in the request. Here every
finite number becomes a fixed-width record in scientific notation with nine significant digits
(``" 1.23456789e-003"``), which reads back as exactly the float32 it came from; NaN and infinities
become ``null``. Fixed width lets numpy write all digits at once; the padding is JSON whitespace.
"""

import numpy as np

SIGNIFICANT = 9
# sign or space, one digit, '.', eight digits, 'e', exponent sign, three digits, then ',' or ']'
_WIDTH = 17
_NULL = np.frombuffer(b"null".ljust(_WIDTH - 1), dtype=np.uint8)


def _decimal_parts(magnitude):
    """Mantissas in ``[10**8, 10**9)`` and exponents with ``m * 10**(e - 8) ~= magnitude``.

    ``magnitude`` must be finite and positive.
    """
    exponent = np.floor(np.log10(magnitude)).astype(np.int64)
    # log10 can land one off next to a power of ten, and rounding can carry to ten digits: fix
    # both with a second pass over the few values concerned.
    for _ in range(2):
        mantissa = np.rint(magnitude / np.power(10.0, exponent - (SIGNIFICANT - 1)))
        too_big = mantissa >= 10**SIGNIFICANT
        too_small = mantissa < 10 ** (SIGNIFICANT - 1)
        if not (too_big.any() or too_small.any()):
            break
        exponent = exponent + too_big - too_small
    return mantissa.astype(np.int64), exponent


# "000" .. "999" as ASCII, so three digits are written with one gather instead of three divisions.
_THREE_DIGITS = np.array([list(f"{i:03d}".encode()) for i in range(1000)], dtype=np.uint8)


def _records(values):
    """``values.shape + (_WIDTH,)`` uint8 records of a float array, each ending in ','."""
    finite = np.isfinite(values)
    magnitude = np.abs(np.where(finite, values, 0.0))
    nonzero = magnitude > 0
    mantissa, exponent = _decimal_parts(np.where(nonzero, magnitude, 1.0))
    mantissa = np.where(nonzero, mantissa, 0)
    exponent = np.where(nonzero, exponent, 0)

    out = np.empty(values.shape + (_WIDTH,), dtype=np.uint8)
    out[..., 0] = np.where(values < 0, ord("-"), ord(" "))
    leading = _THREE_DIGITS[mantissa // 1_000_000]
    out[..., 1] = leading[..., 0]
    out[..., 2] = ord(".")
    out[..., 3:5] = leading[..., 1:]
    out[..., 5:8] = _THREE_DIGITS[(mantissa // 1000) % 1000]
    out[..., 8:11] = _THREE_DIGITS[mantissa % 1000]
    out[..., 11] = ord("e")
    out[..., 12] = np.where(exponent < 0, ord("-"), ord("+"))
    out[..., 13:16] = _THREE_DIGITS[np.abs(exponent)]
    out[..., 16] = ord(",")
    out[~finite, : _WIDTH - 1] = _NULL
    return out


def float_rows(values):
    """JSON text of a 2-D float array as a list of rows: ``"[[1,null],[2,3]]"``.

    Args:
        values: array-like of shape ``(rows, cols)`` within float32's range; NaN and infinities
            are written as ``null``.

    Returns:
        The JSON text. A number parses back to exactly its input when the input is a float32
        value, and to within nine significant digits otherwise.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D, got shape {values.shape}")
    rows, cols = values.shape
    if rows == 0:
        return "[]"
    if cols == 0:
        return "[" + ",".join(["[]"] * rows) + "]"
    text = np.empty((rows, cols * _WIDTH + 2), dtype=np.uint8)
    text[:, 0] = ord("[")
    text[:, 1:-1] = _records(values).reshape(rows, cols * _WIDTH)
    text[:, -2] = ord("]")
    text[:, -1] = ord(",")
    return "[" + text.tobytes()[:-1].decode("ascii") + "]"


def int_list(values):
    """JSON text of a 1-D integer array: ``"[0,10,20]"``."""
    return "[" + ",".join(map(str, np.asarray(values, dtype=np.int64).tolist())) + "]"
