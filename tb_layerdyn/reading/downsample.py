"""Shrinks step x series tables for display without hiding what matters (pure numpy).

Two reductions, both over consecutive bins of steps (see ``http_api.md``):

* ``envelope`` for line charts: each bin keeps its first and last step, and each series its
  minimum and maximum over the bin at those two steps, in the order they occurred. A one-step spike
  therefore still reaches its full height, and the last logged step is always the last point.
* ``bin_means`` for the heatmap: each bin becomes one column at its last step, holding the mean of
  the defined values in the bin.

NaN marks an undefined value throughout; a bin with no defined value of a series gives NaN.
"""

import numpy as np

from tb_layerdyn.reading import pyramid

# Bins of at most this many rows find which extreme came first by ``pyramid.min_first``, a walk
# over the bins' rows (a chart zoomed in to a few steps per pixel, summarised from the rows
# themselves); longer ones by ``_first_match``, over arrays of the rows' size.
SCAN_MAX_BIN = 16


def bin_edges(num_steps, num_bins):
    """Start indices of ``num_bins`` consecutive, nearly equal bins over ``num_steps`` steps.

    Args:
        num_steps: number of rows to split; at least ``num_bins``.
        num_bins: number of bins, at least 1.

    Returns:
        An int64 array of ``num_bins + 1`` boundaries, starting at 0 and ending at ``num_steps``;
        bin ``b`` is ``[edges[b], edges[b + 1])`` and holds at least one step.
    """
    if num_bins < 1 or num_steps < num_bins:
        raise ValueError(f"cannot split {num_steps} steps into {num_bins} non-empty bins")
    return (np.arange(num_bins + 1, dtype=np.int64) * num_steps) // num_bins


def envelope(steps, values, max_points):
    """Min/max envelope of ``values`` in at most ``max_points`` steps.

    Args:
        steps: int array ``(n,)``, ascending.
        values: float array ``(n, series)``; NaN where undefined.
        max_points: the most steps to return, at least 2.

    Returns:
        ``(steps, values, downsampled)``: the inputs unchanged when ``n <= max_points``; otherwise
        ``max_points // 2`` bins of two rows each, as described in the module docstring.
    """
    steps = np.asarray(steps)
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    num_steps = len(steps)
    if num_steps <= max_points:
        return steps, values, False
    out_steps, out_values = envelope_bins(steps, values, bin_edges(num_steps, max_points // 2))
    return out_steps, out_values, True


def envelope_bins(steps, values, edges):
    """The two points of each bin ``[edges[b], edges[b + 1])`` of ``envelope``: its first and last
    step, and per series its minimum and maximum in the order they occurred.

    Each bin is reduced on its own, so the bins of a long range may be taken a few at a time (their
    edges shifted to the rows given) and give the same points as all at once.

    Args:
        steps: int array ``(n,)``, ascending.
        values: float array ``(n, series)``; NaN where undefined.
        edges: int array of bin boundaries from 0 to ``n``, each bin holding at least one row.

    Returns:
        ``(steps, values)`` of ``2 * (len(edges) - 1)`` points.
    """
    num_bins = len(edges) - 1
    firsts = edges[:-1]
    out_steps = np.empty(2 * num_bins, dtype=steps.dtype)
    out_steps[0::2] = steps[firsts]
    out_steps[1::2] = steps[edges[1:] - 1]
    # Bins reduce along the rows, a whole row of series at a time (fmin/fmax skip NaN; a bin with
    # no defined value gives NaN).
    low = np.fmin.reduceat(values, firsts, axis=0)
    high = np.fmax.reduceat(values, firsts, axis=0)
    lengths = np.diff(edges)
    longest = int(lengths.max())
    if longest <= SCAN_MAX_BIN:
        # Short bins: the bins' j-th rows for each j, one (bins, series) row at a time.
        last = lengths - 1
        low_first = pyramid.min_first(lambda j: values[firsts + np.minimum(j, last)], longest, low, high)
    else:
        low_first = _first_match(values, low, edges) <= _first_match(values, high, edges)
    out_values = np.empty((2 * num_bins, values.shape[1]), dtype=values.dtype)
    out_values[0::2] = np.where(low_first, low, high)
    out_values[1::2] = np.where(low_first, high, low)
    return out_steps, out_values


def _first_match(values, extremes, edges):
    """Per bin and series, the position in the bin of the first row equal to ``extremes``."""
    lengths = np.diff(edges)
    per_row = np.repeat(extremes, lengths, axis=0)
    # The distance to the end of the bin is largest at the first match: take its maximum.
    to_end = (edges[1:].repeat(lengths) - np.arange(len(values)))[:, None].astype(np.int32)
    distance = np.where(values == per_row, to_end, 0)
    return lengths[:, None] - np.maximum.reduceat(distance, edges[:-1], axis=0)


def bin_means(steps, values, max_steps):
    """Means of ``values`` over at most ``max_steps`` consecutive bins of steps.

    Args:
        steps: int array ``(n,)``, ascending.
        values: float array ``(n, series)``; NaN where undefined.
        max_steps: the most columns to return, at least 1.

    Returns:
        ``(steps, values, downsampled)``: the inputs unchanged when ``n <= max_steps``; otherwise
        each bin's last step and the mean of the defined values in it (NaN when there are none).
    """
    steps = np.asarray(steps)
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    if max_steps < 1:
        raise ValueError(f"max_steps must be at least 1, got {max_steps}")
    num_steps = len(steps)
    if num_steps <= max_steps:
        return steps, values, False
    edges = bin_edges(num_steps, max_steps)
    defined = ~np.isnan(values)
    sums = np.add.reduceat(np.where(defined, values, 0.0), edges[:-1], axis=0, dtype=np.float64)
    counts = np.add.reduceat(defined, edges[:-1], axis=0, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return steps[edges[1:] - 1], means, True
