"""Assembles the logged events of one run into step x layer tables, for any reader.

A run's per-layer metrics may be spread over several tags, one per layout (a layer that appears or
disappears starts a new layout; see ``metadata``). This module merges them by layer and group name
into one table per metric. It imports neither torch nor the plugin, so both ``tb_layerdyn.read`` and
the TensorBoard plugin build on it.
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np


@dataclasses.dataclass
class LayoutEvents:
    """The events of one layout tag: its content dict, steps and stacked tensors.

    ``values`` has shape ``(len(steps), len(metrics), len(layers) + len(groups))``.
    """

    content: dict
    steps: np.ndarray
    values: np.ndarray


@dataclasses.dataclass
class RunTable:
    """Every logged step of one run, merged across layouts.

    Attributes:
        layers: layer names in depth order (input -> output).
        param_counts: scalar parameters per layer (the latest layout's count for a layer).
        groups: ``{"name", "kind", "members"}`` dicts, in first-seen order.
        steps: ascending int64 array of logged steps.
        metrics: metric name -> float array ``(len(steps), len(layers))``, NaN where undefined or
            not logged.
        group_metrics: metric name -> float array ``(len(steps), len(groups))``.
        info: how values were computed: ``rwc``, ``granularity`` and ``order`` of the latest layout.
    """

    layers: List[str]
    param_counts: List[int]
    groups: List[dict]
    steps: np.ndarray
    metrics: Dict[str, np.ndarray]
    group_metrics: Dict[str, np.ndarray]
    info: Dict[str, str]


def merge_order(orders: Sequence[Sequence[str]]) -> List[str]:
    """Merges several depth orders, oldest first, into one that keeps each name's neighbours.

    The newest order wins (a tracker may learn the forward order after its first call); a name that
    only older orders know is placed right after the nearest name that precedes it in its own order
    and is already placed (or first, when none is).
    """
    merged: List[str] = []
    for order in reversed(orders):
        for position, name in enumerate(order):
            if name in merged:
                continue
            anchor = -1
            for previous in reversed(order[:position]):
                if previous in merged:
                    anchor = merged.index(previous)
                    break
            merged.insert(anchor + 1, name)
    return merged


def _empty(num_steps: int, num_cols: int) -> np.ndarray:
    return np.full((num_steps, num_cols), np.nan, dtype=np.float64)


def build_run_table(layouts: Sequence[LayoutEvents]) -> RunTable:
    """Merges the layouts of one run into a ``RunTable``.

    Layouts are applied in order of their first step, so where two layouts hold the same step and
    series, the later layout's defined value wins.
    """
    layouts = sorted(
        (lay for lay in layouts if len(lay.steps)), key=lambda lay: int(np.min(lay.steps))
    )
    layers = merge_order([lay.content["layers"] for lay in layouts])
    group_names = merge_order([[g["name"] for g in lay.content["groups"]] for lay in layouts])
    steps = np.unique(np.concatenate([np.asarray(lay.steps, np.int64) for lay in layouts])) if layouts else np.zeros(0, np.int64)

    param_counts = {}
    groups: Dict[str, dict] = {}
    metrics: Dict[str, np.ndarray] = {}
    group_metrics: Dict[str, np.ndarray] = {}
    info: Dict[str, str] = {}
    layer_index = {name: i for i, name in enumerate(layers)}
    group_index = {name: i for i, name in enumerate(group_names)}
    for lay in layouts:
        content = lay.content
        param_counts.update(zip(content["layers"], content["param_counts"]))
        for group in content["groups"]:
            groups[group["name"]] = group
        info = {key: content[key] for key in ("rwc", "granularity", "order", "model", "descriptions") if key in content}
        rows = np.searchsorted(steps, np.asarray(lay.steps, np.int64))
        num_layers = len(content["layers"])
        layer_cols = [layer_index[name] for name in content["layers"]]
        group_cols = [group_index[g["name"]] for g in content["groups"]]
        values = np.asarray(lay.values, dtype=np.float64)
        for m, metric in enumerate(content["metrics"]):
            table = metrics.setdefault(metric, _empty(len(steps), len(layers)))
            _assign(table, rows, layer_cols, values[:, m, :num_layers])
            gtable = group_metrics.setdefault(metric, _empty(len(steps), len(group_names)))
            _assign(gtable, rows, group_cols, values[:, m, num_layers:])
    return RunTable(
        layers=layers,
        param_counts=[int(param_counts[name]) for name in layers],
        groups=[groups[name] for name in group_names],
        steps=steps,
        metrics=metrics,
        group_metrics=group_metrics,
        info=info,
    )


def _assign(table: np.ndarray, rows: np.ndarray, cols: List[int], values: np.ndarray) -> None:
    """Writes ``values`` (rows x cols) into ``table`` where they are defined."""
    if not cols or not len(rows):
        return
    block = table[np.ix_(rows, cols)]
    defined = ~np.isnan(values)
    block[defined] = values[defined]
    table[np.ix_(rows, cols)] = block


def stack_events(events: Sequence[Tuple[int, np.ndarray]]) -> Tuple[np.ndarray, np.ndarray]:
    """Sorts ``(step, tensor)`` pairs by step, keeping the last value of a repeated step.

    This is the rule TensorBoard's Rust loader applies, so every reader agrees with the charts.

    Returns:
        ``(steps, values)`` with ``values`` stacked along a new first axis.
    """
    latest: Dict[int, np.ndarray] = {}
    for step, tensor in events:
        latest[int(step)] = tensor
    steps = np.array(sorted(latest), dtype=np.int64)
    if not len(steps):
        return steps, np.zeros((0,), dtype=np.float32)
    return steps, np.stack([latest[int(s)] for s in steps])
