"""``reading.downsample`` against a slow per-bin reference written here."""

import numpy as np
import pytest

from tb_layerdyn.reading import downsample


def _reference_envelope(values, edges):
    """Per bin and series, plainly: the two values in the order their first occurrences came,
    NaN twice for a bin with no defined value."""
    out = np.full((2 * (len(edges) - 1), values.shape[1]), np.nan)
    for b in range(len(edges) - 1):
        for c in range(values.shape[1]):
            column = [float(v) for v in values[edges[b]:edges[b + 1], c]]
            defined = [(i, v) for i, v in enumerate(column) if not np.isnan(v)]
            if not defined:
                continue
            low = min(v for _, v in defined)
            high = max(v for _, v in defined)
            low_at = next(i for i, v in defined if v == low)
            high_at = next(i for i, v in defined if v == high)
            out[2 * b:2 * b + 2, c] = (low, high) if low_at <= high_at else (high, low)
    return out


@pytest.mark.parametrize("rows, max_points", [
    (37, 10),      # bins of 7-8 rows: the short-bin scan
    (1000, 400),   # bins of 5 rows: a zoomed chart
    (513, 2 * 16),  # bins of 32-33 rows: reduceat
    (200, 4),      # two bins of 100 rows
    (41, 40),      # bins of 2 rows and one of 3
])
def test_envelope_matches_a_per_bin_reference(rows, max_points):
    rng = np.random.default_rng(rows)
    # Few distinct values, so that bins hold ties of their minimum and maximum; NaN gaps, a
    # column that is never defined, one defined only at the end of its bins, and infinities.
    values = rng.integers(-3, 4, size=(rows, 6)).astype(np.float32)
    values[rng.random(values.shape) < 0.2] = np.nan
    values[:, 1] = np.nan
    values[:, 2] = np.where(np.arange(rows) % 7 == 6, 1.5, np.nan)
    values[rows // 2, 3], values[rows // 3, 3] = np.inf, -np.inf
    steps = np.arange(rows) * 3 + 5
    out_steps, out_values, downsampled = downsample.envelope(steps, values, max_points)
    edges = downsample.bin_edges(rows, max_points // 2)
    assert downsampled and out_values.dtype == np.float32
    np.testing.assert_array_equal(out_steps[0::2], steps[edges[:-1]])
    np.testing.assert_array_equal(out_steps[1::2], steps[edges[1:] - 1])
    np.testing.assert_array_equal(out_values, _reference_envelope(values, edges))


def test_both_reductions_give_the_same_envelope(monkeypatch):
    """The short bins' walk and ``_first_match`` agree bit for bit on the same bins."""
    rng = np.random.default_rng(7)
    values = rng.standard_normal((3000, 40))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[100:140, 5] = np.nan
    steps = np.arange(3000)
    scanned = downsample.envelope(steps, values, 600)[1]
    monkeypatch.setattr(downsample, "SCAN_MAX_BIN", 0)
    reduced = downsample.envelope(steps, values, 600)[1]
    np.testing.assert_array_equal(scanned, reduced)
