"""The ``sweeps`` and ``sweep`` routes through TensorBoard's real WSGI app, under both loaders.

The logdir is written by ``interpolation_sweep`` and ``log_interpolation_sweep`` on a tiny MLP
(``sweep_logdir``); every body is checked against the ``SweepResult`` the sweep returned, as
float32 (the precision of the payload), with the references written out plainly below.
"""

import math
import time
import urllib.parse

import numpy as np
import pytest

import sweep_logdir
from conftest import LOADERS, tensorboard_client
from route_helpers import ok_json
from tb_layerdyn.format import sweeps as encoding

PREFIX = "/data/plugin/layer_dynamics/"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    return sweep_logdir.write(str(tmp_path_factory.mktemp("sweeps")))


@pytest.fixture(scope="module", params=LOADERS)
def client(request, logged):
    expected = {run: len(pairs) for run, pairs in sweep_logdir.expected_scopes(logged).items()}
    expected["metrics_only"] = 0
    with tensorboard_client(logged.logdir, request.param) as served:
        # The Rust data server loads in the background: wait until it has every sweep.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            runs = _json(_get(served, "runs"))["runs"]
            if {entry["run"]: entry["sweeps"] for entry in runs} == expected:
                break
            time.sleep(0.1)
        yield served


def _get(client, route, **query):
    return client.get(PREFIX + route + "?" + urllib.parse.urlencode(query))


_json = ok_json


# ---------------------------------------------------------------- references


def _f32(value):
    """A logged value as JSON carries it: float32, ``None`` for NaN and infinities."""
    value = float(np.float32(value))
    return value if math.isfinite(value) else None


def _reference_curves(run, step, result, scope):
    curves = result.scopes[scope]
    alphas = [float(a) for a in result.alphas]
    body = {
        "run": run,
        "model": None,
        "step": step,
        "scope": scope,
        "alphas": alphas,
        "metrics": list(result.metrics),
        "curves": list(curves),
        "travel": [_f32(result.travel[curve]) for curve in curves],
        "columns": {
            metric: [alphas] + [[_f32(v) for v in result.curves[curve][metric]] for curve in curves]
            for metric in result.metrics
        },
    }
    if scope == "parameters":
        body["parameters"] = [result.parameters[curve] for curve in curves]
    return body


def _reference_labels(end, reinitialized, threshold):
    labels = []
    for value in reinitialized:
        change = float(np.float32(value)) - float(np.float32(end))
        if math.isnan(change):
            labels.append("undefined")
        else:
            labels.append("robust" if abs(change) > threshold else "ambient")
    return labels


def _reference_robustness(run, step, robust, threshold):
    return {
        "run": run,
        "model": None,
        "step": step,
        "scope": "robustness",
        "layers": list(robust.layers),
        "metrics": list(robust.metrics),
        "end": {m: _f32(robust.end_metrics[m]) for m in robust.metrics},
        "reinitialized": {m: [_f32(v) for v in robust.reinitialized[m]] for m in robust.metrics},
        "rerandomized": {m: [_f32(v) for v in robust.rerandomized[m]] for m in robust.metrics},
        "threshold": threshold,
        "label_metric": robust.label_metric,
        "labels": _reference_labels(
            robust.end_metrics[robust.label_metric], robust.reinitialized[robust.label_metric],
            threshold,
        ),
    }


# ---------------------------------------------------------------- runs and listings


def test_runs_counts_sweeps_and_lists_runs_with_sweeps_only(client, logged):
    by_run = {entry["run"]: entry for entry in _json(_get(client, "runs"))["runs"]}
    assert sorted(by_run) == ["diverged", "metrics_only", "mlp", "sweeps_only"]
    assert by_run["sweeps_only"] == {
        "run": "sweeps_only",
        "model": None,
        "layers": [],
        "param_counts": [],
        "descriptions": None,
        "groups": [],
        "metrics": [],
        "rwc": None,
        "granularity": None,
        "order": None,
        "last_step": None,
        "sweeps": sweep_logdir.MANY_STEPS + len(sweep_logdir.SWEEP_STEPS),
        "pictures": [],
    }
    assert by_run["mlp"]["sweeps"] == 4 * len(sweep_logdir.SWEEP_STEPS)
    assert by_run["mlp"]["layers"] == logged.results[("mlp", 4)].layers
    assert by_run["mlp"]["last_step"] == sweep_logdir.TRAIN_STEPS - 1
    assert by_run["metrics_only"]["sweeps"] == 0


def test_sweeps_lists_every_sweep_by_step_then_scope(client, logged):
    expected = sweep_logdir.expected_scopes(logged)
    for run in ("mlp", "sweeps_only"):
        entries = []
        for step, scope in expected[run]:
            result = logged.results[(run, step)]
            entry = {"step": step, "scope": scope, "metrics": ["loss", "accuracy"]}
            if scope == "robustness":
                entry["layers"] = len(result.robustness.layers)
            else:
                entry["curves"] = len(result.scopes[scope])
                entry["alphas"] = len(result.alphas)
            entries.append(entry)
        assert _json(_get(client, "sweeps", run=run)) == {"run": run, "model": None, "sweeps": entries}


def test_every_sweep_of_a_tag_survives_without_extra_flags(client):
    """More model sweeps than a stock Python loader keeps per tag (10): ``fix_flags`` keeps all."""
    body = _json(_get(client, "sweeps", run="sweeps_only"))
    steps = [entry["step"] for entry in body["sweeps"] if entry["scope"] == "model"]
    assert steps == list(range(sweep_logdir.MANY_STEPS))


def test_a_run_without_sweeps_lists_none(client):
    assert _json(_get(client, "sweeps", run="metrics_only")) == {
        "run": "metrics_only", "model": None, "sweeps": []}


# ---------------------------------------------------------------- sweep bodies


@pytest.mark.parametrize("scope", ["model", "layers", "parameters"])
@pytest.mark.parametrize("step", sweep_logdir.SWEEP_STEPS)
def test_sweep_is_the_logged_result(client, logged, step, scope):
    body = _json(_get(client, "sweep", run="mlp", step=step, scope=scope))
    assert body == _reference_curves("mlp", step, logged.results[("mlp", step)], scope)


def test_sweep_of_a_run_with_sweeps_only(client, logged):
    for step in (0, 4, 6, 11):
        for scope in logged.results[("sweeps_only", step)].scopes:
            body = _json(_get(client, "sweep", run="sweeps_only", step=step, scope=scope))
            result = logged.results[("sweeps_only", step)]
            assert body == _reference_curves("sweeps_only", step, result, scope)


def _model_tag(result):
    layout = encoding.sweep_layout("model", result.metrics, ["model"], result.alphas)
    return encoding.sweep_tag(layout)


def test_the_sweep_written_last_at_a_step_is_served(client, logged):
    served_first = []
    for step in sweep_logdir.REWRITTEN:
        result = logged.results[("sweeps_only", step)]
        early = logged.superseded[("sweeps_only", step)]
        assert list(early.alphas) != list(result.alphas)
        body = _json(_get(client, "sweep", run="sweeps_only", step=step, scope="model"))
        assert body == _reference_curves("sweeps_only", step, result, "model")
        served_first.append(_model_tag(result) < _model_tag(early))
    # Neither "the first tag wins" nor "the last tag wins" would pass both steps.
    assert sorted(served_first) == [False, True]


@pytest.mark.parametrize("step", sweep_logdir.SWEEP_STEPS)
def test_robustness_is_the_logged_table(client, logged, step):
    robust = logged.results[("mlp", step)].robustness
    body = _json(_get(client, "sweep", run="mlp", step=step, scope="robustness"))
    assert body == _reference_robustness("mlp", step, robust, robust.threshold)
    assert body["labels"] == robust.labels


def test_threshold_relabels_without_rerunning(client, logged):
    robust = logged.results[("mlp", 9)].robustness
    changes = sorted(
        abs(float(np.float32(v)) - float(np.float32(robust.end_metrics["loss"])))
        for v in robust.reinitialized["loss"]
    )
    assert changes[0] < changes[-1], "the test needs layers whose reset changes the loss apart"
    threshold = (changes[0] + changes[-1]) / 2
    body = _json(_get(client, "sweep", run="mlp", step=9, scope="robustness", threshold=threshold))
    assert body == _reference_robustness("mlp", 9, robust, threshold)
    assert {"robust", "ambient"} <= set(body["labels"])
    for everything, label in ((0, "robust"), (1e9, "ambient")):
        body = _json(_get(client, "sweep", run="mlp", step=9, scope="robustness",
                          threshold=everything))
        assert body["labels"] == [label] * len(robust.layers)


def test_infinite_and_undefined_values_are_null(client):
    body = _json(_get(client, "sweep", run="diverged", step=sweep_logdir.DIVERGED_STEP,
                      scope="robustness"))
    values = sweep_logdir.DIVERGED_VALUES
    assert body["end"] == {"loss": 0.5, "accuracy": float(np.float32(0.9))}
    assert body["reinitialized"]["loss"] == [None, _f32(values[1, 0, 1]), None]
    assert body["rerandomized"]["accuracy"] == [None, _f32(values[2, 1, 1]), _f32(values[2, 1, 2])]
    # An infinite loss after re-initialization is a layer the model needs; NaN says nothing.
    assert body["labels"] == ["robust", "ambient", "undefined"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "route, query, status, named",
    [
        ("sweeps", {}, 400, "run"),
        ("sweeps", {"run": "nope"}, 404, "nope"),
        ("sweep", {"step": "4", "scope": "model"}, 400, "run"),
        ("sweep", {"run": "mlp", "scope": "model"}, 400, "step"),
        ("sweep", {"run": "mlp", "step": "4"}, 400, "scope"),
        ("sweep", {"run": "mlp", "step": "four", "scope": "model"}, 400, "step"),
        ("sweep", {"run": "mlp", "step": "-4", "scope": "model"}, 400, "step"),
        ("sweep", {"run": "mlp", "step": "4.0", "scope": "model"}, 400, "step"),
        ("sweep", {"run": "mlp", "step": "9" * 30, "scope": "model"}, 400, "step"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "everything"}, 400, "scope"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "robustness", "threshold": "x"}, 400,
         "threshold"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "robustness", "threshold": "nan"}, 400,
         "threshold"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "robustness", "threshold": "inf"}, 400,
         "threshold"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "robustness", "threshold": "-0.1"}, 400,
         "threshold"),
        ("sweep", {"run": "mlp", "step": "4", "scope": "layers", "threshold": "0.1"}, 400,
         "threshold"),
        ("sweep", {"run": "nope", "step": "4", "scope": "model"}, 404, "nope"),
        ("sweep", {"run": "mlp", "step": "5", "scope": "model"}, 404, "step 5"),
        ("sweep", {"run": "metrics_only", "step": "4", "scope": "model"}, 404, "metrics_only"),
        ("sweep", {"run": "diverged", "step": "3", "scope": "layers"}, 404, "layers"),
    ],
)
def test_bad_sweep_queries_get_a_clear_4xx(client, route, query, status, named):
    response = _get(client, route, **query)
    assert response.status_code == status, response.get_data(as_text=True)
    assert named in response.get_data(as_text=True)
