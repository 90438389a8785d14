"""Reading pictures back: ``read(logdir)[run].images[kind][layer]``.

What the tracker wrote is read back and compared with the tensors it drew (up to the 8-bit
quantization) and with the records decoded straight from the event files; scales come from a
brute-force reference over every frame's facts. Torch-free logdirs cover the rules: layouts merged
by layer name, the record written last at a step, named models, steps that go back (checked
against TensorBoard's Rust data server), a truncated file and a malformed record.
"""

import json
import logging
import os
import time

import numpy as np
import pytest
import torch
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

import picture_logdir
import tb_layerdyn
from conftest import make_layout, random_values, write_layer_metrics
from picture_helpers import LeNet, picture_events, reference_picture
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import envelope
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.plugin import in_process
from tb_layerdyn.reading import pictures as reading
from tb_layerdyn.reading import store
from tb_layerdyn.tracking import picture_layouts

STEPS = 11
EVERY = 3
PICTURE_STEPS = [0, 3, 6, 9]
LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """LeNet-5 logged with every picture kind; returns ``(logdir, {step: {layer: weight}})``."""
    root = tmp_path_factory.mktemp("read_pictures")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = LeNet()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
        weights = {}
        with SummaryWriter(str(root / "lenet")) as writer:
            tracker = LayerDynamics(model, writer, histogram_every=None, images_every=EVERY, probe=x[:1])
            for step in range(STEPS):
                F.cross_entropy(model(x), y).backward()
                opt.step()
                tracker.log(step)
                if step % EVERY == 0:
                    weights[step] = {name: getattr(model, name).weight.detach().clone() for name in LAYERS}
                opt.zero_grad()
    finally:
        torch.set_num_threads(threads)
    return root, weights


def _brute_fixed_scale(map_name, planes):
    """The fixed scale of one plane over its frames, from each frame's quantiles, by the rule in
    ``format/pictures.py``'s docstring."""
    lows = [p.quantiles[0] for p in planes]
    highs = [p.quantiles[1] for p in planes]
    if map_name == "diverging":
        spread = max(max(abs(q) for q in lows), max(abs(q) for q in highs))
        return (-spread, spread)
    if map_name == "opacity":
        return (0.0, max(0.0, max(highs)))
    return (min(lows), max(highs))


def test_every_kind_reads_back_as_written(trained, tmp_path):
    logdir, _ = trained
    runs = tb_layerdyn.read(str(logdir), cache_dir=str(tmp_path / "cache"))
    images = runs["lenet"].images
    written = picture_events(str(logdir / "lenet"))
    assert list(images) == list(payload.PICTURES)
    for kind, frames in written.items():
        assert list(images[kind]) == LAYERS, kind
        for index, layer in enumerate(LAYERS):
            series = images[kind][layer]
            logged = [(step, layout, pictures[index]) for step, layout, pictures in frames if pictures[index]]
            assert series.steps.dtype == np.int64
            assert series.steps.tolist() == [step for step, _, _ in logged], (kind, layer)
            assert series.planes == tuple(name for name, _ in payload.PLANES[kind]) and len(series) == len(logged)
            layout = logged[0][1]
            assert series.description == layout.descriptions[index]
            scales = [
                _brute_fixed_scale(m, [picture.planes[p] for _, _, picture in logged])
                for p, m in enumerate(layout.maps)
            ]
            assert series.scales == scales and series.scale == scales[0]
            for i, (_, layout, picture) in enumerate(logged):
                for p, name in enumerate(layout.planes):
                    expected = picture.planes[p].values()
                    np.testing.assert_array_equal(series.values(i, p), expected)
                    np.testing.assert_array_equal(series.values(i, name), expected)
                np.testing.assert_array_equal(series.values(i), picture.planes[0].values())
                drawn = series.rgb(i)
                assert drawn.dtype == np.uint8 and drawn.shape == layout.drawn_shape(index) + (3,)
                np.testing.assert_array_equal(drawn, payload.picture_rgb(layout, index, picture, scales))
                expected = payload.picture_rgb(layout, index, picture)
                np.testing.assert_array_equal(series.rgb(i, per_frame=True), expected)
                assert series.frame_scales(i) == [
                    payload.frame_scale(m, plane.quantiles) for m, plane in zip(layout.maps, picture.planes)
                ]
    assert images["updates"]["fc1"].steps.tolist() == PICTURE_STEPS[1:]  # none at the first call
    assert images["weights"]["fc1"].steps.tolist() == PICTURE_STEPS


def test_weight_values_are_the_weights_logged(trained, tmp_path):
    """``values(i)`` is the weight at ``steps[i]``, laid out and pooled as documented, within half
    a quantization level."""
    logdir, weights = trained
    images = tb_layerdyn.read(str(logdir), cache_dir=str(tmp_path / "cache")).get("lenet").images
    for layer in LAYERS:
        series = images["weights"][layer]
        for i, step in enumerate(series.steps.tolist()):
            weight = weights[step][layer]
            plan = picture_layouts.weight_plan(f"{layer}.weight", tuple(weight.shape))
            expected = reference_picture(weight.numpy(), plan)
            got = series.values(i)
            low, high = series.picture(i).planes[0].interval
            assert got.shape == expected.shape
            assert np.abs(got - expected).max() <= (high - low) / 254 / 2 + 1e-6, (layer, step)
            # The stored values span a symmetric interval, and the weight's extremes sit at its ends.
            assert high == pytest.approx(np.abs(expected).max(), rel=1e-6) and low == -high


def test_reading_decodes_nothing_until_asked(trained, tmp_path, monkeypatch):
    """``read()`` reads no picture record; a kind's listing reads each of its records once (its
    facts); one frame reads one record; a second listing reads none."""
    logdir, _ = trained
    reads = []
    original = store.RunData.read_value
    monkeypatch.setattr(store.RunData, "read_value", lambda self, entry: reads.append(entry) or original(self, entry))
    run = tb_layerdyn.read(str(logdir), cache_dir=str(tmp_path / "cache"))["lenet"]
    assert reads == [] and sorted(run.images) == sorted(payload.PICTURES)
    weights = run.images["weights"]
    assert len(reads) == len(PICTURE_STEPS)
    assert {int(e["step"]) for e in reads} == set(PICTURE_STEPS)
    weights["fc2"].values(2)
    weights["conv1"].rgb(-1)
    assert len(reads) == len(PICTURE_STEPS) + 2
    assert run.images["weights"] is weights  # listed once

    facts = reading.FactsCache()
    data = store.Store(str(logdir), str(tmp_path / "cache")).run("lenet")
    first = reading.model_pictures(data, None, facts)
    count = len(reads)
    again = reading.model_pictures(data, None, facts)
    assert len(reads) == count and list(again) == list(first) == list(payload.PICTURES)


def test_bad_indices_and_planes_are_clear_errors(trained, tmp_path):
    logdir, _ = trained
    series = tb_layerdyn.read(str(logdir), cache_dir=str(tmp_path / "cache"))["lenet"].images["travel"]["fc1"]
    with pytest.raises(IndexError, match="out of range for 4 steps"):
        series.values(4)
    with pytest.raises(TypeError, match="int index"):
        series.values(1.0)
    with pytest.raises(ValueError, match=r"\['travel', 'weight'\]"):
        series.values(0, "value")
    np.testing.assert_array_equal(series.values(-1), series.values(3))


# ---------------------------------------------------------------- the rules, torch-free


def _written(rng, kind, layers, shapes, absent=()):
    """Random values of one call for ``layers`` (``None`` for those in ``absent``)."""
    return [
        None if name in absent else picture_logdir.random_planes(rng, kind, shape)
        for name, shape in zip(layers, shapes)
    ]


def test_layouts_are_merged_by_layer_and_the_record_written_last_wins(tmp_path):
    """A layer appears at step 2 (a second layout), the new layout logs step 2 again, and a
    layer has no picture at step 3: each layer's series is its pictures in step order, the later
    record at step 2, in the newest layout's depth order."""
    rng = np.random.default_rng(3)
    before = picture_logdir.content("weights", ["a", "c"], [[2, 3], [4, 1]])
    after = picture_logdir.content("weights", ["a", "b", "c"], [[2, 3], [3, 3], [4, 1]])
    calls = []
    expected = {}  # layer -> {step: values}
    quantiles = {}  # layer -> {step: the frame's (q_low, q_high)}
    for step, layout, absent in [(0, before, ()), (1, before, ()), (2, before, ()), (2, after, ()),
                                 (3, after, ("b",)), (4, after, ())]:
        pictures = _written(rng, "weights", layout["layers"], layout["shapes"], absent)
        if layout is before and step == 2:
            pictures = [[100 * v for v in planes] for planes in pictures]  # replaced: not in any scale
        calls.append((step, layout, pictures))
        for name, values in zip(layout["layers"], pictures):
            if values is not None:
                expected.setdefault(name, {})[step] = picture_logdir.plane_values(values, "weights")[0]
                quantiles.setdefault(name, {})[step] = payload.encode(values[0], "diverging").quantiles
    picture_logdir.write(str(tmp_path / "logdir" / "run"), calls)
    images = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))["run"].images
    assert list(images["weights"]) == ["a", "b", "c"]
    for name, by_step in expected.items():
        series = images["weights"][name]
        assert series.steps.tolist() == sorted(by_step), name
        assert series.description == f"{name} test picture"
        for i, step in enumerate(series.steps.tolist()):
            np.testing.assert_array_equal(series.values(i), by_step[step])
        spread = max(max(abs(q) for q in pair) for pair in quantiles[name].values())
        assert series.scale == (-spread, spread)
        assert spread < 20  # the frame replaced at step 2 (values times 100) is not in it
    assert images["weights"]["b"].steps.tolist() == [2, 4]
    assert images["weights"]["a"].rgb(1).shape == (2, 3, 3)


def test_named_models_keep_their_own_pictures(tmp_path):
    rng = np.random.default_rng(4)
    run_dir = str(tmp_path / "logdir" / "gan")
    metrics = make_layout(["a"], metrics=["rwc"])
    write_layer_metrics(run_dir, metrics, range(3), random_values(rng, 3, metrics))
    plain = picture_logdir.content("weights", ["a"], [[2, 2]])
    named = picture_logdir.content("weights", ["gen.fc"], [[3, 2]], model="generator")
    mine = [_written(rng, "weights", ["a"], [[2, 2]]) for _ in range(2)]
    theirs = [_written(rng, "weights", ["gen.fc"], [[3, 2]]) for _ in range(3)]
    picture_logdir.write(run_dir, [(0, plain, mine[0]), (0, named, theirs[0]), (5, named, theirs[1]),
                                   (5, plain, mine[1]), (10, named, theirs[2])])
    runs = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))
    assert sorted(runs) == ["gan", "gan · generator"]
    assert list(runs["gan"].images["weights"]) == ["a"]
    assert runs["gan"].images["weights"]["a"].steps.tolist() == [0, 5]
    generator = runs["gan · generator"]
    assert generator.model == "generator" and generator.layers == []
    series = generator.images["weights"]["gen.fc"]
    assert series.steps.tolist() == [0, 5, 10]
    np.testing.assert_array_equal(series.values(2), picture_logdir.plane_values(theirs[2][0], "weights")[0])
    # A step range narrows the pictures too.
    ranged = tb_layerdyn.read(str(tmp_path / "logdir"), steps=(1, 10), cache_dir=str(tmp_path / "cache"))
    assert ranged["gan · generator"].images["weights"]["gen.fc"].steps.tolist() == [5, 10]
    assert ranged["gan"].images["weights"]["a"].steps.tolist() == [5]


def _rust_blob_steps(logdir):
    """``{tag: [(step, [blob])]}`` of run ``run`` as TensorBoard's Rust data server keeps them
    with every sample kept."""
    from tensorboard import context

    ctx = context.RequestContext()
    with in_process.serve(str(logdir), "rust", flags=["--samples_per_plugin", "layer_dynamics=0"]) as served:
        provider, previous, deadline = served.data_provider, None, time.monotonic() + 60
        while True:
            sequences = provider.read_blob_sequences(
                ctx, experiment_id="", plugin_name=envelope.PLUGIN_NAME, downsample=10**6, run_tag_filter=None
            ).get("run", {})
            counts = {tag: len(data) for tag, data in sequences.items()}
            if counts and counts == previous:
                break
            assert time.monotonic() < deadline
            previous = counts
            time.sleep(0.5)
        return {
            tag: [(d.step, [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in d.values]) for d in data]
            for tag, data in sequences.items()
        }


def test_steps_that_go_back_read_as_tensorboard_serves_them(tmp_path):
    """A resumed run logs steps 2 and 3 again, and a second file repeats step 4: the pictures read
    are those the Rust data server keeps, PNG for PNG."""
    rng = np.random.default_rng(5)
    layout = picture_logdir.content("gradients", ["a", "b"], [[3, 2], [1, 5]])
    run_dir = tmp_path / "logdir" / "run"
    steps = [0, 1, 2, 3, 4, 5, 2, 3]
    frames = [(s, layout, _written(rng, "gradients", ["a", "b"], layout["shapes"])) for s in steps]
    picture_logdir.write(str(run_dir), frames)
    time.sleep(1.1)  # a later file name (TensorBoard names files by the second they open)
    picture_logdir.write(str(run_dir), [(4, layout, _written(rng, "gradients", ["a", "b"], layout["shapes"]))],
                         start_wall=2000.0)
    images = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))["run"].images
    [(tag, served)] = _rust_blob_steps(tmp_path / "logdir").items()
    assert [step for step, _ in served] == [0, 1, 2, 3, 4]
    for index, name in enumerate(["a", "b"]):
        series = images["gradients"][name]
        assert series.steps.tolist() == [step for step, _ in served]
        for i, (_, blobs) in enumerate(served):
            assert series.picture(i).planes[0].png == blobs[1 + index]
            facts = json.loads(blobs[0])["facts"][index]
            assert series.frame_scales(i) == [payload.frame_scale("diverging", facts[2:])]


def test_a_truncated_file_is_read_up_to_the_cut(tmp_path):
    rng = np.random.default_rng(6)
    layout = picture_logdir.content("activations", ["conv"], [[4, 4]])
    pictures = [_written(rng, "activations", ["conv"], [[4, 4]]) for _ in range(4)]
    path = picture_logdir.write(str(tmp_path / "logdir" / "run"), [(s, layout, p) for s, p in enumerate(pictures)])
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:-40])  # into the last record
    runs = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))
    series = runs["run"].images["activations"]["conv"]
    assert series.steps.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(series.values(2), picture_logdir.plane_values(pictures[2][0], "activations")[0])
    assert series.maps == ("gray",) and series.scale[0] < series.scale[1]


def test_a_malformed_picture_record_is_skipped_with_one_warning(tmp_path, caplog):
    """Steps 2 and 3 have facts that are not JSON: both are skipped, with one warning; the
    pictures around them read as written."""
    rng = np.random.default_rng(7)
    layout = picture_logdir.content("weights", ["a"], [[2, 2]])
    pictures = [_written(rng, "weights", ["a"], [[2, 2]]) for _ in range(5)]
    writer = EventFileWriter(str(tmp_path / "logdir" / "run"))
    for step, values in enumerate(pictures):
        pb = picture_logdir.summary(layout, values, with_metadata=step == 0)
        if step in (2, 3):
            pb.value[0].tensor.string_val[0] = b"{not json"
        writer.add_event(event_pb2.Event(step=step, wall_time=1000.0 + step, summary=pb))
    writer.close()
    with caplog.at_level(logging.WARNING):
        runs = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))
        series = runs["run"].images["weights"]["a"]
    assert series.steps.tolist() == [0, 1, 4]
    warnings = [r.getMessage() for r in caplog.records if "'run'" in r.getMessage()]
    assert len(warnings) == 1 and "not JSON" in warnings[0] and payload.tag(layout) in warnings[0]
    np.testing.assert_array_equal(series.values(2), picture_logdir.plane_values(pictures[4][0], "weights")[0])


def test_a_record_gone_from_its_file_is_a_clear_error(tmp_path):
    rng = np.random.default_rng(8)
    layout = picture_logdir.content("weights", ["a"], [[2, 2]])
    path = picture_logdir.write(str(tmp_path / "logdir" / "run"),
                                [(s, layout, _written(rng, "weights", ["a"], [[2, 2]])) for s in range(2)])
    series = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))["run"].images["weights"]["a"]
    os.remove(path)
    with pytest.raises(OSError, match="picture of 'a' at step 1 can no longer be read"):
        series.values(1)
