"""``tb_layerdyn.read`` gives back the sweeps ``log_interpolation_sweep`` wrote.

The logdir is the one of ``sweep_logdir`` (a tiny MLP, real sweeps). Each record is checked
against the ``SweepResult`` it was written from, as float32, and against what TensorBoard's own
Python ``EventMultiplexer`` holds for the same files.
"""

import json
import logging
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

import sweep_logdir
import tb_layerdyn
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import sweeps as encoding

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    return sweep_logdir.write(str(tmp_path_factory.mktemp("sweeps")))


@pytest.fixture(scope="module")
def runs(logged):
    return tb_layerdyn.read(logged.logdir)


def _as_f32(values):
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def _multiplexer_sweeps(logdir, run):
    """Slow reference: ``{(step, scope): (layout, array)}`` from TensorBoard's Python loader,
    the latest wall time kept where a scope repeats at a step."""
    mux = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    mux.AddRunsFromDirectory(logdir)
    mux.Reload()
    latest = {}
    for tag in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).get(run, {}):
        if not tag.startswith(encoding.TAG_PREFIX):
            continue
        content = mux.SummaryMetadata(run, tag).plugin_data.content
        layout = json.loads(content)
        for event in mux.Tensors(run, tag):
            key = (event.step, layout["scope"])
            if key not in latest or event.wall_time > latest[key][0]:
                array = tensor_util.make_ndarray(event.tensor_proto)
                latest[key] = (event.wall_time, layout, array)
    return {key: (layout, array) for key, (_, layout, array) in latest.items()}


# ---------------------------------------------------------------- against the results


def test_runs_with_sweeps_only_are_read_and_others_have_none(runs):
    assert list(runs) == ["diverged", "metrics_only", "mlp", "sweeps_only"]
    only = runs["sweeps_only"]
    assert only.layers == [] and only.metrics == {} and len(only.steps) == 0
    assert runs["metrics_only"].sweeps == []
    assert len(runs["mlp"].steps) == sweep_logdir.TRAIN_STEPS


def test_sweeps_come_by_step_then_scope(runs, logged):
    for run, pairs in sweep_logdir.expected_scopes(logged).items():
        assert [(s.step, s.scope) for s in runs[run].sweeps] == pairs


def test_curves_are_the_logged_results(runs, logged):
    checked = 0
    for run in ("mlp", "sweeps_only"):
        for record in runs[run].sweeps:
            if record.scope == "robustness":
                continue
            result = logged.results[(run, record.step)]
            curves = result.scopes[record.scope]
            assert list(record.curves) == curves
            assert record.metrics == result.metrics
            np.testing.assert_array_equal(record.alphas, result.alphas)
            for curve in curves:
                for metric in result.metrics:
                    np.testing.assert_array_equal(
                        record.curves[curve][metric], _as_f32(result.curves[curve][metric]))
                assert record.travel[curve] == float(np.float32(result.travel[curve]))
            if record.scope == "parameters":
                assert record.parameters == {c: result.parameters[c] for c in curves}
            else:
                assert record.parameters == {}
            checked += 1
    assert checked == 3 * len(sweep_logdir.SWEEP_STEPS) + sweep_logdir.MANY_STEPS + len(
        sweep_logdir.SWEEP_STEPS)


def test_a_scope_written_twice_at_a_step_keeps_the_last(runs, logged):
    for step in sweep_logdir.REWRITTEN:
        [record] = [s for s in runs["sweeps_only"].sweeps if (s.step, s.scope) == (step, "model")]
        np.testing.assert_array_equal(record.alphas, logged.results[("sweeps_only", step)].alphas)


def test_robustness_tables_and_labels(runs, logged):
    for record in runs["mlp"].sweeps:
        if record.scope != "robustness":
            continue
        robust = logged.results[("mlp", record.step)].robustness
        assert record.layers == robust.layers
        assert record.label_metric == robust.label_metric == "loss"
        assert record.threshold == robust.threshold
        for metric in robust.metrics:
            assert record.end_metrics[metric] == float(np.float32(robust.end_metrics[metric]))
            np.testing.assert_array_equal(
                record.reinitialized[metric], _as_f32(robust.reinitialized[metric]))
            np.testing.assert_array_equal(
                record.rerandomized[metric], _as_f32(robust.rerandomized[metric]))
        assert record.labels == robust.labels
        end = float(np.float32(robust.end_metrics["loss"]))
        changes = [float(np.float32(v)) - end for v in robust.reinitialized["loss"]]
        threshold = (min(map(abs, changes)) + max(map(abs, changes))) / 2
        assert record.relabel(threshold) == [
            "robust" if abs(c) > threshold else "ambient" for c in changes]
        assert {"robust", "ambient"} <= set(record.relabel(threshold))


def test_nan_and_infinite_changes_are_labelled(runs):
    [record] = runs["diverged"].sweeps
    values = sweep_logdir.DIVERGED_VALUES
    np.testing.assert_array_equal(record.reinitialized["loss"], values[1, 0])
    assert math.isinf(record.change("reinitialized")["loss"][0])
    assert record.labels == ["robust", "ambient", "undefined"]
    with pytest.raises(ValueError, match="condition"):
        record.change("reset")


# ---------------------------------------------------------------- against TensorBoard's loader


@pytest.mark.parametrize("run", ["mlp", "sweeps_only", "diverged"])
def test_same_sweeps_as_tensorboards_python_loader(runs, logged, run):
    reference = _multiplexer_sweeps(logged.logdir, run)
    assert sorted(reference) == sorted((s.step, s.scope) for s in runs[run].sweeps)
    for record in runs[run].sweeps:
        layout, array = reference[(record.step, record.scope)]
        if record.scope == "robustness":
            for i, metric in enumerate(layout["metrics"]):
                np.testing.assert_array_equal(record.reinitialized[metric], array[1, i])
                np.testing.assert_array_equal(record.rerandomized[metric], array[2, i])
                assert record.end_metrics[metric] == float(array[0, i, 0])
            continue
        for c, curve in enumerate(layout["curves"]):
            for i, metric in enumerate(layout["metrics"]):
                np.testing.assert_array_equal(record.curves[curve][metric], array[i, c])
            assert record.travel[curve] == float(array[-1, c, 0])


# ---------------------------------------------------------------- damaged and foreign payloads


def test_a_sweep_that_does_not_fit_its_layout_is_skipped_with_a_warning(tmp_path, caplog):
    layout = encoding.sweep_layout("model", ["loss"], ["model"], [0.0, 1.0])
    good = encoding.sweep_pb(np.ones((2, 1, 2), dtype=np.float32), layout)
    bad = encoding.sweep_pb(np.ones((2, 1, 2), dtype=np.float32), layout)
    bad.value[0].tensor.CopyFrom(tensor_util.make_tensor_proto(np.ones((3, 1, 2), np.float32)))
    foreign = encoding.sweep_pb(np.ones((2, 1, 2), dtype=np.float32), layout)
    foreign.value[0].tag = encoding.TAG_PREFIX + "model/other"
    foreign.value[0].metadata.plugin_data.content = b'{"kind": "sweep", "version": 1}'
    writer = EventFileWriter(str(tmp_path / "run"))
    for step, pb in ((1, good), (2, bad), (3, foreign)):
        writer.add_event(event_pb2.Event(step=step, wall_time=float(step), summary=pb))
    writer.close()
    with caplog.at_level(logging.WARNING, logger="tb_layerdyn.reading.reader"):
        runs = tb_layerdyn.read(str(tmp_path))
    assert [(s.step, s.scope) for s in runs["run"].sweeps] == [(1, "model")]
    assert "skipped an event at step 2" in caplog.text
    assert "model/other: skipped (content key 'metrics'" in caplog.text


def test_reading_sweeps_imports_neither_torch_nor_the_plugin(logged):
    script = (
        "import sys, tb_layerdyn\n"
        f"runs = tb_layerdyn.read({logged.logdir!r})\n"
        "assert runs['sweeps_only'].sweeps, runs\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m == 'torch' or m.startswith('tb_layerdyn.plugin')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
