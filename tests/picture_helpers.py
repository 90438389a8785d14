"""Test pieces for pictures: a LeNet-5, reading picture events back, a slow reference of the layouts."""

import os

import numpy as np
from tensorboard.backend.event_processing import event_file_loader

from demo.models import FunctionalLeNet5 as LeNet  # noqa: F401  (the picture tests' model)
from tb_layerdyn.format import envelope
from tb_layerdyn.format import pictures as payload


def picture_events(run_dir):
    """``{kind: [(step, Layout, [Picture or None per layer])]}`` from a run's event files, in the
    order written, decoded by ``format.pictures`` straight from the records."""
    found = {}
    layouts = {}
    for name in sorted(os.listdir(run_dir)):
        if "tfevents" not in name:
            continue
        for event in event_file_loader.EventFileLoader(os.path.join(run_dir, name)).Load():
            for value in event.summary.value:
                if not value.tag.startswith(payload.TAG_PREFIX):
                    continue
                if value.HasField("metadata"):
                    content = envelope.parse_content(value.metadata, payload.KIND, payload.VERSION)
                    layouts[value.tag] = payload.parse_layout(content)
                parsed = layouts[value.tag]
                found.setdefault(parsed.picture, []).append((event.step, parsed, payload.decode(parsed, value)))
    return found


def reference_picture(tensor, plan, key=None):
    """The stored picture of ``tensor`` under ``plan``, computed cell by cell (numpy, loops).

    ``key`` (default ``tensor``) chooses which element of each block is kept.
    """
    tensor = np.asarray(tensor, dtype=np.float32)
    key = tensor if key is None else np.asarray(key, dtype=np.float32)
    (tile_h, tile_w), (block_h, block_w) = plan.tile, plan.tile_block
    pooled_h, pooled_w = plan.pooled_tile
    rows, columns = plan.pooled_grid
    out = np.full((rows * pooled_h, columns * pooled_w), np.nan, dtype=np.float32)
    if plan.channels:
        values = tensor.reshape(plan.shape[0], tile_h, tile_w)
        keys = key.reshape(values.shape)
        group = plan.channel_group
        for cell in range(plan.cells):
            r, c = divmod(cell, columns)
            for y in range(pooled_h):
                for x in range(pooled_w):
                    sel = (slice(cell * group, (cell + 1) * group), slice(y * block_h, (y + 1) * block_h),
                           slice(x * block_w, (x + 1) * block_w))
                    out[r * pooled_h + y, c * pooled_w + x] = _pick(values[sel], keys[sel])
        return out
    grid_r, grid_c = plan.grid
    values = tensor.reshape(grid_r, grid_c, tile_h, tile_w)
    keys = key.reshape(values.shape)
    k = plan.grid_block
    for r in range(rows):
        for c in range(columns):
            for y in range(pooled_h):
                for x in range(pooled_w):
                    sel = (slice(r * k, (r + 1) * k), slice(c * k, (c + 1) * k),
                           slice(y * block_h, (y + 1) * block_h), slice(x * block_w, (x + 1) * block_w))
                    out[r * pooled_h + y, c * pooled_w + x] = _pick(values[sel], keys[sel])
    return out


def _pick(values, keys):
    values, keys = values.ravel(), keys.ravel()
    if np.isnan(keys).any():
        return values[int(np.argmax(np.isnan(keys)))]
    return values[int(np.argmax(np.abs(keys)))]


def level_step(plane):
    """The spacing of a plane's levels (half of it is the most a value moves when quantized)."""
    bits = 8
    low, high = plane.interval
    return (high - low) / ((1 << bits) - 2) if high > low else 0.0


def assert_close_to_levels(plane, expected):
    """A decoded plane equals ``expected`` up to its quantization (NaN where expected is NaN)."""
    got = plane.values()
    expected = np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape
    nan = np.isnan(expected)
    assert (np.isnan(got) == nan).all()
    tolerance = level_step(plane) / 2 + 1e-6 * max(1.0, abs(plane.interval[1]))
    error = np.abs(got[~nan] - expected[~nan]).max(initial=0.0)
    assert error <= tolerance, f"max error {error} over {tolerance}"
