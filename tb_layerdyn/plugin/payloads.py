"""Shapes a run's ``RunTable`` into the JSON bodies of ``http_api.md``, ready for the charts.

Time series go out as columns (steps, then one column per series) so uPlot takes them as they are.
Every non-finite value becomes ``null``: JSON has no NaN, and the writer only logs NaN where a value
is undefined. The large step x series arrays are written by ``json_numbers`` and embedded as
``RawJSON`` text; the rest goes through ``json.dumps``.
"""

import json
import struct

import numpy as np

from tb_layerdyn.format import layer_metrics
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


def run_entry(entry, pictures=()):
    """One element of the ``runs`` list, for a ``plugin.data.Entry``.

    Args:
        entry: the entry.
        pictures: the picture kinds it logged.

    Returns:
        The dict described under ``runs`` in ``http_api.md``.
    """
    table = entry.table
    if table is None:
        layers, param_counts, groups, metrics, info, descriptions = [], [], [], [], {}, None
        last_step = None
    else:
        layers, param_counts, groups = table.layers, table.param_counts, table.groups
        metrics, info, descriptions = table.metrics, table.info, table.descriptions
        last_step = table.last_step
    return {
        "run": entry.run,
        "model": entry.model,
        "layers": list(layers),
        "param_counts": [int(n) for n in param_counts],
        "descriptions": None if descriptions is None else list(descriptions),
        "groups": [{"name": g.name, "kind": g.kind, "members": list(g.members)} for g in groups],
        "metrics": sorted_metrics(metrics),
        "rwc": info.get("rwc"),
        "granularity": info.get("granularity"),
        "order": info.get("order"),
        "last_step": None if last_step is None else int(last_step),
        "sweeps": int(entry.sweeps),
        "pictures": list(pictures),
    }


def series(entry, found, metric, target, total_steps):
    """The body of the ``series`` route from a ``models.Series``."""
    return {
        "run": entry.run,
        "model": entry.model,
        "metric": metric,
        "target": target,
        "names": found.names,
        "columns": columns_json(found.steps, found.values),
        "total_steps": int(total_steps),
        "downsampled": bool(found.downsampled),
    }


def series_binary(entry, found, metric, target, total_steps):
    """The ``series`` route's body as binary (``format=binary`` in ``http_api.md``)."""
    return b"".join(series_binary_pieces(entry, found, metric, target, total_steps))


def series_binary_pieces(entry, found, metric, target, total_steps):
    """``series_binary`` in pieces, for ``concatenated`` to join once with the other entries'."""
    header = {
        "run": entry.run,
        "model": entry.model,
        "metric": metric,
        "target": target,
        "names": found.names,
        "points": int(len(found.steps)),
        "total_steps": int(total_steps),
        "downsampled": bool(found.downsampled),
    }
    return _binary_pieces(header, found.steps, found.values)


def concatenated(parts):
    """Binary bodies in one: a little-endian ``uint32`` count, then each body after its ``uint32``
    length (``series_batch`` in ``http_api.md``). A body may be given as bytes or as a list of its
    pieces (``series_binary_pieces``): every piece is copied once, into the result."""
    out = [struct.pack("<I", len(parts))]
    for part in parts:
        pieces = part if isinstance(part, list) else [part]
        out.append(struct.pack("<I", sum(memoryview(piece).nbytes for piece in pieces)))
        out.extend(pieces)
    return b"".join(out)


def heatmap(entry, found, metric, target):
    """The body of the ``heatmap`` route from a ``models.Series`` of bin means."""
    values = np.asarray(found.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    return {
        "run": entry.run,
        "model": entry.model,
        "metric": metric,
        "target": target,
        "names": found.names,
        "steps": np.asarray(found.steps).tolist(),
        "values": RawJSON(json_numbers.float_rows(values.T)),
        "min_positive": float(positive.min()) if positive.size else None,
        "max": float(finite.max()) if finite.size else None,
        "downsampled": bool(found.downsampled),
    }


def heatmap_binary(entry, found, metric, target):
    """The ``heatmap`` route's body as binary (``format=binary`` in ``http_api.md``)."""
    values = np.asarray(found.values)  # float32: its extremes are the same numbers in float64
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    header = {
        "run": entry.run,
        "model": entry.model,
        "metric": metric,
        "target": target,
        "names": found.names,
        "points": int(len(found.steps)),
        "min_positive": float(positive.min()) if positive.size else None,
        "max": float(finite.max()) if finite.size else None,
        "downsampled": bool(found.downsampled),
    }
    return _binary(header, found.steps, found.values)


def _binary(header, steps, values):
    """A JSON header (padded to 8 bytes), float64 steps, float32 values series after series."""
    return b"".join(_binary_pieces(header, steps, values))


def _binary_pieces(header, steps, values):
    """``_binary`` as the buffers it joins: the values are laid out series after series once, and
    no piece is copied again before the join (an answer of 20 runs x 200 layers is megabytes)."""
    text = json.dumps(header, separators=(",", ":")).encode("ascii")
    padding = -(4 + len(text)) % 8
    return [
        struct.pack("<I", len(text) + padding), text, b" " * padding,
        np.ascontiguousarray(steps, dtype="<f8"),
        np.ascontiguousarray(np.asarray(values, dtype="<f4").T),
    ]


def summary(entry, latest):
    """The body of the ``summary`` route.

    Args:
        entry: the ``plugin.data.Entry``.
        latest: ``(target, metric) -> per-series latest defined values`` for ``SUMMARY_METRICS``
            the run logged.
    """
    table = entry.table
    layers = {"names": list(table.layers), "param_counts": list(table.param_counts)}
    groups = {"names": [g.name for g in table.groups]}
    for metric in SUMMARY_METRICS:
        for target, out in (("layers", layers), ("groups", groups)):
            values = latest.get((target, metric))
            out[metric] = nullable(values) if values is not None else [None] * len(out["names"])
    return {
        "run": entry.run,
        "model": entry.model,
        "step": table.last_step,
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


def sweep_listing(entry, sweeps):
    """The body of the ``sweeps`` route from a run's ``sweep_index.LoggedSweep`` list (in order)."""
    listed = []
    for sweep in sweeps:
        layout = sweep.layout
        item = {"step": sweep.step, "scope": sweep.scope, "metrics": list(layout["metrics"])}
        if sweep.scope == encoding.ROBUSTNESS_SCOPE:
            item["layers"] = len(layout["layers"])
        else:
            item["curves"] = len(layout["curves"])
            item["alphas"] = len(layout["alphas"])
        listed.append(item)
    return {"run": entry.run, "model": entry.model, "sweeps": listed}


def sweep(entry, found, values, threshold=None):
    """The body of the ``sweep`` route for one ``sweep_index.LoggedSweep``.

    Args:
        entry: the ``plugin.data.Entry`` (or anything with ``run`` and ``model``).
        found: the sweep.
        values: its float32 payload.
        threshold: for a robustness table, label with this threshold instead of the logged one.

    Returns:
        ``{"run", "model", "step"}`` and what ``encoding.decode`` returns, every non-finite value
        ``null``.
    """
    layout = found.layout if threshold is None else dict(found.layout, threshold=float(threshold))
    body = {"run": entry.run, "model": entry.model, "step": found.step}
    body.update(_finite(encoding.decode(layout, values)))
    return body


def picture_listing(run, model, listings):
    """The body of the ``pictures`` route.

    Args:
        run: the run's name, as the request named it.
        model: the tracker's name, or ``None``.
        listings: kind -> ``reading.pictures.KindPictures``, in the order to list them.

    Returns:
        The dict described under ``pictures`` in ``http_api.md``.
    """
    kinds = []
    for kind, listed in listings.items():
        layers = []
        for column, name in enumerate(listed.layers):
            rows = listed.layer_steps(column)
            present = np.zeros(len(listed.steps), dtype=bool)
            present[rows] = True
            shape = None
            if len(rows):
                layout, index = listed.geometry(int(rows[-1]), column)
                shape = list(layout.drawn_shape(index))
            layers.append({
                "name": name,
                "description": listed.descriptions[column],
                "shape": shape,
                "absent": listed.steps[~present].tolist(),
                "scales": [list(s) for s in listed.fixed_scales(column, rows)] if len(rows) else None,
            })
        kinds.append({
            "kind": kind,
            "planes": list(listed.planes),
            "maps": list(listed.maps),
            "steps": listed.steps.tolist(),
            "wall_times": listed.wall_times.tolist(),
            "layers": layers,
        })
    return {"run": run, "model": model, "kinds": kinds}


def picture_frame(run, model, listed, row, pictures):
    """The ``frame`` route's body: one step's pictures of every layer of one kind, as binary.

    Args:
        run: the run's name, as the request named it.
        model: the tracker's name, or ``None``.
        listed: the kind's ``reading.pictures.KindPictures``.
        row: the step's row in ``listed.steps``.
        pictures: per layer of ``listed.layers``, its ``format.pictures.Picture`` or ``None``.

    Returns:
        ``bytes``: a little-endian ``uint32`` ``L``, ``L`` bytes of ASCII JSON (described under
        ``frame`` in ``http_api.md``), then every plane's PNG in the order the JSON lists them.
    """
    described, blobs = [], []
    for column, picture in enumerate(pictures):
        if picture is None:
            described.append(None)
            continue
        layout, index = listed.geometry(row, column)
        described.append({
            "description": layout.descriptions[index],
            "shape": list(layout.shapes[index]),
            "tile": list(layout.tiles[index]),
            "cells": layout.cells[index],
            "planes": [
                {"interval": list(plane.interval), "quantiles": list(plane.quantiles), "bytes": len(plane.png)}
                for plane in picture.planes
            ],
        })
        blobs.extend(plane.png for plane in picture.planes)
    header = {
        "run": run,
        "model": model,
        "kind": listed.kind,
        "step": int(listed.steps[row]),
        "wall_time": float(listed.wall_times[row]),
        "layers": list(listed.layers),
        "pictures": described,
    }
    text = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("ascii")
    return struct.pack("<I", len(text)) + text + b"".join(blobs)
