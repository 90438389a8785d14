"""The tracker's behaviour: no side effects on training, order, groups, memory, histograms,
layouts, wrappers and the distributed roles that can run in one process."""

import gc
import math
import weakref

import pytest
import torch
import torch.distributed as dist
from tensorboard.backend.event_processing import event_accumulator
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import ZOO_FORWARD_ORDER, ZOO_LAYERS, Zoo, metric_events, train_step, values_by_step, zoo_batch
from tb_layerdyn import LayerDynamics, log_layer_dynamics
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import tracker as tracker_mod
from tb_layerdyn.format import layer_metrics
from demo.models import resnet18


def train(log_dir, steps=4, memory_format=torch.contiguous_format):
    torch.manual_seed(0)
    model = Zoo().to(memory_format=memory_format)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(3)
    for step in range(steps):
        train_step(model, opt, zoo_batch(gen))
        if log_dir is not None:
            log_layer_dynamics(log_dir, model, step, rwc="both", histogram_every=2)
    return model, opt, torch.rand(3)


def test_logging_changes_nothing_in_training(tmp_path):
    plain_model, plain_opt, plain_rng = train(None)
    logged_model, logged_opt, logged_rng = train(str(tmp_path))
    for (name, a), b in zip(plain_model.named_parameters(), logged_model.parameters()):
        assert torch.equal(a, b), name
        assert (a.grad is None and b.grad is None) or torch.equal(a.grad, b.grad), name
    for a, b in zip(plain_opt.state.values(), logged_opt.state.values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(plain_rng, logged_rng)


def test_channels_last_gives_the_same_values(tmp_path):
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1))
    channels_last = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 1))
    channels_last.load_state_dict(plain.state_dict())
    channels_last.to(memory_format=torch.channels_last)
    assert not channels_last[0].weight.is_contiguous()
    trackers = [
        LayerDynamics(net, str(tmp_path / name), histogram_every=None)
        for net, name in ((plain, "plain"), (channels_last, "cl"))
    ]
    gen = torch.Generator().manual_seed(0)
    for step in range(3):
        noise = [torch.randn(p.shape, generator=gen) * 0.01 for p in plain.parameters()]
        for net, tracker in zip((plain, channels_last), trackers):
            with torch.no_grad():
                for p, n in zip(net.parameters(), noise):
                    p.add_(n)
            tracker.log(step)
            tracker.flush()
    want = values_by_step(str(tmp_path / "plain"))
    got = values_by_step(str(tmp_path / "cl"))
    assert want.keys() == got.keys()
    for step in want:
        for key, value in want[step].items():
            other = got[step][key]
            assert (math.isnan(value) and math.isnan(other)) or other == pytest.approx(value, rel=1e-5)


def test_layers_order_counts_and_block_groups(tmp_path):
    train(str(tmp_path))
    contents = [content for _, content, _, _ in metric_events(str(tmp_path))]
    orders = {c["order"]: c for c in contents}
    # The first call only knows registration order; the forward pass after it teaches the rest.
    assert orders["registration"]["layers"] == list(ZOO_LAYERS)
    latest = orders["forward"]
    assert latest["layers"] == ZOO_FORWARD_ORDER
    model = Zoo()
    params = dict(model.named_parameters(remove_duplicate=False))
    assert latest["param_counts"] == [
        sum(params[p].numel() for p in ZOO_LAYERS[layer]) for layer in ZOO_FORWARD_ORDER
    ]
    assert latest["groups"] == [{"name": "block", "kind": "block", "members": ["block.0", "block.1"]}]
    assert latest["rwc"] == "both"


def test_resnet_blocks_and_parameter_granularity():
    model = resnet18()
    found = layers_mod.find_layers(model)
    assert len(found) == 41 and sum(lay.numel for lay in found) == 11181642
    groups = layers_mod.block_groups(model, found)
    stages = ["layer1", "layer2", "layer3", "layer4"]
    # The stages (top-level children), then the residual blocks inside each stage.
    assert [g["name"] for g in groups] == stages + [f"{s}.{b}" for s in stages for b in (0, 1)]
    assert len(groups[1]["members"]) == 10  # 2 blocks x (conv, bn, conv, bn) + downsample conv, bn
    assert groups[7]["members"] == [f"layer2.1.{n}" for n in ("conv1", "bn1", "conv2", "bn2")]
    per_param = layers_mod.find_layers(model, granularity="parameter")
    assert len(per_param) == 62 and per_param[1].name == "bn1.weight"


def test_registry_does_not_keep_the_model_alive(tmp_path):
    model = nn.Linear(3, 3)
    log_layer_dynamics(str(tmp_path), model, 0)
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_repeated_calls_with_a_writer_object_keep_the_registry_s_rules(tmp_path):
    # The last call's (model, writer, options) are compared before the registry's lookup.
    writer = SummaryWriter(str(tmp_path / "a"))
    other = SummaryWriter(str(tmp_path / "b"))
    model = nn.Linear(3, 3)
    for step in range(3):
        log_layer_dynamics(writer, model, step, histogram_every=None)
    with pytest.raises(ValueError, match="differ from the first call"):
        log_layer_dynamics(writer, model, 3, histogram_every=5)
    log_layer_dynamics(other, model, 0)  # another writer: another tracker, its own steps
    log_layer_dynamics(writer, model, 3, histogram_every=None)  # back to the first one
    trackers = [entry[1] for entry in tracker_mod._registry[model].values()]
    assert len(trackers) == 2
    writer.close()
    other.close()
    steps = {name: sorted(values_by_step(str(tmp_path / name))) for name in ("a", "b")}
    assert steps == {"a": [0, 1, 2, 3], "b": [0]}
    refs = [weakref.ref(model)] + [weakref.ref(t) for t in trackers]
    del model, trackers
    gc.collect()
    assert all(ref() is None for ref in refs)  # the shortcut holds neither the model nor its trackers


def test_histograms_at_the_cadence_and_off(tmp_path):
    train(str(tmp_path), steps=5)
    acc = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    tags = acc.Tags()["histograms"]
    assert "weights/conv.weight" in tags and "gradients/block.0.bias" in tags
    assert "gradients/frozen.weight" not in tags
    assert [e.step for e in acc.Histograms("weights/conv.weight")] == [0, 2, 4]

    model = nn.Linear(2, 2)
    LayerDynamics(model, str(tmp_path / "off"), histogram_every=None).log(0)
    acc = event_accumulator.EventAccumulator(str(tmp_path / "off"))
    acc.Reload()
    assert acc.Tags()["histograms"] == []


def test_metadata_only_on_the_first_event_of_a_tag(tmp_path):
    from tensorboard.backend.event_processing import event_file_loader

    writer = SummaryWriter(str(tmp_path))
    model = nn.Linear(2, 2)
    tracker = LayerDynamics(model, writer, histogram_every=None)
    for step in range(3):
        tracker.log(step)
    writer.close()
    (path,) = tmp_path.iterdir()
    with_metadata = {}
    for event in event_file_loader.EventFileLoader(str(path)).Load():
        for value in event.summary.value:
            key = (value.tag.split("/")[1], value.tag.endswith(layer_metrics.STEPS_SUFFIX))
            with_metadata.setdefault(key, []).append(value.HasField("metadata"))
    # Per tag: the metrics (the first call's record, then the two later calls packed, with their
    # steps, whose first event carries the steps' own metadata) and the weight sketches of each call.
    assert with_metadata == {
        ("metrics", False): [True, False],
        ("metrics", True): [True],
        ("sketches", False): [True],  # the first call's (then every 10th step's)
    }


def test_unwraps_compiled_modules(tmp_path):
    model = nn.Sequential(nn.Linear(2, 2))
    compiled = torch.compile(model)
    tracker = LayerDynamics(compiled, str(tmp_path), histogram_every=None)
    tracker.log(0)
    tracker.flush()
    (content,) = [c for _, c, _, _ in metric_events(str(tmp_path))]
    assert content["layers"] == ["0"]


@pytest.fixture
def one_process_group(tmp_path):
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    yield
    dist.destroy_process_group()


def test_sharded_parameters_in_one_process_group(tmp_path, one_process_group):
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reference = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    reference.load_state_dict(model.state_dict())
    fully_shard(model)
    for net, logdir in ((model, "fsdp"), (reference, "plain")):
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        gen = torch.Generator().manual_seed(0)
        # An explicit writer, closed before reading: a logdir path's writer flushes only at exit.
        with SummaryWriter(str(tmp_path / logdir)) as writer:
            for step in range(3):
                x = torch.randn(5, 4, generator=gen)
                net(x).square().mean().backward()
                opt.step()
                log_layer_dynamics(writer, net, step, histogram_every=None)
                opt.zero_grad()
    sharded = values_by_step(str(tmp_path / "fsdp"))
    plain = values_by_step(str(tmp_path / "plain"))
    assert sharded.keys() == plain.keys()
    for step in plain:
        for key, value in plain[step].items():
            other = sharded[step][key]
            assert (math.isnan(value) and math.isnan(other)) or other == pytest.approx(value, rel=1e-5, abs=1e-7)


def test_a_float64_model_is_measured_like_its_float32_copy(tmp_path):
    """Half and double parameters are copied to float32 for the pass; a double gradient's norm
    is taken in double (torch refuses to narrow it inside the norm)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 2)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    grads = {}
    for step in range(3):
        model(torch.randn(8, 5, dtype=torch.float64)).square().sum().backward()
        opt.step()
        tracker.log(step)
        grads[step] = {name: p.grad.clone() for name, p in model.named_parameters()}
        opt.zero_grad()
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    for step, by_name in grads.items():
        for layer in ("0", "1"):
            want = math.sqrt(sum(float((g * g).sum()) for n, g in by_name.items() if n.startswith(layer + ".")))
            assert logged[step][("grad_norm", layer)] == pytest.approx(want, rel=1e-6)
