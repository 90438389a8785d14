"""Metric math: per-column sums in, metric values out. Pure numpy, no torch, no state.

The device pass (``reduce``) produces, for each layer, the sums listed by the ``SUM_*`` column
indices below. Every metric is a function of those sums, so a group's metric is the same function
of its members' summed sums: a group's RWC is ``sum |dw| / sum |w_prev|`` over all its weights, never
an average of its layers' ratios.
"""

import numpy as np

# Columns of a sums row. All are plain sums over the elements of a layer, so they add across
# parameters, chunks, shards and group members.
SUM_ABS_DIFF = 0  # sum |w - w_prev|
SUM_SQ_DIFF = 1  # sum (w - w_prev)^2
SUM_ABS_PREV = 2  # sum |w_prev|
SUM_SQ_INIT_DIFF = 3  # sum (w - w_0)^2
SUM_SQ_WEIGHT = 4  # sum w^2
SUM_SQ_GRAD = 5  # sum g^2
SUM_RATIO = 6  # sum over w_prev != 0 of |w - w_prev| / |w_prev|
SUM_ZERO_PREV = 7  # number of elements with w_prev == 0
SUM_SQ_INIT = 8  # sum w_0^2
SUM_NUMEL = 9  # number of elements
NUM_SUMS = 10

# Sums that involve only the weights: a non-finite one means the layer holds a NaN or an Inf.
WEIGHT_SUMS = [SUM_ABS_DIFF, SUM_SQ_DIFF, SUM_ABS_PREV, SUM_SQ_INIT_DIFF, SUM_SQ_WEIGHT]

RWC_VARIANTS = ("l1", "elementwise", "both")


def metric_names(rwc: str):
    """The metrics a payload holds, in row order, for an RWC choice (``"l1"``, ``"elementwise"``,
    ``"both"``)."""
    if rwc not in RWC_VARIANTS:
        raise ValueError(f"rwc must be one of {RWC_VARIANTS}, got {rwc!r}")
    names = []
    if rwc in ("l1", "both"):
        names.append("rwc")
    if rwc in ("elementwise", "both"):
        names.append("rwc_elementwise")
    return tuple(
        names
        + [
            "distance_from_init",
            "relative_distance_from_init",
            "update_size",
            "weight_norm",
            "grad_norm",
        ]
    )


def group_sums(layer_sums: np.ndarray, members) -> np.ndarray:
    """Sums of groups from the sums of layers.

    Args:
        layer_sums: ``(layers, NUM_SUMS)``.
        members: one list of layer row indices per group.

    Returns:
        ``(groups, NUM_SUMS)``; NaN in any member makes the group's sums NaN.
    """
    out = np.zeros((len(members), layer_sums.shape[1]), dtype=np.float64)
    for g, rows in enumerate(members):
        out[g] = layer_sums[list(rows)].sum(axis=0)
    return out


def nonfinite_columns(sums: np.ndarray) -> np.ndarray:
    """Columns whose weights hold a NaN or an Inf (found from the sums; no extra pass)."""
    return ~np.isfinite(sums[:, WEIGHT_SUMS]).all(axis=1)


def compute(sums, *, has_previous, has_grad, rwc="l1") -> np.ndarray:
    """Metric values for each column (layer or group) from its sums.

    Args:
        sums: ``(columns, NUM_SUMS)`` float64.
        has_previous: bool per column: previous weights exist (false at a column's first call).
        has_grad: bool per column: a gradient was present (for a group: for at least one member;
            members without one contribute nothing to ``SUM_SQ_GRAD``).
        rwc: which RWC variants to return, see ``metric_names``.

    Returns:
        ``(len(metric_names(rwc)), columns)`` float64. NaN where undefined: RWC and update size
        without previous weights, RWC when the previous weights are all zero, grad norm without a
        gradient or with a NaN/Inf gradient, and every metric of a column whose weights are not
        finite.
    """
    sums = np.asarray(sums, dtype=np.float64)
    has_previous = np.asarray(has_previous, dtype=bool)
    has_grad = np.asarray(has_grad, dtype=bool)
    by_sum = sums.T
    num_rwc = _NUM_RWC.get(rwc, 0)
    if (
        len(sums)
        and rwc == "l1"
        and has_previous.all()
        and has_grad.all()
        and np.isfinite(finite_sum(sums))
    ):
        values = compute_defined(sums)
        if values is not None:
            return values
    values = np.empty((num_rwc + len(_ROOTED), len(sums)))
    # Called on every logging call: a few whole-array ops instead of one per metric, with the same
    # elementwise arithmetic (so the same values).
    with np.errstate(divide="ignore", invalid="ignore"):
        row = 0
        if rwc in ("l1", "both"):
            np.divide(by_sum[SUM_ABS_DIFF], by_sum[SUM_ABS_PREV], out=values[row])
            np.copyto(values[row], np.nan, where=~(has_previous & (by_sum[SUM_ABS_PREV] > 0)))
            row += 1
        if rwc in ("elementwise", "both"):
            counted = by_sum[SUM_NUMEL] - by_sum[SUM_ZERO_PREV]
            np.divide(by_sum[SUM_RATIO], counted, out=values[row])
            np.copyto(values[row], np.nan, where=~(has_previous & (counted > 0)))
            row += 1
        rooted = values[num_rwc:]
        np.sqrt(by_sum[_ROOTED], out=rooted)
        # Rows: distance, initial norm (replaced by the relative distance), update size, weight
        # norm, grad norm.
        undefined_relative = ~(rooted[1] > 0)
        np.divide(rooted[0], rooted[1], out=rooted[1])
        np.copyto(rooted[1], np.nan, where=undefined_relative)
        np.copyto(rooted[2], np.nan, where=~has_previous)
        np.copyto(rooted[4], np.nan, where=~(has_grad & np.isfinite(by_sum[SUM_SQ_GRAD])))
    np.copyto(values, np.nan, where=nonfinite_columns(sums))
    return values


def compute_defined(sums):
    """``compute(sums, rwc="l1")`` for the common case of a training loop, without its masks.

    Args:
        sums: ``(columns, NUM_SUMS)`` float64 of columns that all have previous weights and a
            gradient, and whose ``finite_sum(sums)`` is finite.

    Returns:
        The same values as ``compute``, or ``None`` when a previous or initial norm is zero (some
        value is undefined: call ``compute``).
    """
    by_sum = sums.T
    if not (by_sum[SUM_ABS_PREV].min() > 0 and by_sum[SUM_SQ_INIT].min() > 0):
        return None
    values = np.empty((1 + len(_ROOTED), len(sums)))
    np.divide(by_sum[SUM_ABS_DIFF], by_sum[SUM_ABS_PREV], out=values[0])
    rooted = values[1:]
    np.sqrt(by_sum[_ROOTED], out=rooted)
    np.divide(rooted[0], rooted[1], out=rooted[1])
    return values


def finite_sum(sums) -> float:
    """The sum of every column's weight and gradient sums: finite exactly when all of them are
    (NaN and Inf survive a sum; float64 sums of float32 sums cannot overflow)."""
    return sums[:, _CHECKED].sum()


# The sums whose square roots are the last five metrics, in ``metric_names`` order (the second one,
# the initial norm, becomes the relative distance from init).
_ROOTED = np.array([SUM_SQ_INIT_DIFF, SUM_SQ_INIT, SUM_SQ_DIFF, SUM_SQ_WEIGHT, SUM_SQ_GRAD], dtype=np.intp)
_NUM_RWC = {"l1": 1, "elementwise": 1, "both": 2}
# The weight sums and the gradient sums, the columns whose finiteness the common case checks: the
# first six, taken as a slice (a view; an index list would copy).
_CHECKED = slice(0, SUM_SQ_GRAD + 1)
assert sorted(WEIGHT_SUMS + [SUM_SQ_GRAD]) == list(range(SUM_SQ_GRAD + 1))
