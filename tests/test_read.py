"""Tests of ``tb_layerdyn.read``: every logged step comes back as written, for every run.

Event files are written with the project's summary builders and TensorBoard's own
``EventFileWriter``; what ``read`` returns is checked against the written arrays and against
TensorBoard's own Python loaders (``EventMultiplexer``, ``EventFileLoader``) on the same files.
"""

import gc
import json
import logging
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

import tb_layerdyn
from tb_layerdyn.format import framing as event_records
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.plugin import in_process

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]
GROUPS = [
    {"name": "features", "kind": "block", "members": ["conv1", "conv2"]},
    {"name": "late", "kind": "user", "members": ["fc2", "fc3"]},
]


def _layout(layers=LAYERS, groups=GROUPS, metrics=layer_metrics.METRIC_NAMES, rwc="both", **kw):
    return layer_metrics.layout(
        metrics=metrics,
        layers=layers,
        param_counts=kw.get("param_counts", [100 * (i + 1) for i in range(len(layers))]),
        order=kw.get("order", "forward"),
        granularity=kw.get("granularity", "layer"),
        rwc=rwc,
        groups=groups,
    )


def _values(rng, num_steps, layout):
    shape = (num_steps, len(layout["metrics"]), len(layout["layers"]) + len(layout["groups"]))
    values = rng.uniform(1e-3, 3.0, size=shape).astype(np.float32)
    values[0, 0, :] = np.nan  # RWC is undefined at the first call
    return values


def _write(run_dir, layout, steps, values, metadata_every_file=True, extra=()):
    """Writes one event file; the layout rides on its first event only, as the tracker does it."""
    os.makedirs(run_dir, exist_ok=True)
    before = set(os.listdir(run_dir))
    writer = EventFileWriter(run_dir)
    for i, (step, value) in enumerate(zip(steps, values)):
        pb = layer_metrics.summary(value, layout, with_metadata=metadata_every_file and i == 0)
        writer.add_event(event_pb2.Event(step=int(step), wall_time=1.0 + i, summary=pb))
    for step, pb in extra:
        writer.add_event(event_pb2.Event(step=int(step), wall_time=1.0, summary=pb))
    writer.close()
    [name] = set(os.listdir(run_dir)) - before
    return os.path.join(run_dir, name)


def _reference_read(run_dir):
    """What TensorBoard's Python multiplexer holds for a run, with nothing sampled away.

    Returns:
        tag -> (layout dict, steps, values stacked along the first axis).
    """
    mux = plugin_event_multiplexer.EventMultiplexer(
        size_guidance={event_accumulator.TENSORS: 0},
        tensor_size_guidance={metadata.PLUGIN_NAME: 0},
    )
    mux.AddRunsFromDirectory(run_dir)
    mux.Reload()
    result = {}
    for tag in mux.Runs()["."]["tensors"]:
        if not tag.startswith(layer_metrics.TAG_PREFIX):
            continue
        content = json.loads(mux.SummaryMetadata(".", tag).plugin_data.content)
        events = mux.Tensors(".", tag)
        steps = np.array([e.step for e in events])
        values = np.stack([tensor_util.make_ndarray(e.tensor_proto) for e in events])
        result[tag] = (content, steps, values)
    return result


def test_round_trip_matches_written_values_and_tensorboards_loader(tmp_path):
    rng = np.random.default_rng(0)
    layout = _layout()
    steps = np.arange(0, 300, 3)
    values = _values(rng, len(steps), layout)
    _write(str(tmp_path), layout, steps, values)

    run = tb_layerdyn.read(tmp_path)["."]

    assert run.name == "."
    assert run.layers == LAYERS
    assert run.param_counts == [100, 200, 300, 400, 500]
    assert (run.rwc_variant, run.granularity, run.order) == ("both", "layer", "forward")
    np.testing.assert_array_equal(run.steps, steps)
    assert run.steps.dtype.kind == "i"
    assert sorted(run.metrics) == sorted(layer_metrics.METRIC_NAMES)
    num_layers = len(LAYERS)
    for m, name in enumerate(layout["metrics"]):
        assert run.metrics[name].shape == (len(steps), num_layers)
        np.testing.assert_array_equal(run.metrics[name], values[:, m, :num_layers])
        np.testing.assert_array_equal(run.group_metrics[name], values[:, m, num_layers:])
        for g, group in enumerate(GROUPS):
            np.testing.assert_array_equal(
                run.groups[group["name"]].metrics[name], values[:, m, num_layers + g]
            )
    assert np.isnan(run.metrics["rwc"][0]).all()
    assert list(run.groups) == ["features", "late"]
    assert run.groups["features"].members == ("conv1", "conv2")
    assert run.groups["late"].kind == "user"

    [(tag, (content, ref_steps, ref_values))] = _reference_read(str(tmp_path)).items()
    assert content["layers"] == run.layers
    np.testing.assert_array_equal(ref_steps, run.steps)
    for m, name in enumerate(content["metrics"]):
        np.testing.assert_array_equal(ref_values[:, m, :num_layers], run.metrics[name])


def test_runs_are_named_as_tensorboard_names_them_and_foreign_runs_are_skipped(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(1)
    layout = _layout()
    for run_dir in ["", "exp1/seed0", "exp1/seed1", "deep/er/run"]:
        _write(str(tmp_path / run_dir), layout, [0, 1], _values(rng, 2, layout))
    with SummaryWriter(str(tmp_path / "plain")) as plain:
        for step in range(3):
            plain.add_scalar("loss", 1.0 / (step + 1), step)
    # The user's own scalars beside ours, in the same run directory, stay out of the way.
    with SummaryWriter(str(tmp_path / "exp1/seed0")) as beside:
        beside.add_scalar("loss", 0.5, 7)
    os.makedirs(tmp_path / "empty")

    runs = tb_layerdyn.read(str(tmp_path))

    assert list(runs) == [".", "deep/er/run", "exp1/seed0", "exp1/seed1"]
    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(tmp_path))
    assert set(runs) == set(mux.Runs()) - {"plain"}
    np.testing.assert_array_equal(runs["exp1/seed0"].steps, [0, 1])


def test_truncated_file_is_read_up_to_the_cut(tmp_path):
    rng = np.random.default_rng(2)
    layout = _layout()
    values = _values(rng, 40, layout)
    path = _write(str(tmp_path), layout, range(40), values)
    whole = os.path.getsize(path)
    record = (whole - _first_record_end(path)) // 40
    cut = whole - record - record // 2  # in the middle of the second-to-last record
    with open(path, "r+b") as f:
        f.truncate(cut)

    run = tb_layerdyn.read(str(tmp_path))["."]

    loaded = list(event_file_loader.EventFileLoader(path).Load())
    tb_steps = [e.step for e in loaded if e.HasField("summary")]
    np.testing.assert_array_equal(run.steps, tb_steps)
    np.testing.assert_array_equal(run.steps, np.arange(38))
    np.testing.assert_array_equal(run.metrics["weight_norm"], values[:38, 5, : len(LAYERS)])


def _first_record_end(path):
    """Bytes taken by the file-version record that every event file starts with."""
    with open(path, "rb") as f:
        (length,) = np.frombuffer(f.read(8), dtype="<u8")
    return 12 + int(length) + 4


def test_corrupt_record_stops_that_file_with_a_warning_and_keeps_others(tmp_path, caplog):
    rng = np.random.default_rng(3)
    layout = _layout()
    first = _write(str(tmp_path), layout, range(10), _values(rng, 10, layout))
    _write(str(tmp_path), layout, range(10, 15), _values(rng, 5, layout), metadata_every_file=False)
    records = event_records.read_records(first)
    raw = open(first, "rb").read()
    damaged = raw.index(records[6]) + 20  # a byte inside the data of step 5
    with open(first, "r+b") as f:
        f.seek(damaged)
        f.write(bytes([raw[damaged] ^ 0xFF]))

    with caplog.at_level(logging.WARNING, logger="tb_layerdyn"):
        run = tb_layerdyn.read(str(tmp_path))["."]

    np.testing.assert_array_equal(run.steps, [0, 1, 2, 3, 4, 10, 11, 12, 13, 14])
    messages = [r.getMessage() for r in caplog.records]
    assert any("corrupt record" in m and first in m for m in messages)
    loaded = event_file_loader.EventFileLoader(first).Load()
    tb_steps = [e.step for e in loaded if e.HasField("summary")]
    assert tb_steps == [0, 1, 2, 3, 4]


def test_layout_on_first_file_only_and_a_new_layout_merge_by_name(tmp_path):
    rng = np.random.default_rng(4)
    old = _layout(layers=LAYERS[:3], groups=GROUPS[:1])
    new = _layout(layers=LAYERS, groups=GROUPS)
    old_values = _values(rng, 4, old)
    new_values = _values(rng, 3, new)
    _write(str(tmp_path), old, range(0, 2), old_values[:2])
    # A second file of the same tag without the layout: TensorBoard's writer resumes this way.
    _write(str(tmp_path), old, range(2, 4), old_values[2:], metadata_every_file=False)
    _write(str(tmp_path), new, range(4, 7), new_values)

    run = tb_layerdyn.read(str(tmp_path))["."]

    assert run.layers == LAYERS
    np.testing.assert_array_equal(run.steps, np.arange(7))
    rwc = run.metrics["update_size"]
    row = layer_metrics.METRIC_NAMES.index("update_size")
    np.testing.assert_array_equal(rwc[:4, :3], old_values[:, row, :3])
    assert np.isnan(rwc[:4, 3:]).all()  # fc2, fc3 not logged before the new layout
    np.testing.assert_array_equal(rwc[4:], new_values[:, row, :5])
    late = run.groups["late"].metrics["update_size"]
    np.testing.assert_array_equal(late[4:], new_values[:, row, 6])
    assert np.isnan(late[:4]).all()


def test_repeated_step_keeps_the_last_value_like_the_rust_loader(tmp_path):
    layout = _layout(metrics=["rwc"], groups=[], rwc="l1")
    values = np.arange(3 * 5, dtype=np.float32).reshape(3, 1, 5)
    _write(str(tmp_path), layout, [0, 1, 1], values)

    run = tb_layerdyn.read(str(tmp_path))["."]

    np.testing.assert_array_equal(run.steps, [0, 1])
    np.testing.assert_array_equal(run.metrics["rwc"], values[[0, 2], 0])
    assert run.rwc_variant == "l1"
    assert list(run.metrics) == ["rwc"]


def test_newer_payload_version_is_skipped_with_one_warning(tmp_path, caplog, monkeypatch):
    rng = np.random.default_rng(5)
    layout = _layout()
    future = dict(layout, kind=layer_metrics.KIND, version=layer_metrics.VERSION + 1)
    future_meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=json.dumps(future).encode()
        ),
        data_class=summary_pb2.DATA_CLASS_TENSOR,
    )
    future_events = []
    for step in range(3):
        value = summary_pb2.Summary.Value(
            tag=layer_metrics.TAG_PREFIX + "future00",
            tensor=tensor_util.make_tensor_proto(np.zeros((2, 2), np.float32)),
        )
        value.metadata.CopyFrom(future_meta)
        future_events.append((step, summary_pb2.Summary(value=[value])))
    _write(str(tmp_path / "ours"), layout, range(3), _values(rng, 3, layout), extra=future_events)
    _write(str(tmp_path / "future"), layout, [], [], extra=future_events)

    with caplog.at_level(logging.WARNING):
        runs = tb_layerdyn.read(str(tmp_path))

    assert list(runs) == ["ours"]
    assert runs["ours"].layers == LAYERS
    # One warning per run and tag, naming both and asking for an upgrade.
    warnings = sorted(r.getMessage() for r in caplog.records if "version" in r.getMessage())
    assert len(warnings) == 2
    for run, text in zip(("future", "ours"), warnings):
        assert f"run {run!r}" in text and "future00" in text and "upgrade" in text


def test_bad_logdir_fails_with_a_clear_error(tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        tb_layerdyn.read(missing)
    a_file = tmp_path / "events.out.tfevents.x"
    a_file.write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="events.out.tfevents.x"):
        tb_layerdyn.read(str(a_file))
    with pytest.raises(TypeError, match="logdir"):
        tb_layerdyn.read(None)
    assert tb_layerdyn.read(str(tmp_path)) == {}


def test_to_dataframe_is_the_long_format_of_the_arrays(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(6)
    layout = _layout()
    _write(str(tmp_path / "a"), layout, [0, 5, 9], _values(rng, 3, layout))
    _write(str(tmp_path / "b"), layout, [1, 2], _values(rng, 2, layout))
    runs = tb_layerdyn.read(str(tmp_path))

    frame = runs.to_dataframe()

    assert list(frame.columns) == ["run", "model", "step", "layer", "metric", "value"]
    assert frame.model.isna().all()
    assert len(frame) == (3 + 2) * len(LAYERS) * len(layer_metrics.METRIC_NAMES)
    for (run_name, step, layer, metric), value in frame.set_index(
        ["run", "step", "layer", "metric"]
    )["value"].items():
        run = runs[run_name]
        expected = run.metrics[metric][list(run.steps).index(step), run.layers.index(layer)]
        assert value == expected or (np.isnan(value) and np.isnan(expected))
    groups = runs["b"].to_dataframe(groups=True)
    assert list(groups.columns) == ["run", "model", "step", "group", "metric", "value"]
    late = groups[(groups.group == "late") & (groups.metric == "grad_norm")]
    np.testing.assert_array_equal(late.value, runs["b"].groups["late"].metrics["grad_norm"])
    assert isinstance(frame, pd.DataFrame)


def test_to_dataframe_without_pandas_says_how_to_get_it(tmp_path, monkeypatch):
    layout = _layout()
    _write(str(tmp_path), layout, [0], _values(np.random.default_rng(7), 1, layout))
    run = tb_layerdyn.read(str(tmp_path))["."]
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ImportError, match="pip install pandas"):
        run.to_dataframe()


def test_reading_imports_neither_torch_nor_the_plugin(tmp_path):
    layout = _layout()
    _write(str(tmp_path / "run"), layout, [0, 1], _values(np.random.default_rng(8), 2, layout))
    script = (
        "import sys, tb_layerdyn\n"
        f"runs = tb_layerdyn.read({str(tmp_path)!r})\n"
        "assert list(runs) == ['run'], runs\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m == 'torch' or m.startswith('tb_layerdyn.plugin')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("length", [0, 1, 3, 8, 255, 1400])
def test_batched_checksum_equals_tensorboards(length):
    rng = np.random.default_rng(length)
    blob = rng.integers(0, 256, size=length * 7 + 11, dtype=np.uint8)
    starts = np.array([0, 5, length * 3, length * 6 + 11])
    got = event_records.masked_crc32c(blob, starts, length)
    expected = [pywrap_tensorflow.masked_crc32c(blob[s : s + length].tobytes()) for s in starts]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("length", [4, 7, 64, 1401, 5712])
def test_checksums_of_ranges_at_one_spacing_read_in_place(length):
    # Runs of ranges at one spacing (records of one tag back to back) are checked through a
    # strided view, others gathered; starts of both kinds, unaligned, against TensorBoard's own.
    rng = np.random.default_rng(length)
    frame = length + 16
    starts = np.concatenate([
        3 + frame * np.arange(20),  # one run, odd offset
        3 + frame * 20 + np.array([0, 5, 9]),  # uneven
        3 + frame * 21 + (frame + 4) * np.arange(9),  # another spacing
        3 + frame * 21 + (frame + 4) * 9 + np.arange(10),  # overlapping ranges, spacing 1
        [7, 7],  # repeated
    ])
    blob = rng.integers(0, 256, size=int(starts.max()) + length + 5, dtype=np.uint8)
    got = event_records.masked_crc32c(blob, starts, length)
    expected = [pywrap_tensorflow.masked_crc32c(blob[s : s + length].tobytes()) for s in starts]
    np.testing.assert_array_equal(got, expected)


def test_checksums_of_many_evenly_spaced_ranges_in_batches_of_lanes():
    # 1,100 ranges of 258 words and 2 bytes: four lanes of 64 words each, two words after them,
    # then the bytes; more ranges than one batch of lanes holds.
    length, count = 1034, 1100
    rng = np.random.default_rng(1)
    blob = rng.integers(0, 256, size=1 + (length + 16) * count, dtype=np.uint8)
    starts = 1 + (length + 16) * np.arange(count)
    got = event_records.masked_crc32c(blob, starts, length)
    expected = [pywrap_tensorflow.masked_crc32c(blob[s : s + length].tobytes()) for s in starts]
    np.testing.assert_array_equal(got, expected)


def test_round_trip_of_what_log_layer_dynamics_computed(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    from tb_layerdyn.tracking import sink as writer_module

    class Net(nn.Module):
        """Conv, batch norm, linear, layer norm and a frozen layer; the head registered first."""

        def __init__(self):
            super().__init__()
            self.head = nn.Sequential(nn.Linear(4 * 6 * 6, 16), nn.LayerNorm(16), nn.Linear(16, 3))
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.frozen = nn.Linear(3, 3)
            self.frozen.requires_grad_(False)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x)))
            return self.frozen(self.head(x.flatten(1)))

    written = []
    write_metrics = writer_module.EventSink.write_metrics

    def recording(self, layout, values, step):
        written.append((layout, np.array(values, dtype=np.float32), step))
        write_metrics(self, layout, values, step)

    monkeypatch.setattr(writer_module.EventSink, "write_metrics", recording)
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    weight_norms = []
    steps = [0, 2, 4, 6, 8]
    with SummaryWriter(str(tmp_path / "seed0")) as summary_writer:
        for step in range(9):
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            if step in steps:
                tb_layerdyn.log_layer_dynamics(
                    summary_writer,
                    model,
                    step,
                    rwc="both",
                    groups={"late": ["head.2", "frozen"]},
                    histogram_every=None,
                )
                weight_norms.append(
                    {
                        name: float(
                            sum((p.detach().double() ** 2).sum() for p in module.parameters(False))
                        )
                        ** 0.5
                        for name, module in model.named_modules()
                        if list(module.parameters(False))
                    }
                )
            opt.zero_grad()

    run = tb_layerdyn.read(str(tmp_path))["seed0"]

    assert [s for _, _, s in written] == steps
    layout = written[-1][0]
    assert run.layers == layout["layers"] == ["conv", "bn", "head.0", "head.1", "head.2", "frozen"]
    assert (run.rwc_variant, run.granularity, run.order) == ("both", "layer", layout["order"])
    np.testing.assert_array_equal(run.steps, steps)
    for i, (lay, values, _) in enumerate(written):
        for row, metric in enumerate(lay["metrics"]):
            for col, layer in enumerate(lay["layers"]):
                got = run.metrics[metric][i, run.layers.index(layer)]
                assert got == values[row, col] or (np.isnan(got) and np.isnan(values[row, col]))
            for g, group in enumerate(lay["groups"]):
                got = run.groups[group["name"]].metrics[metric][i]
                expected = values[row, len(lay["layers"]) + g]
                assert got == expected or (np.isnan(got) and np.isnan(expected))
    assert run.groups["late"].members == ("head.2", "frozen")
    # An independent check that every column is labelled with the right layer.
    for i, norms in enumerate(weight_norms):
        for layer, norm in norms.items():
            got = run.metrics["weight_norm"][i, run.layers.index(layer)]
            assert got == pytest.approx(norm, rel=1e-5)
    assert np.isnan(run.metrics["rwc"][0]).all()
    assert (run.metrics["rwc"][1:, run.layers.index("frozen")] == 0).all()


def test_same_runs_steps_and_values_as_tensorboards_rust_loader(tmp_path):
    from tensorboard import context

    rng = np.random.default_rng(9)
    layout = _layout()
    written = {}
    for run_dir, steps in [("", range(0, 150, 3)), ("exp/seed1", range(120))]:
        values = _values(rng, len(steps), layout)
        _write(str(tmp_path / run_dir), layout, steps, values)
        written[run_dir or "."] = values
    runs = tb_layerdyn.read(str(tmp_path))

    ctx = context.RequestContext()
    with in_process.data_server(tmp_path, samples_per_plugin={metadata.PLUGIN_NAME: 0}) as provider:
        deadline = time.monotonic() + 60
        while True:
            served = provider.read_tensors(
                ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=10**6
            )
            counts = {run: sum(len(s) for s in tags.values()) for run, tags in served.items()}
            if counts == {run: len(r.steps) for run, r in runs.items()}:
                break
            assert time.monotonic() < deadline, f"the data server served {counts}"
            time.sleep(0.2)

    assert set(served) == set(runs) == {".", "exp/seed1"}
    for name, run in runs.items():
        [series] = served[name].values()
        np.testing.assert_array_equal([datum.step for datum in series], run.steps)
        stacked = np.stack([datum.numpy for datum in series])
        for row, metric in enumerate(layout["metrics"]):
            np.testing.assert_array_equal(stacked[:, row, : len(LAYERS)], run.metrics[metric])
        np.testing.assert_array_equal(stacked, written[name])


def test_read_stays_callable_after_its_module_is_imported(tmp_path):
    script = (
        "from tb_layerdyn.reading.reader import Run\n"
        "import tb_layerdyn\n"
        f"print(type(tb_layerdyn.read({str(tmp_path)!r})).__name__)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "Runs"


# ---------------------------------------------------------------- arrays mapped from the store


def _mapped_base(array):
    """The mapped pages an array of ``read`` is a view of, or ``None`` for a copy."""
    from tb_layerdyn.reading import columns

    base = array
    while base is not None and not isinstance(base, columns._Mapped):
        base = getattr(base, "base", None)
    return base


def test_mapped_rows_are_the_rows_read_at_every_offset(tmp_path, monkeypatch):
    """Rows mapped copy-on-write equal the rows read, wherever the range starts within a page."""
    from tb_layerdyn.reading import columns

    rng = np.random.default_rng(3)
    width = 37  # a row of 148 bytes: ranges start at every offset within a page
    table = rng.standard_normal((9000, width)).astype("<f4")
    path = str(tmp_path / "values")
    table.tofile(path)
    assert columns.mapped_rows(path, width, 0, 10) is None  # too small to be worth a mapping
    monkeypatch.setattr(columns, "MAP_FROM", 0)
    for start, stop in [(0, 9000), (1, 9000), (7, 8000), (2000, 9000), (4095, 4096), (8999, 9000)]:
        mapped = columns.mapped_rows(path, width, start, stop)
        assert mapped is not None and mapped.shape == (stop - start, width)
        np.testing.assert_array_equal(mapped, table[start:stop])
        np.testing.assert_array_equal(mapped, columns.read_rows(path, width, start, stop))
    # Past the file's end (the caller reads instead, NaN beyond it).
    assert columns.mapped_rows(path, width, 0, 9001) is None
    # Writable, and what is written stays in the array: the file keeps its bytes.
    mapped = columns.mapped_rows(path, width, 5, 9000)
    mapped[:] = 0.0
    np.testing.assert_array_equal(np.fromfile(path, dtype="<f4").reshape(-1, width), table)


def test_large_tables_are_mapped_writable_and_equal_to_reading_them(tmp_path, monkeypatch):
    """Above ``MAP_FROM`` bytes, ``read`` gives views of the store's pages, not copies: the same
    values as reading them, writable without changing the store, and no file left open."""
    from tb_layerdyn.reading import columns

    rng = np.random.default_rng(5)
    layout = _layout()
    values = _values(rng, 300, layout)
    values[rng.uniform(size=values.shape) < 0.05] = np.nan
    _write(str(tmp_path / "logdir" / "run"), layout, range(300), values)
    cache = str(tmp_path / "cache")

    monkeypatch.setattr(columns, "MAP_FROM", 1 << 40)  # every table read, as below the size
    copied = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=cache)["run"]
    fds_before = len(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(columns, "MAP_FROM", 0)  # every table mapped
    with monkeypatch.context() as no_mmap:  # where there is no POSIX mmap: read, as before
        no_mmap.setattr(columns, "_LIBC", None)
        unmapped = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=cache)["run"]
    mapped = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=cache)["run"]
    first = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=cache, steps=(100, 199))["run"]
    assert len(os.listdir("/proc/self/fd")) == fds_before

    for m, metric in enumerate(layout["metrics"]):
        assert _mapped_base(copied.metrics[metric]) is None
        assert _mapped_base(unmapped.metrics[metric]) is None
        np.testing.assert_array_equal(unmapped.metrics[metric], values[:, m, :5])
        assert _mapped_base(mapped.metrics[metric]) is not None
        assert _mapped_base(mapped.group_metrics[metric]) is not None
        np.testing.assert_array_equal(mapped.metrics[metric], values[:, m, :5])
        np.testing.assert_array_equal(mapped.metrics[metric], copied.metrics[metric])
        np.testing.assert_array_equal(mapped.group_metrics[metric], values[:, m, 5:])
        np.testing.assert_array_equal(mapped.groups["late"].metrics[metric], values[:, m, 6])
        np.testing.assert_array_equal(first.metrics[metric], values[100:200, m, :5])
    np.testing.assert_array_equal(mapped.steps, np.arange(300))

    mapped.metrics["rwc"][:] = -1.0
    again = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=cache)["run"]
    np.testing.assert_array_equal(again.metrics["rwc"], values[:, 0, :5])

    def mappings():
        with open("/proc/self/maps") as f:
            return sum(cache in line for line in f)

    assert mappings() > 0
    del mapped, first, again
    gc.collect()
    assert mappings() == 0  # unmapped with the last view


_HOLD_THROUGH_A_CUT = r"""
import os, sys
import numpy as np
sys.path.insert(0, sys.argv[3])
import tb_layerdyn
from tb_layerdyn.reading import columns
columns.MAP_FROM = 0
logdir, cache = sys.argv[1], sys.argv[2]
held = tb_layerdyn.read(logdir, cache_dir=cache)["run"]
before = held.metrics["weight_norm"].copy()
print("read", flush=True)
sys.stdin.readline()  # the test appends a resumed run, whose steps go back, then reads again
after = tb_layerdyn.read(logdir, cache_dir=cache)["run"]
assert np.array_equal(held.metrics["weight_norm"], before, equal_nan=True), "a held array changed"
print("steps", len(held.steps), len(after.steps), flush=True)
"""


def test_an_array_held_through_a_cut_of_the_store_keeps_its_values(tmp_path):
    """A resumed run cuts the store's files back. A process still holding mapped arrays of the
    old rows keeps them whole (a file shortened in place would kill it with SIGBUS on the next
    touch), and its next ``read`` has the cut."""
    rng = np.random.default_rng(11)
    layout = _layout(groups=[])
    run_dir = str(tmp_path / "logdir" / "run")
    values = _values(rng, 500, layout)
    _write(run_dir, layout, range(400), values[:400])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_THROUGH_A_CUT, str(tmp_path / "logdir"), str(tmp_path / "cache"), REPO_ROOT],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "read"
    time.sleep(1.1)  # a later file name: read after the first file
    _write(run_dir, layout, range(100, 200), values[400:])  # resumed from step 100
    out, err = holder.communicate("go\n", timeout=120)
    assert holder.returncode == 0, err
    assert out.split() == ["steps", "400", "200"]
