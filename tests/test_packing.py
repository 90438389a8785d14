"""Several calls in one record: read back exactly as one record per call, and nothing held is lost.

The same training is logged twice, by two trackers of one model: one writes a record per call
(``pack=1``), the other packs calls. ``tb_layerdyn.read`` and both TensorBoard loaders must give
the same steps and the same values for both runs; held calls must reach the file on the
tracker's ``flush()``, on the ``SummaryWriter``'s own ``flush()`` and ``close()``, when the
tracker is dropped, and at interpreter exit.
"""

import os
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest
import torch
from tensorboard import context
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.util import tensor_util
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tb_layerdyn
from layerdyn_helpers import expand_calls, multiplexer_table, values_by_step
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import envelope, layer_metrics
from tb_layerdyn.plugin import in_process
from tb_layerdyn.tracking.guards import StepOrderWarning

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _model():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 3)))


def _train(model, trackers, steps, seed=0):
    """Trains ``model`` and logs every step with each tracker (all see the same weights)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    for step in steps:
        x = torch.randn(16, 6, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        for tracker in trackers:
            tracker.log(step)


def _records(run_dir):
    """Per metrics tag, the shapes of its records' values, in file order."""
    shapes = {}
    for name in sorted(os.listdir(run_dir)):
        for event in event_file_loader.EventFileLoader(os.path.join(run_dir, name)).Load():
            for value in event.summary.value:
                if value.tag.startswith(layer_metrics.TAG_PREFIX):
                    shapes.setdefault(value.tag, []).append(tuple(d.size for d in value.tensor.tensor_shape.dim))
    return shapes


def _assert_runs_equal(a, b):
    assert a.layers == b.layers
    np.testing.assert_array_equal(a.steps, b.steps)
    assert sorted(a.metrics) == sorted(b.metrics)
    for metric in a.metrics:
        np.testing.assert_array_equal(a.metrics[metric], b.metrics[metric])
        np.testing.assert_array_equal(a.group_metrics[metric], b.group_metrics[metric])


# Steps with a repeat and a restart from an earlier step (a resumed run): a record's steps ascend,
# so those start records of their own, and TensorBoard's rule must drop the same calls as it does
# for one record per call.
STEPS = list(range(0, 23)) + list(range(15, 31)) + [30, 31, 32]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("packing")
    model = _model()
    writers = {name: SummaryWriter(str(root / name)) for name in ("single", "packed")}
    trackers = [
        LayerDynamics(model, writers["single"], pack=1, rwc="both", groups={"late": ["2.0", "2.1"]}),
        LayerDynamics(model, writers["packed"], pack=4, rwc="both", groups={"late": ["2.0", "2.1"]}),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", StepOrderWarning)
        _train(model, trackers, STEPS)
    for writer in writers.values():
        writer.close()
    return root


def test_packed_records_are_written(two_runs):
    single, packed = _records(two_runs / "single"), _records(two_runs / "packed")
    assert all(len(shape) == 2 for shapes in single.values() for shape in shapes)
    assert sum(len(s) for s in single.values()) == len(STEPS)
    packed_shapes = [shape for tag, shapes in packed.items() for shape in shapes
                     if not tag.endswith(layer_metrics.STEPS_SUFFIX)]
    assert any(len(shape) == 3 and shape[0] == 4 for shape in packed_shapes)
    assert len(packed_shapes) < len(STEPS) / 2
    assert sum(shape[0] if len(shape) == 3 else 1 for shape in packed_shapes) == len(STEPS)


def test_read_gives_the_same_run_for_packed_records(two_runs):
    runs = tb_layerdyn.read(str(two_runs), cache_dir=str(two_runs / "cache"))
    single, packed = runs["single"], runs["packed"]
    # TensorBoard's rule: the restart at 15 dropped the first 15..22; the repeated 30 keeps its last.
    assert single.steps.tolist() == list(range(0, 33))
    _assert_runs_equal(single, packed)


def test_read_of_packed_records_equals_the_values_in_the_records(two_runs):
    runs = tb_layerdyn.read(str(two_runs), cache_dir=str(two_runs / "cache2"))
    table = values_by_step(str(two_runs / "packed"))  # the obvious reference: records expanded
    run = runs["packed"]
    assert sorted(table) == run.steps.tolist()
    for i, step in enumerate(run.steps.tolist()):
        for layer_index, layer in enumerate(run.layers):
            got = run.metrics["rwc"][i, layer_index]
            want = table[step][("rwc", layer)]
            assert (np.isnan(got) and np.isnan(want)) or got == np.float32(want)


def test_python_loader_serves_packed_records_as_the_same_calls(two_runs):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={envelope.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(two_runs))
    multiplexer.Reload()
    single, packed = multiplexer_table(multiplexer, "single"), multiplexer_table(multiplexer, "packed")
    assert single.steps.tolist() == list(range(0, 33))
    np.testing.assert_array_equal(single.steps, packed.steps)
    assert single.layers == packed.layers
    for metric in single.metrics:
        np.testing.assert_array_equal(single.metrics[metric], packed.metrics[metric])
        np.testing.assert_array_equal(single.group_metrics[metric], packed.group_metrics[metric])
    runs = tb_layerdyn.read(str(two_runs), cache_dir=str(two_runs / "cache3"))
    np.testing.assert_array_equal(runs["packed"].metrics["rwc"], packed.metrics["rwc"].astype(np.float32))


def test_rust_loader_serves_packed_records_as_the_same_calls(two_runs):
    def expanded_now():
        served = provider.read_tensors(
            ctx, experiment_id="", plugin_name=envelope.PLUGIN_NAME, downsample=10**6
        )
        return {  # the metrics tags (the weight sketches have tags of their own)
            run: expand_calls({
                tag: [(d.step, d.numpy) for d in series]
                for tag, series in tags.items()
                if tag.startswith(layer_metrics.TAG_PREFIX)
            })
            for run, tags in served.items()
        }

    def steps_of(expanded):
        return {run: [s for calls in tags.values() for s, _ in calls] for run, tags in expanded.items()}

    ctx = context.RequestContext()
    with in_process.data_server(two_runs, samples_per_plugin={envelope.PLUGIN_NAME: 0}) as provider:
        deadline = time.monotonic() + 60
        while True:
            expanded = expanded_now()
            # The server loads in the background: wait until both runs are complete.
            if steps_of(expanded) == {"single": list(range(33)), "packed": list(range(33))}:
                break
            assert time.monotonic() < deadline, f"the data server served {steps_of(expanded)}"
            time.sleep(0.2)
    [single] = expanded["single"].values()
    [packed] = expanded["packed"].values()
    assert [s for s, _ in single] == list(range(0, 33))
    assert [s for s, _ in packed] == [s for s, _ in single]
    for (_, a), (_, b) in zip(single, packed):
        np.testing.assert_array_equal(a, b)


def _logged_steps(logdir):
    runs = tb_layerdyn.read(str(logdir), cache_dir=None)
    return {name: run.steps.tolist() for name, run in runs.items()}


@pytest.mark.parametrize("how", ["tracker.flush", "writer.flush", "writer.close", "with", "dropped"])
def test_nothing_held_is_lost_on_flush_close_or_drop(tmp_path, how):
    model = _model()
    logdir = tmp_path / "run"
    writer = SummaryWriter(str(logdir))
    tracker = LayerDynamics(model, writer, pack=10, histogram_every=None)
    if how == "with":
        with writer:
            _train(model, [tracker], range(7))
    else:
        _train(model, [tracker], range(7))
        if how == "tracker.flush":
            tracker.flush()
        elif how == "writer.flush":
            writer.flush()
        elif how == "writer.close":
            writer.close()
        else:
            del tracker
            writer.flush()
    assert _logged_steps(tmp_path) == {"run": list(range(7))}
    writer.close()


def test_held_calls_wait_no_longer_than_the_writers_flush_secs(tmp_path):
    model = _model()
    writer = SummaryWriter(str(tmp_path / "run"), flush_secs=0.2)
    tracker = LayerDynamics(model, writer, pack=10, histogram_every=None)
    _train(model, [tracker], range(3))
    time.sleep(0.3)
    _train(model, [tracker], range(3, 4))
    # The writer's own thread flushes every flush_secs: wait for it, never flush here.
    deadline = time.monotonic() + 10
    while _logged_steps(tmp_path) != {"run": list(range(4))}:
        assert time.monotonic() < deadline, _logged_steps(tmp_path)
        time.sleep(0.2)
    writer.close()


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter
    from tb_layerdyn import LayerDynamics, log_layer_dynamics

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    other = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    opt = torch.optim.SGD(list(model.parameters()) + list(other.parameters()), lr=0.1)
    tracker = LayerDynamics(model, SummaryWriter(sys.argv[1] + "/writer"), pack=10)
    for step in range(7):
        opt.zero_grad()
        x = torch.randn(8, 4)
        (model(x).square().mean() + other(x).square().mean()).backward()
        opt.step()
        tracker.log(step)
        log_layer_dynamics(sys.argv[1] + "/path", other, step)
    # exits without flush() or close()
    """
)


def test_nothing_held_is_lost_at_interpreter_exit(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run(
        [sys.executable, "-W", "ignore", "-c", EXIT_SCRIPT, str(tmp_path)],
        check=True, env=env, timeout=300,
    )
    assert _logged_steps(tmp_path) == {"writer": list(range(7)), "path": list(range(7))}


def test_a_nan_inside_a_packed_batch_is_written_in_its_place_with_its_warning(tmp_path):
    """A NaN weight at one step of a packed run: that call (and the next, whose previous weights
    hold the NaN) gets the values and the warning it gets with one record per call, in its place,
    and the calls around it stay in their packed records."""
    model = _model()
    writers = {name: SummaryWriter(str(tmp_path / name)) for name in ("single", "packed")}
    trackers = {
        "single": LayerDynamics(model, writers["single"], pack=1, histogram_every=None),
        "packed": LayerDynamics(model, writers["packed"], pack=4, histogram_every=None),
    }
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    warned = {name: [] for name in trackers}
    broken = model[2][0].weight
    for step in range(10):
        x = torch.randn(16, 6, generator=gen)
        y = torch.randint(0, 3, (16,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if step == 5:
            kept = broken.detach()[0, 0].item()
            broken.data[0, 0] = float("nan")
        for name, tracker in trackers.items():
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                tracker.log(step)
            warned[name] += [str(w.message) for w in seen if "NaN or Inf" in str(w.message)]
        if step == 5:
            broken.data[0, 0] = kept
    for writer in writers.values():
        writer.close()
    for name in trackers:
        assert len(warned[name]) == 1 and "2.0" in warned[name][0] and "step 5" in warned[name][0], warned
    runs = tb_layerdyn.read(str(tmp_path), cache_dir=None)
    _assert_runs_equal(runs["single"], runs["packed"])
    packed = runs["packed"]
    assert packed.steps.tolist() == list(range(10))
    layer = packed.layers.index("2.0")
    # Step 6's previous weights are step 5's, NaN included: its values are NaN too.
    assert np.isnan(packed.metrics["weight_norm"][[5, 6], layer]).all()
    assert np.isfinite(packed.metrics["weight_norm"][[0, 1, 2, 3, 4, 7, 8, 9], layer]).all()
    others = [i for i in range(len(packed.layers)) if i != layer]
    assert np.isfinite(packed.metrics["weight_norm"][:, others]).all()
    records = _records(tmp_path / "packed").values()
    packed_sizes = [shape[0] for shapes in records for shape in shapes if len(shape) == 3]
    assert packed_sizes and max(packed_sizes) > 1  # the other calls stayed packed


def test_packed_values_equal_unpacked_bit_for_bit():
    """``summary`` and ``decode`` of a packed record: the float32 bytes and steps unchanged."""
    content = layer_metrics.layout(
        metrics=["rwc", "grad_norm"], layers=["a", "b"], param_counts=[3, 4], order="forward",
        granularity="layer", rwc="l1", groups=[],
    )
    values = np.random.default_rng(0).standard_normal((3, 2, 2)).astype(np.float32)
    values[1, 0, 1] = np.nan
    proto = layer_metrics.summary(values, content, steps=[4, 5, 9], with_metadata=True)
    value, steps_value = proto.value
    assert steps_value.metadata.plugin_data.plugin_name == envelope.PLUGIN_NAME
    parsed = layer_metrics.parse_layout(
        envelope.parse_content(value.metadata, layer_metrics.KIND, layer_metrics.VERSION)
    )
    steps, decoded = layer_metrics.decode(parsed, value, 4, steps_value)  # at the first step
    assert steps.tolist() == [4, 5, 9]
    assert decoded.tobytes() == values.tobytes()
    assert tensor_util.make_ndarray(steps_value.tensor).tolist() == [4, 5, 9]
    with pytest.raises(envelope.FormatError, match="first"):
        layer_metrics.decode(parsed, value, 9, steps_value)


def test_version_2_packed_records_at_their_last_step_are_still_read(tmp_path):
    """Version 2 allowed packed records at the last call's step: read as they were written."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    content = layer_metrics.layout(
        metrics=["rwc", "grad_norm"], layers=["a", "b"], param_counts=[3, 4], order="forward",
        granularity="layer", rwc="l1", groups=[],
    )
    rng = np.random.default_rng(1)
    first = rng.standard_normal((2, 2)).astype(np.float32)
    packed = rng.standard_normal((3, 2, 2)).astype(np.float32)
    one = layer_metrics.summary(first, content)
    one.value[0].metadata.CopyFrom(envelope.summary_metadata(layer_metrics.KIND, 2, content))
    two = layer_metrics.summary(packed, content, steps=[1, 2, 5], with_metadata=False)
    writer = EventFileWriter(str(tmp_path / "v2"))
    writer.add_event(event_pb2.Event(step=0, wall_time=1.0, summary=one))
    writer.add_event(event_pb2.Event(step=5, wall_time=2.0, summary=two))  # version 2: the last
    writer.close()
    run = tb_layerdyn.read(str(tmp_path), cache_dir=None)["v2"]
    assert run.steps.tolist() == [0, 1, 2, 5]
    np.testing.assert_array_equal(run.metrics["rwc"], np.concatenate([first[None], packed])[:, 0])
