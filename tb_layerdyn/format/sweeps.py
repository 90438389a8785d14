"""The event payload of sweeps: pure builders and decoders, numpy and protobuf only (no torch).

Both the writer and the plugin import this module, so it must not import torch; the package's
``__init__`` is lazy for that reason.

Interpolation sweep (scopes ``model``, ``layers``, ``parameters``)
-----------------------------------------------------------------
One tensor summary per scope and sweep, written at the training step when the sweep was taken,
under the tag ``layer_dynamics/sweep/<scope>/<layout digest>``. Alpha lives in the payload, never
in the step. The float32 tensor has shape ``(len(metrics) + 1, len(curves), len(alphas))``:
``values[i, c, a]`` is metric ``metrics[i]`` of curve ``curves[c]`` at ``alphas[a]``; the last
plane holds each curve's travel ``|theta1 - theta0|``, repeated along alpha so the tensor stays
rectangular. NaN marks a metric that was NaN.

Layout (``plugin_data.content``; JSON): ``kind`` ``"sweep"``, ``scope``, ``metrics``, ``curves``
(depth order for layers), ``alphas``, and for the parameter scope ``parameters``, one
``{"layer", "parameter", "index"}`` per curve.

Robustness (scope ``robustness``)
---------------------------------
Tag ``layer_dynamics/sweep/robustness/<layout digest>``; float32 tensor of shape
``(3, len(metrics), len(layers))``: plane 0 the end model's metrics (the same in every column),
plane 1 the metrics with that layer re-initialized, plane 2 re-randomized (NaN when the layer
could not be). Layout: ``kind`` ``"sweep"``, ``scope`` ``"robustness"``, ``metrics``, ``layers``
(depth order), ``conditions`` (``["end", "reinitialized", "rerandomized"]``), ``threshold`` and
``label_metric`` (see ``robustness``; readers may relabel with another threshold).
"""

import math

import numpy as np
from tensorboard.compat.proto import summary_pb2
from tensorboard.util import tensor_util

from tb_layerdyn.format import envelope as metadata

INTERPOLATION_SCOPES = ("model", "layers", "parameters")
ROBUSTNESS_SCOPE = "robustness"
CONDITIONS = ("end", "reinitialized", "rerandomized")


def sweep_layout(scope, metrics, curves, alphas, parameters=None):
    """Builds and checks the layout of one interpolation sweep.

    Args:
        scope: ``"model"``, ``"layers"`` or ``"parameters"``.
        metrics: metric names, one per plane.
        curves: curve names, one per row.
        alphas: the interpolation coefficients.
        parameters: for the parameter scope, one ``{"layer", "parameter", "index"}`` per curve.

    Returns:
        The layout dict.
    """
    if scope not in INTERPOLATION_SCOPES:
        raise ValueError(f"scope must be one of {list(INTERPOLATION_SCOPES)}, got {scope!r}")
    layout = {
        "kind": metadata.KIND_SWEEP,
        "scope": scope,
        "metrics": [str(m) for m in metrics],
        "curves": [str(c) for c in curves],
        "alphas": [float(a) for a in alphas],
    }
    if not layout["metrics"] or not layout["curves"] or not layout["alphas"]:
        raise ValueError("a sweep layout needs at least one metric, one curve and one alpha")
    if scope == "parameters":
        if parameters is None or len(parameters) != len(layout["curves"]):
            raise ValueError("the parameter scope needs one parameters entry per curve")
        layout["parameters"] = [
            {
                "layer": str(p["layer"]),
                "parameter": str(p["parameter"]),
                "index": [int(i) for i in p["index"]],
            }
            for p in parameters
        ]
    return layout


def robustness_layout(metrics, layers, threshold, label_metric):
    """Builds and checks the layout of a robustness table."""
    layout = {
        "kind": metadata.KIND_SWEEP,
        "scope": ROBUSTNESS_SCOPE,
        "metrics": [str(m) for m in metrics],
        "layers": [str(n) for n in layers],
        "conditions": list(CONDITIONS),
        "threshold": float(threshold),
        "label_metric": str(label_metric),
    }
    if layout["label_metric"] not in layout["metrics"]:
        raise ValueError(f"label_metric {label_metric!r} is not among metrics {layout['metrics']}")
    if not layout["layers"]:
        raise ValueError("a robustness layout needs at least one layer")
    return layout


def parse_layout(content):
    """The layout of a sweep payload, from its ``plugin_data.content``, checked for readers.

    Readers (``tb_layerdyn.read`` and the plugin) call this before ``decode``, so that a payload
    of another kind, a newer version or a malformed layout is skipped rather than misread.

    Args:
        content: the raw ``plugin_data.content`` (bytes or str).

    Returns:
        The layout dict, or ``None`` when it is not a sweep layout this release can decode.
    """
    layout = metadata.parse_plugin_metadata(content)
    if layout is None or layout.get("kind") != metadata.KIND_SWEEP:
        return None
    metrics = layout.get("metrics")
    if not _names(metrics):
        return None
    scope = layout.get("scope")
    if scope == ROBUSTNESS_SCOPE:
        threshold = layout.get("threshold")
        valid = (
            _names(layout.get("layers"))
            and _number(threshold)
            and layout.get("label_metric") in metrics
        )
        return layout if valid else None
    if scope not in INTERPOLATION_SCOPES:
        return None
    curves, alphas = layout.get("curves"), layout.get("alphas")
    if not (_names(curves) and isinstance(alphas, list) and alphas and all(map(_number, alphas))):
        return None
    if scope == "parameters":
        parameters = layout.get("parameters")
        if not isinstance(parameters, list) or len(parameters) != len(curves):
            return None
        keys = {"layer", "parameter", "index"}
        if not all(isinstance(p, dict) and keys <= set(p) for p in parameters):
            return None
    return layout


def _names(value):
    return isinstance(value, list) and bool(value) and all(isinstance(v, str) for v in value)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def expected_shape(layout):
    """The tensor shape a layout describes."""
    if layout["scope"] == ROBUSTNESS_SCOPE:
        return (len(CONDITIONS), len(layout["metrics"]), len(layout["layers"]))
    return (len(layout["metrics"]) + 1, len(layout["curves"]), len(layout["alphas"]))


def sweep_tag(layout):
    """The tag of a sweep payload: ``layer_dynamics/sweep/<scope>/<digest>``."""
    return f"{metadata.SWEEP_TAG_PREFIX}{layout['scope']}/{metadata.layout_digest(layout)}"


def sweep_pb(values, layout):
    """Builds the ``Summary`` of one sweep payload (either kind), metadata attached.

    Sweeps are rare, so every record carries its layout: each event file stays self-describing.

    Args:
        values: array-like of ``expected_shape(layout)``; cast to float32.
        layout: from ``sweep_layout`` or ``robustness_layout``.

    Returns:
        A ``summary_pb2.Summary`` with one value under ``sweep_tag(layout)``.
    """
    array = np.asarray(values, dtype=np.float32)
    if array.shape != expected_shape(layout):
        raise ValueError(
            f"values has shape {array.shape}; the {layout['scope']} layout needs "
            f"{expected_shape(layout)}"
        )
    value = summary_pb2.Summary.Value(
        tag=sweep_tag(layout), tensor=tensor_util.make_tensor_proto(array)
    )
    value.metadata.CopyFrom(metadata.create_summary_metadata(layout))
    return summary_pb2.Summary(value=[value])


def decode(layout, values):
    """Turns a payload back into JSON-ready lists (NaN -> ``None``), for readers and routes.

    Args:
        layout: the parsed ``plugin_data.content`` (``metadata.parse_plugin_metadata``).
        values: the tensor as a numpy array.

    Returns:
        For an interpolation scope: ``{"scope", "alphas", "metrics", "curves", "travel",
        "columns"}`` where ``columns[metric]`` is ``[alphas, curve 1, curve 2, ...]`` (uPlot's
        layout), plus ``"parameters"`` for the parameter scope. For robustness: ``{"scope",
        "layers", "metrics", "end", "reinitialized", "rerandomized", "threshold",
        "label_metric", "labels"}`` with ``{metric: [value per layer]}`` tables.

    Raises:
        ValueError: the tensor's shape does not match the layout.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.shape != expected_shape(layout):
        raise ValueError(
            f"a {layout.get('scope')} payload has shape {array.shape}, its layout says "
            f"{expected_shape(layout)}"
        )
    metrics = list(layout["metrics"])
    if layout["scope"] == ROBUSTNESS_SCOPE:
        tables = {
            condition: {m: _json_list(array[k, i]) for i, m in enumerate(metrics)}
            for k, condition in enumerate(CONDITIONS)
        }
        label_row = metrics.index(layout["label_metric"])
        return {
            "scope": ROBUSTNESS_SCOPE,
            "layers": list(layout["layers"]),
            "metrics": metrics,
            "end": {m: tables["end"][m][0] for m in metrics},
            "reinitialized": tables["reinitialized"],
            "rerandomized": tables["rerandomized"],
            "threshold": layout["threshold"],
            "label_metric": layout["label_metric"],
            "labels": labels(array[1, label_row] - array[0, label_row], layout["threshold"]),
        }
    alphas = [float(a) for a in layout["alphas"]]
    decoded = {
        "scope": layout["scope"],
        "alphas": alphas,
        "metrics": metrics,
        "curves": list(layout["curves"]),
        "travel": _json_list(array[-1, :, 0]),
        "columns": {
            m: [alphas] + [_json_list(row) for row in array[i]] for i, m in enumerate(metrics)
        },
    }
    if "parameters" in layout:
        decoded["parameters"] = layout["parameters"]
    return decoded


def labels(changes, threshold):
    """``"robust"`` when ``|change| > threshold``, ``"ambient"`` otherwise, ``"undefined"`` for NaN."""
    result = []
    for change in np.asarray(changes, dtype=np.float64).reshape(-1):
        if math.isnan(change):
            result.append("undefined")
        else:
            result.append("robust" if abs(change) > threshold else "ambient")
    return result


def _json_list(row):
    return [None if math.isnan(v) else float(v) for v in np.asarray(row, dtype=np.float64)]
