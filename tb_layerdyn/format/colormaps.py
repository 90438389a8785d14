"""The colours of pictures: a diverging map for signed values, gray for activations, opacity for travel.

Numpy only: ``read()``, the plugin and the writer's tests import this, and the tab's
``frontend/src/panels/filmstrip/colormap.js`` spells the same arithmetic in JavaScript (a test
checks the two agree pixel for pixel). Every formula below is written out so that both give the
same bytes: float64 arithmetic in the order shown, and ``floor(c + 0.5)`` to round.

Diverging (weights, gradients, updates)
---------------------------------------
ColorBrewer's 11-class PiYG scheme (Cynthia Brewer, colorbrewer2.org), from purple-pink through a
near-white centre to green: ``PIYG`` holds its eleven colours as published. For a value ``v`` and a
scale ``s > 0``::

    x = clip(v / s, -1, 1)          (x = 0 when s == 0)
    p = (x + 1) * 5                 in [0, 10]: the position among the eleven colours
    i = min(floor(p), 9);  f = p - i
    channel = floor(PIYG[i] + f * (PIYG[i + 1] - PIYG[i]) + 0.5)

so zero is exactly the centre colour ``PIYG[5]`` (#f7f7f7), ``-s`` and below are ``PIYG[0]``
(#8e0152, negative is purple) and ``+s`` and above ``PIYG[10]`` (#276419, positive is green).

Gray (activations)
------------------
For a range ``[low, high]``: ``t = clip((v - low) / (high - low), 0, 1)`` (``t = 0.5`` when
``high == low``) and every channel is ``floor(255 * t + 0.5)``: black at ``low``, white at ``high``.

Opacity (travel)
----------------
A weight's diverging colour ``c`` (bytes, as above) drawn with opacity
``a = clip(travel / t, 0, 1)`` (``a = 0`` when ``t == 0``) over white, as in Nemcova's figures of
how far each parameter travelled: ``channel = floor(a * c + (1 - a) * 255 + 0.5)``. A weight that
has not moved is white; one that moved ``t`` or more has its full colour.

Values that are not finite (NaN, +-Inf) are drawn ``NAN_RGB``; the gaps between tiles and the empty
cells of a grid are ``BACKGROUND_RGB``. Neither colour occurs in the maps.
"""

import numpy as np

# ColorBrewer PiYG, 11 classes, negative (purple) to positive (green).
PIYG = (
    (142, 1, 82),     # #8e0152
    (197, 27, 125),   # #c51b7d
    (222, 119, 174),  # #de77ae
    (241, 182, 218),  # #f1b6da
    (253, 224, 239),  # #fde0ef
    (247, 247, 247),  # #f7f7f7, zero
    (230, 245, 208),  # #e6f5d0
    (184, 225, 134),  # #b8e186
    (127, 188, 65),   # #7fbc41
    (77, 146, 33),    # #4d9221
    (39, 100, 25),    # #276419
)
NAN_RGB = (255, 0, 0)
BACKGROUND_RGB = (30, 40, 80)
WHITE = 255

_PIYG = np.asarray(PIYG, dtype=np.float64)


def _round(channel):
    return np.floor(channel + 0.5).astype(np.uint8)


def diverging(values, scale):
    """PiYG colours of signed values for a symmetric scale ``[-scale, scale]``.

    Args:
        values: an array of any shape.
        scale: ``s >= 0``; values at or beyond ``+-s`` take the map's ends.

    Returns:
        ``uint8`` array of ``values.shape + (3,)``.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if scale > 0:
        x = np.clip(np.where(finite, values, 0.0) / scale, -1.0, 1.0)
    else:
        x = np.zeros(values.shape)
    p = (x + 1.0) * 5.0
    i = np.minimum(np.floor(p), 9).astype(np.intp)
    f = (p - i)[..., None]
    out = _round(_PIYG[i] + f * (_PIYG[i + 1] - _PIYG[i]))
    out[~finite] = NAN_RGB
    return out


def gray(values, low, high):
    """Gray levels of values over ``[low, high]``, as RGB ``uint8`` of ``values.shape + (3,)``."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if high > low:
        t = np.clip((np.where(finite, values, low) - low) / (high - low), 0.0, 1.0)
    else:
        t = np.full(values.shape, 0.5)
    out = np.repeat(_round(255.0 * t)[..., None], 3, axis=-1)
    out[~finite] = NAN_RGB
    return out


def over_white(colours, travel, scale):
    """Colours drawn with the opacity of ``travel / scale`` over white (see the module docstring).

    Args:
        colours: ``uint8`` RGB array ``shape + (3,)`` (e.g. from ``diverging``).
        travel: non-negative values of ``shape``; non-finite ones are drawn ``NAN_RGB``.
        scale: the travel at and beyond which the colour is opaque; ``0`` draws white.
    """
    travel = np.asarray(travel, dtype=np.float64)
    finite = np.isfinite(travel)
    if scale > 0:
        alpha = np.clip(np.where(finite, travel, 0.0) / scale, 0.0, 1.0)[..., None]
    else:
        alpha = np.zeros(travel.shape + (1,))
    out = _round(alpha * colours.astype(np.float64) + (1.0 - alpha) * WHITE)
    out[~finite] = NAN_RGB
    out[(colours == NAN_RGB).all(axis=-1)] = NAN_RGB
    return out


def fixture():
    """The table and sample colours that ``colormap.js`` must reproduce, as JSON-ready data.

    The tab's test reads this from ``frontend/test/fixtures/picture_colormap.json`` and the Python
    test checks that file against this function, so neither side can drift alone.
    """
    signed = [-2.0, -1.0, -0.75, -0.5, -0.3, -0.1, -1e-3, 0.0, 1e-3, 0.1, 0.25, 0.333, 0.5,
              0.7, 0.9, 0.99, 1.0, 3.0]
    grays = [-1.0, 0.0, 0.1, 0.25, 0.5, 0.501, 0.75, 0.999, 1.0, 2.0]
    travels = [0.0, 0.05, 0.25, 0.5, 0.6, 0.999, 1.0, 4.0]
    colour = diverging(np.array([0.8]), 1.0)[0]
    return {
        "piyg": [list(c) for c in PIYG],
        "nan": list(NAN_RGB),
        "background": list(BACKGROUND_RGB),
        "diverging": {
            "scale": 1.0,
            "values": signed,
            "rgb": diverging(np.array(signed), 1.0).tolist(),
            "zero_scale_rgb": diverging(np.array([-5.0, 5.0]), 0.0).tolist(),
        },
        "gray": {
            "low": 0.0,
            "high": 1.0,
            "values": grays,
            "rgb": gray(np.array(grays), 0.0, 1.0).tolist(),
        },
        "opacity": {
            "colour": colour.tolist(),
            "scale": 0.5,
            "travel": travels,
            "rgb": over_white(np.repeat(colour[None], len(travels), 0), np.array(travels), 0.5).tolist(),
        },
    }
