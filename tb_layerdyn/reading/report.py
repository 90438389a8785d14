"""A plain-text report of a logdir, per run: which layers settle first, which ones the trained
model needs, which moved least. What ``tb-layerdyn report LOGDIR`` prints.

Per run (``Run.settling`` for the first two lines)::

    lenet5/seed0 (5 layers, steps 0 to 500)
      settling (rwc below 10% of its peak): fc3 67, fc2 125, fc1 201, conv1 328, conv2 344
      depth vs settling step: rho = -0.90 (the layers near the output settle first)
      robustness at step 500 (accuracy, threshold 0.02): robust conv2, fc1, fc2, fc3; ambient conv1
      moved least (relative distance from init at step 500): conv1 0.94, fc2 1.09, conv2 1.39

then, for seed groups of two runs or more (``Runs.settling``), the mean, standard deviation, min
and max of rho over their runs. Runs are read a batch at a time (``streaming.iter_runs``).
"""

import math
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from tb_layerdyn.reading import settling, streaming
from tb_layerdyn.reading.sweep_records import RobustnessTable

DISTANCE = "relative_distance_from_init"
LEAST = 3


def latest_robustness(run) -> Optional[RobustnessTable]:
    """The run's robustness table of the latest step, ``None`` when it logged none."""
    tables = [s for s in run.sweeps if isinstance(s, RobustnessTable)]
    return tables[-1] if tables else None


def moved_least(run, count: int = LEAST) -> List[Tuple[str, float]]:
    """The ``count`` layers whose relative distance from their initial weights is smallest at the
    run's last logged step, smallest first (ties in depth order); layers where it is undefined
    (NaN: weights that started at zero) are left out. Empty without that metric or a step."""
    table = run.metrics.get(DISTANCE)
    if table is None or len(run.steps) == 0:
        return []
    last = table[-1].astype(np.float64)
    defined = [(float(v), depth) for depth, v in enumerate(last) if math.isfinite(v)]
    return [(run.layers[depth], value) for value, depth in sorted(defined)[:count]]


def run_lines(
    key: str,
    run,
    *,
    metric: str = settling.DEFAULT_METRIC,
    fraction: float = settling.DEFAULT_FRACTION,
    smoothing: float = 0.0,
    least: int = LEAST,
) -> Tuple[List[str], Optional[settling.RunSettling]]:
    """One run's lines of the report, and its settling (``None`` without ``metric``)."""
    if len(run.steps):
        span = f"steps {int(run.steps[0])} to {int(run.steps[-1])}"
        lines = [f"{key} ({len(run.layers)} layers, {span})"]
    else:
        lines = [f"{key} (no layer dynamics logged)"]
    result = None
    if metric in run.metrics:
        result = run.settling(metric, fraction, smoothing=smoothing, key=key)
        lines.append(f"  {_settling_text(result)}")
        lines.append(f"  depth vs settling step: {_correlation_text(result.correlation)}")
    elif len(run.steps):
        lines.append(f"  settling: {metric} not logged")
    lines.append(f"  {_robustness_text(latest_robustness(run))}")
    if len(run.steps):
        last = int(run.steps[-1])
        least_moved = moved_least(run, least)
        if DISTANCE not in run.metrics:
            lines.append(f"  moved least: {DISTANCE} not logged")
        elif not least_moved:
            lines.append(f"  moved least (relative distance from init at step {last}): undefined for every layer")
        else:
            listed = ", ".join(f"{layer} {value:.3g}" for layer, value in least_moved)
            lines.append(f"  moved least (relative distance from init at step {last}): {listed}")
    return lines, result


def group_lines(groups: Iterable[settling.GroupSettling]) -> List[str]:
    """The seed groups' part of the report: groups of two runs or more, nothing when none is."""
    shown = [g for g in groups if len(g.runs) > 1]
    if not shown:
        return []
    lines = ["seed groups: rho of depth and settling step across seeds"]
    for group in shown:
        c = group.correlation
        head = f"  {group.name} ({len(group.runs)} runs)"
        if c.count == 0:
            lines.append(f"{head}: undefined in every run")
            continue
        of = "" if c.count == len(group.runs) else f", defined in {c.count}"
        lines.append(
            f"{head}: mean {_signed(c.mean)}, sd {c.std:.2f}, min {_signed(c.low)}, "
            f"max {_signed(c.high)}{of}"
        )
    return lines


def report(
    logdir,
    write=print,
    *,
    runs: Union[None, str, Sequence[str]] = None,
    metric: str = settling.DEFAULT_METRIC,
    fraction: float = settling.DEFAULT_FRACTION,
    smoothing: float = 0.0,
    least: int = LEAST,
    seed_pattern: str = settling.SEED_PATTERN,
    cache_dir=None,
) -> int:
    """Writes the report of the runs under ``logdir``, a line at a time, through ``write``.

    Args:
        logdir, runs, cache_dir: as for ``read``.
        write: called with each line.
        metric, fraction, smoothing: the settling rule's (``Run.settling``).
        least: how many of the layers that moved least to list.
        seed_pattern: how runs form seed groups (``Runs.settling``).

    Returns:
        The number of runs reported.
    """
    settling.check_fraction(fraction)
    settling.check_smoothing(smoothing)
    settling.compile_seed_pattern(seed_pattern)
    if isinstance(least, bool) or not isinstance(least, int) or least < 1:
        raise ValueError(f"least must be a positive int (how many layers to list), got {least!r}")
    results, count = [], 0
    for key, run in streaming.iter_runs(
        logdir, runs=runs, metrics=[metric, DISTANCE], cache_dir=cache_dir
    ):
        if count:
            write("")
        lines, result = run_lines(
            key, run, metric=metric, fraction=fraction, smoothing=smoothing, least=least
        )
        for line in lines:
            write(line)
        if result is not None:
            results.append(result)
        count += 1
    groups = group_lines(settling.settle_groups(results, seed_pattern).values())
    if groups:
        write("")
        for line in groups:
            write(line)
    return count


def _settling_text(result: settling.RunSettling) -> str:
    percent = f"{result.fraction * 100:g}%"
    smoothed = f", smoothed {result.smoothing:g}" if result.smoothing else ""
    head = f"settling ({result.metric} below {percent} of its peak{smoothed}):"
    by_layer = {s.layer: s for s in result.layers}
    parts = [", ".join(f"{layer} {by_layer[layer].step}" for layer in result.order) or "none settled"]
    for state in (settling.NOT_YET, settling.NEVER_MOVED, settling.NO_DATA):
        layers = result.in_state(state)
        if layers:
            parts.append(f"{state}: {', '.join(layers)}")
    return f"{head} {'; '.join(parts)}"


def _correlation_text(rho: float) -> str:
    if math.isnan(rho):
        return "rho undefined (fewer than two layers to rank, or all tied)"
    if rho > 0:
        meaning = "the layers near the input settle first"
    elif rho < 0:
        meaning = "the layers near the output settle first"
    else:
        meaning = "no order by depth"
    return f"rho = {_signed(rho)} ({meaning})"


def _robustness_text(table: Optional[RobustnessTable]) -> str:
    if table is None:
        return "robustness: no robustness table logged"
    labels = table.labels
    parts = []
    for label in ("robust", "ambient", "undefined"):
        layers = [layer for layer, have in zip(table.layers, labels) if have == label]
        if layers:
            parts.append(f"{label} {', '.join(layers)}")
    head = f"robustness at step {table.step} ({table.label_metric}, threshold {table.threshold:g})"
    return f"{head}: {'; '.join(parts) or 'no layers'}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"
