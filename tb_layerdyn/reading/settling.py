"""When each layer settles, and whether the layers near the input settle first.

The rule is the Layer Dynamics tab's (``frontend/src/panels/settling/rule.js``), so a number read
here and the panel agree on the same curve (``tests/fixtures/settling_cases.json`` holds curves
and answers that both test suites check):

* Over the defined (finite) values of one layer's series the **peak** is the largest value and
  the threshold is ``fraction * peak``. The layer **settles** at the earliest logged step that
  has a defined value below the threshold and after which every defined value is below it too.
  NaN and infinite values are gaps: they neither count towards the peak nor break a run of
  values below the threshold.
* A layer whose last defined value is not below the threshold has **not yet** settled; one whose
  peak is not positive (a frozen layer) **never moved**; one without a defined value has **no
  data**.
* Smoothing, when asked for, is the tab's: TensorBoard's debiased exponential moving average,
  applied before the rule, gaps kept as gaps (``smooth``).

Whether layers near the input settle first is one number per run: the Spearman rank correlation
between depth (the layer's position, input to output) and settling step. Positive means the
layers near the input settle first, negative that the layers near the output do. Layers that
have not yet settled count as settling after every layer that has, tied with each other; layers
that never moved or have no data are left out. Tied steps share their mean rank (the usual
Spearman with ties: Pearson's correlation of the ranks). With fewer than two layers counted, or
when every counted layer ties, the correlation is undefined (NaN).

Runs that differ only by seed form a group when their names are equal once the seed pattern is
cut out (the tab's rule, ``SEED_PATTERN``); a group's correlation is summarized by the mean,
the population standard deviation (dividing by the number of runs), min and max over its runs
with a defined correlation.

This module imports neither torch nor the plugin.
"""

import dataclasses
import math
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

# The tab's default seed pattern: a trailing ``seed<k>`` and the separator before it, so that
# ``lenet5-seed0``, ``lenet5_seed1`` and ``lenet5/seed2`` all join the group ``lenet5``. Matched
# case-insensitively, as the tab matches it.
SEED_PATTERN = r"[-_/]?seed[-_]?\d+$"
DEFAULT_METRIC = "rwc"
DEFAULT_FRACTION = 0.1

SETTLED = "settled"
NOT_YET = "not yet"
NEVER_MOVED = "never moved"
NO_DATA = "no data"


@dataclasses.dataclass(frozen=True)
class LayerSettling:
    """When one layer settles.

    Attributes:
        layer: the layer's name.
        state: ``"settled"``, ``"not yet"``, ``"never moved"`` or ``"no data"``.
        step: the settling step when ``state`` is ``"settled"``, else ``None``.
        peak: the largest defined value of the (smoothed) series, ``None`` with no data.
    """

    layer: str
    state: str
    step: Optional[int]
    peak: Optional[float]


@dataclasses.dataclass(frozen=True)
class Spread:
    """Mean and spread of some values, undefined ones (NaN, infinities) left out.

    Attributes:
        mean: their mean (NaN when none is defined).
        std: their population standard deviation, dividing by ``count`` (NaN when none).
        low: the smallest (NaN when none).
        high: the largest (NaN when none).
        count: how many were defined.
    """

    mean: float
    std: float
    low: float
    high: float
    count: int


@dataclasses.dataclass(frozen=True)
class RunSettling:
    """When each layer of one run settles, and the rank correlation of depth and settling step.

    Attributes:
        run: the run's key in ``Runs`` (its name, or ``"run · model"``).
        metric: the metric the rule was applied to.
        fraction: the threshold as a fraction of each layer's peak.
        smoothing: the smoothing weight applied first (0: none).
        layers: one ``LayerSettling`` per layer, in depth order.
        correlation: Spearman's rank correlation between depth and settling step (see the module's
            description); NaN when undefined.
    """

    run: str
    metric: str
    fraction: float
    smoothing: float
    layers: Tuple[LayerSettling, ...]
    correlation: float

    @property
    def steps(self) -> Dict[str, Optional[int]]:
        """Layer name -> settling step, ``None`` for a layer that has not settled."""
        return {s.layer: s.step for s in self.layers}

    @property
    def order(self) -> List[str]:
        """The settled layers, earliest first (ties in depth order)."""
        settled = [s for s in self.layers if s.state == SETTLED]
        return [s.layer for s in sorted(settled, key=lambda s: s.step)]

    def in_state(self, state: str) -> List[str]:
        """The layers in ``state`` (``"not yet"``, ...), in depth order."""
        return [s.layer for s in self.layers if s.state == state]


@dataclasses.dataclass(frozen=True)
class GroupSettling:
    """The runs of one seed group and the spread of their rank correlations.

    Attributes:
        name: what is left of the runs' names once the seed pattern is cut out.
        runs: each run's ``RunSettling``, in the order of ``Runs``.
        correlation: mean, standard deviation, min and max of the runs' correlations over the runs
            where it is defined (``count`` of them).
    """

    name: str
    runs: Tuple[RunSettling, ...]
    correlation: Spread


def smooth(values, weight: float) -> np.ndarray:
    """TensorBoard's smoothing, as the tab's toolbar applies it: a debiased exponential moving
    average, so the first points are not pulled towards zero. Gaps (NaN, +-inf) stay gaps (NaN)
    and leave the average as it was.

    Args:
        values: one series.
        weight: in ``[0, 1)``; 0 returns the values unchanged (as float64).

    Returns:
        A new float64 array of the same length.
    """
    values = np.asarray(values, dtype=np.float64)
    if not 0 <= weight < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {weight!r}")
    out = values.copy()
    if weight == 0:
        return out
    last, debias = 0.0, 1.0
    for i, v in enumerate(values):
        if not math.isfinite(v):
            out[i] = math.nan
            continue
        last = last * weight + (1 - weight) * v
        debias *= weight
        out[i] = last / (1 - debias)
    return out


def settling_step(steps, values, fraction: float) -> Tuple[str, Optional[int], Optional[float]]:
    """When one series settles (see the module's description for the rule).

    Args:
        steps: ascending logged steps.
        values: one value per step; NaN and +-inf are gaps.
        fraction: in ``(0, 1]``.

    Returns:
        ``(state, step, peak)``: ``step`` is ``None`` unless ``state`` is ``"settled"``, ``peak``
        is ``None`` for ``"no data"``.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return NO_DATA, None, None
    peak = float(values[finite].max())
    if not peak > 0:
        return NEVER_MOVED, None, peak
    threshold = fraction * peak
    # A defined value at or above the threshold: the layer settles after the last of them.
    above = np.flatnonzero(finite & (values >= threshold))
    start = int(above[-1]) + 1 if len(above) else 0
    below = np.flatnonzero(finite[start:])
    if len(below) == 0:
        return NOT_YET, None, peak
    return SETTLED, int(steps[start + below[0]]), peak


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation of two equal-length sequences: Pearson's correlation of their
    ranks, tied values sharing their mean rank; NaN with fewer than two pairs or when one side is
    all ties. ``+inf`` ranks after every finite value."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        return math.nan
    rx, ry = _mean_ranks(x), _mean_ranks(y)
    dx, dy = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float(dx @ dx) * float(dy @ dy))
    if denominator == 0:
        return math.nan
    return float(dx @ dy) / denominator


def _mean_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def depth_correlation(layers: Sequence[LayerSettling]) -> float:
    """The rank correlation between depth (position in ``layers``) and settling step: not-yet
    layers after every settled one, never-moved and no-data layers left out."""
    depths, steps = [], []
    for depth, result in enumerate(layers):
        if result.state == SETTLED:
            depths.append(depth)
            steps.append(result.step)
        elif result.state == NOT_YET:
            depths.append(depth)
            steps.append(math.inf)
    return rank_correlation(depths, steps)


def settle_run(
    run: str,
    layers: Sequence[str],
    steps,
    values,
    *,
    metric: str = DEFAULT_METRIC,
    fraction: float = DEFAULT_FRACTION,
    smoothing: float = 0.0,
) -> RunSettling:
    """Applies the rule to every layer of a run.

    Args:
        run: the run's name, kept in the result.
        layers: layer names in depth order.
        steps: ascending logged steps.
        values: array ``(len(steps), len(layers))`` of the metric.
        metric: the metric's name, kept in the result.
        fraction: the threshold as a fraction of each layer's peak, in ``(0, 1]``.
        smoothing: the tab's smoothing weight, in ``[0, 1)``, applied to each layer first.
    """
    fraction = check_fraction(fraction)
    smoothing = check_smoothing(smoothing)
    values = np.asarray(values)
    results = []
    for column, layer in enumerate(layers):
        series = smooth(values[:, column], smoothing)
        state, step, peak = settling_step(steps, series, fraction)
        results.append(LayerSettling(layer=layer, state=state, step=step, peak=peak))
    return RunSettling(
        run=run, metric=metric, fraction=fraction, smoothing=smoothing, layers=tuple(results),
        correlation=depth_correlation(results),
    )


def spread(values: Iterable[float]) -> Spread:
    """Mean, population standard deviation, min and max of the defined (finite) values."""
    defined = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if len(defined) == 0:
        return Spread(mean=math.nan, std=math.nan, low=math.nan, high=math.nan, count=0)
    mean = float(defined.mean())
    return Spread(
        mean=mean,
        std=float(math.sqrt(np.mean((defined - mean) ** 2))),
        low=float(defined.min()),
        high=float(defined.max()),
        count=len(defined),
    )


def group_by_seed(names: Iterable[str], pattern: str = SEED_PATTERN) -> Dict[str, List[str]]:
    """Groups run names by what is left once the seed pattern (a regular expression, matched
    case-insensitively, its first match cut) is taken out of them, as the tab groups them.

    A name the pattern would cut to nothing keeps its name; a blank pattern puts every run in a
    group of its own.

    Returns:
        group name -> its run names, groups in the order their first run comes.
    """
    regex = compile_seed_pattern(pattern)
    groups: Dict[str, List[str]] = {}
    for name in names:
        stripped = regex.sub("", name, count=1) if regex is not None else name
        groups.setdefault(stripped or name, []).append(name)
    return groups


def settle_groups(runs: Sequence[RunSettling], pattern: str = SEED_PATTERN) -> Dict[str, GroupSettling]:
    """Runs' settling taken together by seed group (``group_by_seed``), with the spread of their
    correlations."""
    by_name = {r.run: r for r in runs}
    result = {}
    for name, members in group_by_seed(by_name, pattern).items():
        settled = tuple(by_name[m] for m in members)
        result[name] = GroupSettling(
            name=name, runs=settled, correlation=spread(r.correlation for r in settled)
        )
    return result


def compile_seed_pattern(pattern: str) -> Optional["re.Pattern[str]"]:
    """The seed pattern as a case-insensitive regex, ``None`` when blank."""
    if not isinstance(pattern, str):
        raise TypeError(f"seed_pattern must be a regular expression as a str, got {type(pattern).__name__}")
    if not pattern.strip():
        return None
    try:
        return re.compile(pattern.strip(), re.IGNORECASE)
    except re.error as error:
        raise ValueError(f"seed_pattern {pattern!r} is not a valid regular expression: {error}") from None


def check_fraction(fraction) -> float:
    """``fraction`` as a float in ``(0, 1]``, or a ValueError that says so."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating, np.integer)):
        raise TypeError(f"fraction must be a number in (0, 1], got {type(fraction).__name__}")
    if not 0 < fraction <= 1:
        raise ValueError(
            f"fraction must be in (0, 1] (0.1 is 10% of each layer's peak), got {fraction!r}"
        )
    return float(fraction)


def check_smoothing(smoothing) -> float:
    """``smoothing`` as a float in ``[0, 1)``, or a ValueError that says so."""
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float, np.floating, np.integer)):
        raise TypeError(f"smoothing must be a number in [0, 1), got {type(smoothing).__name__}")
    if not 0 <= smoothing < 1:
        raise ValueError(
            f"smoothing must be in [0, 1) (the tab's slider; 0 is none), got {smoothing!r}"
        )
    return float(smoothing)
