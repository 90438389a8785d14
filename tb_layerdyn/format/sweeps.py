"""The sweeps payload: interpolation sweeps and robustness tables, built, checked and decoded here.

Numpy and protobuf only: the writer, ``tb_layerdyn.read`` and the plugin all import this module.

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
``{"layer", "parameter", "index"}`` per curve. ``model`` names the tracker when several models share
a writer (absent otherwise).

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
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_layerdyn.format import checks, envelope, tensors

KIND = "sweep"
VERSION = 1
TAG_PREFIX = envelope.TAG_PREFIX + "sweep/"
# Readers keep where these records lie and decode them when asked (``check`` when reading them).
STORAGE = "records"

INTERPOLATION_SCOPES = ("model", "layers", "parameters")
ROBUSTNESS_SCOPE = "robustness"
CONDITIONS = ("end", "reinitialized", "rerandomized")


def sweep_layout(scope, metrics, curves, alphas, parameters=None, model=None):
    """Builds and checks the layout of one interpolation sweep.

    Args:
        scope: ``"model"``, ``"layers"`` or ``"parameters"``.
        metrics: metric names, one per plane.
        curves: curve names, one per row.
        alphas: the interpolation coefficients.
        parameters: for the parameter scope, one ``{"layer", "parameter", "index"}`` per curve.
        model: the tracker's name when several models share a writer.

    Returns:
        The layout dict (without ``kind`` and ``version``, which ``sweep_pb`` adds).

    Raises:
        ValueError: an argument breaks the layout's rules; the message names it.
    """
    if scope not in INTERPOLATION_SCOPES:
        raise ValueError(f"scope must be one of {list(INTERPOLATION_SCOPES)}, got {scope!r}")
    layout = {
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
    return _checked(layout, model)


def robustness_layout(metrics, layers, threshold, label_metric, model=None):
    """Builds and checks the layout of a robustness table (arguments as in ``sweep_layout``)."""
    layout = {
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
    return _checked(layout, model)


def _checked(layout, model):
    if model is not None:
        layout["model"] = str(model)
    return checks.built(layout, parse_layout, KIND, VERSION)


def parse_layout(content):
    """The layout of a sweep tag, checked for readers, from its content dict
    (``envelope.parse_content``'s).

    Returns:
        The content dict itself, whose keys ``expected_shape`` and ``decode`` may then rely on.

    Raises:
        envelope.FormatError: a key is missing or breaks the layout's rules.
    """
    metrics = checks.names(content, "metrics")
    checks.optional_string(content, "model")
    scope = content.get("scope")
    if scope == ROBUSTNESS_SCOPE:
        checks.names(content, "layers")
        checks.number(content, "threshold")
        if content.get("label_metric") not in metrics:
            raise envelope.FormatError(
                f"label_metric {content.get('label_metric')!r} is not among the metrics"
            )
        return content
    if scope not in INTERPOLATION_SCOPES:
        raise envelope.FormatError(f"scope {scope!r} is not one of {list(INTERPOLATION_SCOPES + (ROBUSTNESS_SCOPE,))}")
    curves = checks.names(content, "curves")
    checks.numbers(content, "alphas")
    if scope == "parameters":
        parameters = content.get("parameters")
        if not isinstance(parameters, list) or len(parameters) != len(curves):
            raise envelope.FormatError("the parameter scope needs one 'parameters' entry per curve")
        for p in parameters:
            if not (
                isinstance(p, dict)
                and isinstance(p.get("layer"), str)
                and isinstance(p.get("parameter"), str)
                and isinstance(p.get("index"), list)
                and all(isinstance(i, int) and not isinstance(i, bool) for i in p["index"])
            ):
                raise envelope.FormatError("a 'parameters' entry is not {layer, parameter, index}")
    return content


def expected_shape(layout):
    """The tensor shape a layout describes."""
    if layout["scope"] == ROBUSTNESS_SCOPE:
        return (len(CONDITIONS), len(layout["metrics"]), len(layout["layers"]))
    return (len(layout["metrics"]) + 1, len(layout["curves"]), len(layout["alphas"]))


def sweep_tag(layout):
    """The tag of a sweep payload: ``layer_dynamics/sweep/<scope>/<digest>``."""
    return f"{TAG_PREFIX}{layout['scope']}/{envelope.digest(layout)}"


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
        tag=sweep_tag(layout), tensor=tensors.proto(array, types_pb2.DT_FLOAT)
    )
    value.metadata.CopyFrom(envelope.summary_metadata(KIND, VERSION, layout))
    return summary_pb2.Summary(value=[value])


def check(layout, value):
    """Raises ``envelope.FormatError`` when a value does not fit its layout (``decode_tensor``)."""
    decode_tensor(layout, value)


def decode_tensor(layout, value):
    """The float32 array of one sweep value, checked against its layout.

    Raises:
        envelope.FormatError: another dtype, or not the layout's shape.
    """
    array = tensors.decode(value.tensor, types_pb2.DT_FLOAT)
    if array.shape != expected_shape(layout):
        raise envelope.FormatError(
            f"tensor has shape {array.shape}; the {layout['scope']} layout needs "
            f"{expected_shape(layout)}"
        )
    return array


def decode(layout, values):
    """Turns a payload back into JSON-ready lists (NaN -> ``None``), for readers and routes.

    Args:
        layout: a layout checked by ``parse_layout``.
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
