"""Parses query parameters for the plugin's routes, answering bad ones with a 400 that names them."""

from tensorboard import errors


def required(request, name):
    """The value of a required query parameter.

    Raises:
        errors.InvalidArgumentError: the parameter is missing or empty.
    """
    value = request.args.get(name)
    if value is None or value == "":
        raise errors.InvalidArgumentError(f"query parameter '{name}' is required")
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
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be an integer from {low} to {high}; got {value!r}"
        )
    number = int(text)
    if not low <= number <= high:
        raise errors.InvalidArgumentError(
            f"query parameter '{name}' must be an integer from {low} to {high}; got {number}"
        )
    return number
