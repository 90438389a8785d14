"""Shapes a run's ``RunTable`` into the JSON bodies of ``http_api.md``, ready for the charts.

Time series go out as columns (steps, then one column per series) so uPlot takes them as they are.
Every non-finite value becomes ``null``: JSON has no NaN, and the writer only logs NaN where a value
is undefined. The large step x series arrays are written by ``json_numbers`` and embedded as
``RawJSON`` text; the rest goes through ``json.dumps``.
"""

import json

import numpy as np

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.plugin import downsample
from tb_layerdyn.plugin import json_numbers
from tb_layerdyn.format import sweeps as encoding

TARGETS = ("layers", "groups")

# Metrics drawn as bars by the summary route, in the order of ``http_api.md``.
SUMMARY_METRICS = ("distance_from_init", "relative_distance_from_init", "rwc")


def nullable(values):
    """A numpy array as nested lists of floats, with ``None`` for NaN and infinities."""
    values = np.asarray(values, dtype=np.float64)
    out = values.astype(object)
    out[~np.isfinite(values)] = None
    return out.tolist()


class RawJSON(str):
    """JSON text that ``to_json`` embeds as it is."""


def to_json(body):
    """Serialises a payload dict whose top-level values may be ``RawJSON``.

    Non-ASCII characters in names are escaped, so the text is plain ASCII.
    """
    parts = []
    for key, value in body.items():
        if isinstance(value, RawJSON):
            text = str(value)
        else:
            text = json.dumps(value, allow_nan=False, separators=(",", ":"))
        parts.append(json.dumps(key) + ":" + text)
    return "{" + ",".join(parts) + "}"


def columns_json(steps, values):
    """uPlot's columns as JSON text: the steps, then one list per column of ``values``."""
    series = json_numbers.float_rows(np.asarray(values).T)
    if series == "[]":
        return RawJSON("[" + json_numbers.int_list(steps) + "]")
    return RawJSON("[" + json_numbers.int_list(steps) + "," + series[1:])


def sorted_metrics(names):
    """Metric names in the writer's order, unknown ones (from a newer writer) last by name."""
    known = {name: i for i, name in enumerate(layer_metrics.METRIC_NAMES)}
    return sorted(names, key=lambda name: (known.get(name, len(known)), name))


def run_entry(run, run_table=None, content=None, last_step=None, sweeps=0):
    """One element of the ``runs`` list.

    Args:
        run: the run name.
        run_table: the run's merged ``RunTable``; needed when it has several layouts.
        content: the layout dict, enough when the run has a single layout. With neither
            ``run_table`` nor ``content`` the run has sweeps only: no layers, no metrics.
        last_step: the run's largest step of per-layer metrics.
        sweeps: how many sweeps the run has (the length of its ``sweeps`` listing).

    Returns:
        The dict described under ``runs`` in ``http_api.md``.
    """
    if run_table is not None:
        layers, param_counts, groups = run_table.layers, run_table.param_counts, run_table.groups
        metrics, info = list(run_table.metrics), run_table.info
    elif content is not None:
        layers, param_counts, groups = content["layers"], content["param_counts"], content["groups"]
        metrics, info = content["metrics"], content
    else:
        layers, param_counts, groups, metrics, info = [], [], [], [], {}
    return {
        "run": run,
        "layers": list(layers),
        "param_counts": [int(n) for n in param_counts],
        "groups": [
            {"name": g["name"], "kind": g.get("kind", "user"), "members": list(g["members"])}
            for g in groups
        ],
        "metrics": sorted_metrics(metrics),
        "rwc": info.get("rwc"),
        "granularity": info.get("granularity"),
        "order": info.get("order"),
        "last_step": None if last_step is None else int(last_step),
        "sweeps": int(sweeps),
        "model": info.get("model"),
        "descriptions": _descriptions(info, layers),
    }


def _descriptions(info, layers):
    """The layout's per-layer descriptions, when they are aligned with ``layers``."""
    descriptions = info.get("descriptions")
    if descriptions is None or len(descriptions) != len(layers):
        return None
    return [str(d) for d in descriptions]


def _target_values(run_table, metric, target):
    """``(names, step x series values)`` of one metric for layers or groups."""
    if target == "groups":
        return [g["name"] for g in run_table.groups], run_table.group_metrics[metric]
    return list(run_table.layers), run_table.metrics[metric]


def series(run, run_table, metric, target, max_points):
    """The body of the ``series`` route (the metric must be in ``run_table.metrics``)."""
    names, values = _target_values(run_table, metric, target)
    steps, values, downsampled = downsample.envelope(run_table.steps, values, max_points)
    return {
        "run": run,
        "metric": metric,
        "target": target,
        "names": names,
        "columns": columns_json(steps, values),
        "total_steps": int(len(run_table.steps)),
        "downsampled": bool(downsampled),
    }


def heatmap(run, run_table, metric, target, max_steps):
    """The body of the ``heatmap`` route (the metric must be in ``run_table.metrics``)."""
    names, values = _target_values(run_table, metric, target)
    steps, values, downsampled = downsample.bin_means(run_table.steps, values, max_steps)
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    return {
        "run": run,
        "metric": metric,
        "target": target,
        "names": names,
        "steps": steps.tolist(),
        "values": RawJSON(json_numbers.float_rows(values.T)),
        "min_positive": float(positive.min()) if positive.size else None,
        "max": float(finite.max()) if finite.size else None,
        "downsampled": bool(downsampled),
    }


def latest_defined(values):
    """Per column of a step x series array, its last finite value (NaN when it has none)."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] == 0:
        return np.full(values.shape[1], np.nan)
    finite = np.isfinite(values)
    last_row = values.shape[0] - 1 - np.argmax(finite[::-1], axis=0)
    latest = values[last_row, np.arange(values.shape[1])]
    return np.where(finite.any(axis=0), latest, np.nan)


def summary(run, run_table):
    """The body of the ``summary`` route: latest defined values at the last logged step."""
    steps = run_table.steps
    layers = {"names": list(run_table.layers), "param_counts": list(run_table.param_counts)}
    groups = {"names": [g["name"] for g in run_table.groups]}
    for metric in SUMMARY_METRICS:
        for out, tables, width in (
            (layers, run_table.metrics, len(run_table.layers)),
            (groups, run_table.group_metrics, len(run_table.groups)),
        ):
            if metric in tables:
                out[metric] = nullable(latest_defined(tables[metric]))
            else:
                out[metric] = [None] * width
    return {
        "run": run,
        "step": int(steps[-1]) if len(steps) else None,
        "layers": layers,
        "groups": groups,
    }


def _finite(value):
    """``value`` with every non-finite float, at any depth of lists and dicts, made ``None``.

    ``encoding.decode`` already turns NaN into ``None``; a diverged evaluation can also log an
    infinite loss, which JSON cannot carry either.
    """
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def sweep_listing(run, sweeps):
    """The body of the ``sweeps`` route from a run's ``sweeps_data.Sweep`` list (in order)."""
    entries = []
    for sweep in sweeps:
        layout = sweep.layout
        entry = {"step": sweep.step, "scope": sweep.scope, "metrics": list(layout["metrics"])}
        if sweep.scope == encoding.ROBUSTNESS_SCOPE:
            entry["layers"] = len(layout["layers"])
        else:
            entry["curves"] = len(layout["curves"])
            entry["alphas"] = len(layout["alphas"])
        entries.append(entry)
    return {"run": run, "sweeps": entries}


def sweep(run, found, threshold=None):
    """The body of the ``sweep`` route for one ``sweeps_data.Sweep``.

    Args:
        run: the run name.
        found: the sweep.
        threshold: for a robustness table, label with this threshold instead of the logged one.

    Returns:
        ``{"run", "step"}`` and what ``encoding.decode`` returns, every non-finite value ``null``.
    """
    layout = found.layout if threshold is None else dict(found.layout, threshold=float(threshold))
    body = {"run": run, "step": found.step}
    body.update(_finite(encoding.decode(layout, found.values)))
    return body
