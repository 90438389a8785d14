"""The filmstrip's pictures: ``frontend/test/fixtures/filmstrip_pictures.json`` is what the tab's
``picture.js`` is tested against (levels back to values, scales, colours laid out in tiles), and
this test keeps it equal to what ``tb_layerdyn.format.pictures`` computes, so that the tab and
``read()`` draw the same pixels.

Regenerate it with ``python3 tests/test_filmstrip_fixture.py`` after a deliberate change.
"""

import json
import os

import numpy as np

from tb_layerdyn.format import png
from tb_layerdyn.format import pictures as payload

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "frontend", "test", "fixtures", "filmstrip_pictures.json")


def _case(name, kind, shape, tile, cells, planes, fixed_from):
    """One picture: its ``frame`` facts and levels as the route sends them, and the pixels
    ``payload.rgb`` draws with a fixed scale and with the frame's own."""
    content = payload.layout(picture=kind, layers=[name], shapes=[shape], tiles=[tile], cells=[cells],
                             descriptions=[f"{name}: a test picture"])
    parsed = payload.parse_layout(dict(content, kind=payload.KIND, version=payload.VERSION))
    encoded = [payload.encode(values, m) for values, m in zip(planes, parsed.maps)]
    others = [payload.encode(values, m) for values, m in zip(fixed_from, parsed.maps)]
    fixed = [payload.fixed_scale(m, [a.quantiles, b.quantiles]) for m, a, b in zip(parsed.maps, encoded, others)]
    values = [plane.values() for plane in encoded]
    picture = payload.Picture(name, tuple(encoded))
    return {
        "name": name,
        "maps": list(parsed.maps),
        "planes": list(parsed.planes),
        "picture": {
            "description": parsed.descriptions[0],
            "shape": list(shape),
            "tile": list(tile),
            "cells": cells,
            "planes": [{"interval": list(p.interval), "quantiles": list(p.quantiles)} for p in encoded],
        },
        "levels": [png.decode(p.png).ravel().tolist() for p in encoded],
        "values": [[None if np.isnan(v) else float(v) for v in plane.ravel()] for plane in values],
        "drawn": list(parsed.drawn_shape(0)),
        "fixed": [list(s) for s in fixed],
        "frame_scales": [list(payload.frame_scale(m, p.quantiles)) for m, p in zip(parsed.maps, encoded)],
        "rgb_fixed": payload.rgb(parsed, 0, values, fixed).ravel().tolist(),
        "rgb_frame": payload.picture_rgb(parsed, 0, picture).ravel().tolist(),
    }


def fixture():
    """The fixture's content: a kernel grid with an empty cell and values that are not finite, a
    grid of activation maps, and travel over the weights it colours."""
    rng = np.random.default_rng(11)
    kernels = rng.normal(0.0, 0.3, size=(6, 6))
    kernels[0, 1], kernels[4, 2] = np.nan, np.inf
    kernels[4:, 3:] = np.nan  # the empty sixth cell of a 3x2 grid of 2x3 tiles
    maps = np.abs(rng.normal(0.0, 1.0, size=(6, 6)))
    maps[3:, 3:] = np.nan
    travel = np.abs(rng.normal(0.0, 0.02, size=(3, 5)))
    travel[1, 1] = np.nan
    weights = rng.normal(0.0, 0.5, size=(3, 5))
    return {"cases": [
        _case("conv", "weights", (6, 6), (2, 3), 5, [kernels], [2 * rng.normal(0.0, 0.3, size=(6, 6))]),
        _case("conv output", "activations", (6, 6), (3, 3), 3, [maps], [0.5 * maps]),
        _case("fc", "travel", (3, 5), (3, 5), 1, [travel, weights],
              [3 * np.abs(rng.normal(0.0, 0.02, size=(3, 5))), rng.normal(0.0, 0.2, size=(3, 5))]),
    ]}


def test_the_filmstrip_fixture_is_current():
    with open(FIXTURE) as f:
        assert json.load(f) == json.loads(json.dumps(fixture()))


if __name__ == "__main__":
    with open(FIXTURE, "w") as f:
        json.dump(fixture(), f, separators=(",", ":"))
        f.write("\n")
