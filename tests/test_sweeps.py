"""Interpolation sweeps and layer robustness, checked against the obvious loop.

The reference (``sweep_helpers.reference``) is deliberately plain: a deep copy of the model, a
hand-built state dict per alpha, ``load_state_dict``, evaluate. Every curve the library computes
(activation reuse on) must match it.
"""

import json
import copy
import subprocess
import sys
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tensorboard import context
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from torch import nn
from torch.overrides import TorchFunctionMode

from tb_layerdyn import LayerDynamics, interpolation_sweep, log_interpolation_sweep
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.plugin import in_process
from demo.models import lenet5
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.sweeps import layer_robustness, make_eval_fn
from tb_layerdyn.sweeps.op_cache import OperationCache, record

from sweep_helpers import (
    AtenCount, assert_curves, batches, lerp_state, own_params, reference, scalar_states,
)

ALPHAS = (-0.5, 0.0, 0.3, 0.5, 1.0, 1.25)


class Gate(nn.Module):
    """Reads another module's weight functionally, before that module runs (a tied weight)."""

    def __init__(self, source):
        super().__init__()
        self._source = [source]  # a plain list: not registered as a child

    def forward(self, features):
        return torch.sigmoid(F.linear(features, self._source[0].weight)).mean(1, keepdim=True)


class Branchy(nn.Module):
    """Not a Sequential: a shared in-place activation, a residual ``+=``, BatchNorm, a tied read
    of ``head.weight`` before ``head`` runs, and a parameter owned by the root module."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU(inplace=True)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)
        self.gate = Gate(self.head)
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x):
        x = self.act(self.bn(self.stem(x)))
        gate = self.gate(x.mean((2, 3)))
        y = self.act(self.body(x))
        x += y
        return self.head(x.mean((2, 3))) * self.scale * (1 + gate)


def branchy_endpoints():
    """A Branchy model at ``theta1`` and its state at ``theta0`` (buffers differ too)."""
    torch.manual_seed(0)
    model = Branchy()
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
        model.train()
        model(torch.randn(16, 3, 8, 8))  # moves the BatchNorm running statistics
    model.eval()
    return model, start


@pytest.fixture(scope="module")
def branchy():
    model, start = branchy_endpoints()
    eval_fn = make_eval_fn(F.cross_entropy, batches((3, 8, 8), 5))
    end = copy.deepcopy(model.state_dict())
    result = interpolation_sweep(
        model, eval_fn, start, alphas=ALPHAS, scope=("model", "layers", "parameters"),
        params_per_layer=2,
    )
    return model, start, end, eval_fn, result


def test_layers_in_depth_order(branchy):
    *_, result = branchy
    assert result.layers == ["(root)", "stem", "bn", "body", "head"]
    assert result.scopes["layers"] == result.layers


def test_every_scope_equals_end_model_at_alpha_one(branchy):
    model, _, _, eval_fn, result = branchy
    with torch.no_grad():
        end_metrics = eval_fn(copy.deepcopy(model).eval())
    one = ALPHAS.index(1.0)
    for name, curve in result.curves.items():
        for metric, value in end_metrics.items():
            assert curve[metric][one] == pytest.approx(value, rel=1e-7), (name, metric)


def test_model_scope_equals_obvious_loop_and_start_at_alpha_zero(branchy):
    model, start, end, eval_fn, result = branchy
    names = [n for n, _ in model.named_parameters()]
    want = reference(model, eval_fn, [lerp_state(start, end, a, names) for a in ALPHAS])
    assert_curves(result.curves["model"], want)
    start_model = copy.deepcopy(model)
    start_model.load_state_dict({**start, **{k: v for k, v in end.items() if "running" in k or "batches" in k}})
    with torch.no_grad():
        at_start = eval_fn(start_model.eval())
    zero = ALPHAS.index(0.0)
    assert result.curves["model"]["loss"][zero] == pytest.approx(at_start["loss"], rel=1e-6)


def test_each_layer_curve_equals_hand_built_models(branchy):
    model, start, end, eval_fn, result = branchy
    for layer in result.layers:
        names = own_params(model, layer)
        want = reference(model, eval_fn, [lerp_state(start, end, a, names) for a in ALPHAS])
        assert_curves(result.curves[layer], want)
        # alpha = 0 is the trained model with just this layer back at its start weights
        hand = {k: v.clone() for k, v in end.items()}
        hand.update({k: start[k].clone() for k in names})
        zero = ALPHAS.index(0.0)
        assert result.curves[layer]["loss"][zero] == pytest.approx(
            reference(model, eval_fn, [hand])["loss"][0], rel=1e-6
        )
        travel = sum(float(((end[k] - start[k]).double() ** 2).sum()) for k in names) ** 0.5
        assert result.travel[layer] == pytest.approx(travel)


def test_parameter_curves_equal_obvious_loop(branchy):
    model, start, end, eval_fn, result = branchy
    curves = result.scopes["parameters"]
    assert len(curves) == 2 * len(result.layers)
    for curve in curves:
        info = result.parameters[curve]
        name, index = info["parameter"], tuple(info["index"])
        assert name in own_params(model, info["layer"])
        states = []
        for alpha in ALPHAS:
            state = {k: v.clone() for k, v in end.items()}
            state[name][index] = torch.lerp(start[name][index], end[name][index], alpha)
            states.append(state)
        assert_curves(result.curves[curve], reference(model, eval_fn, states))
        assert result.travel[curve] == pytest.approx(abs(float(end[name][index] - start[name][index])))


def test_same_seed_same_scalars_other_seed_others(branchy):
    model, start, _, eval_fn, result = branchy
    again = interpolation_sweep(model, eval_fn, start, alphas=(0.0,), scope="parameters",
                                params_per_layer=2, layers=["body"])
    assert again.scopes["parameters"] == [c for c in result.scopes["parameters"] if c.startswith("body.")]
    other = interpolation_sweep(model, eval_fn, start, alphas=(0.0,), scope="parameters",
                                params_per_layer=2, layers=["body"], seed=7)
    assert other.scopes["parameters"] != again.scopes["parameters"]


def test_operations_in_front_are_served_not_recomputed():
    torch.manual_seed(0)
    model = lenet5().eval()
    x = torch.randn(16, 1, 32, 32)
    with torch.no_grad():
        plain, recording = record(lambda: model(x))
        with OperationCache(recording, list(model.fc3.parameters())) as cache:
            assert cache.served_ops > 0
            for _ in range(3):
                with AtenCount() as count:
                    got = cache.replay(lambda: model(x))
                torch.testing.assert_close(got, plain, rtol=0, atol=0)
                # Only fc3 (a matrix product with its bias) runs; conv1 .. fc2 are served.
                assert count.ops == {"addmm": 1}
        torch.testing.assert_close(model(x), plain, rtol=0, atol=0)  # nothing stays patched


class Channelwise(nn.Module):
    """Not a Sequential either: the channel-local modules a rebuild covers (BatchNorm in eval mode,
    a non-inplace ReLU, max and average pooling) between convolutions, a residual sum, a flatten
    into linear layers, and a convolution with stride, dilation and padding."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 6, 3, stride=2, padding=2, dilation=2)
        self.avg = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(24, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        x = self.pool(self.act(self.bn(self.conv1(x))))
        x = x + self.act(self.conv2(x)).repeat_interleave(2, 2).repeat_interleave(2, 3)
        return self.fc2(self.act(self.fc1(self.avg(x).flatten(1))))


def channelwise_endpoints():
    torch.manual_seed(3)
    model = Channelwise()
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.3)
        model.train()
        model(torch.randn(16, 2, 8, 8))
    model.eval()
    return model, start


@pytest.mark.parametrize("eval_kind", ["make_eval_fn", "custom"])
def test_rebuilt_parameter_curves_equal_obvious_loop(eval_kind):
    model, start = channelwise_endpoints()
    end = copy.deepcopy(model.state_dict())
    data = batches((2, 8, 8), 4, count=2, size=6)
    if eval_kind == "make_eval_fn":
        eval_fn = make_eval_fn(F.cross_entropy, data)
    else:
        def eval_fn(m):  # arbitrary: two inputs per call, its own reductions
            first, second = m(data[0][0]), m(data[1][0])
            return {"mean": float(first.mean()), "top": float(second.softmax(1)[:, 0].sum())}
    result = interpolation_sweep(model, eval_fn, start, alphas=ALPHAS, scope="parameters",
                                 params_per_layer=3)
    assert len(result.scopes["parameters"]) == 3 * len(result.layers)
    for curve in result.scopes["parameters"]:
        info = result.parameters[curve]
        states = scalar_states(start, end, info["parameter"], tuple(info["index"]), ALPHAS)
        assert_curves(result.curves[curve], reference(model, eval_fn, states))


class ShapeSpy(TorchFunctionMode):
    """Notes the channel count of every max-pooling input: a rebuild pools only changed channels."""

    def __init__(self):
        super().__init__()
        self.pooled = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.max_pool2d or getattr(func, "__name__", "") == "max_pool2d":
            self.pooled.append(args[0].shape[1])
        return func(*args, **(kwargs or {}))


def test_a_moved_scalar_is_rebuilt_in_its_channel_only():
    torch.manual_seed(0)
    model = lenet5().eval()
    x = torch.randn(8, 1, 32, 32)
    weight = model.conv1.weight
    with torch.no_grad():
        _, recording = record(lambda: model(x))
        with OperationCache(recording, [weight, model.conv1.bias], rebuild=True) as cache:
            cache.rebase(lambda: model(x))
            assert cache.rebuilt_ops > 0
            for value in (0.5, -2.0, float("nan")):
                weight[3, 0, 1, 2] = value
                with ShapeSpy() as spy:
                    got = cache.replay(lambda: model(x))
                plain = model(x)
                # the first pooling sees only channel 3, the second (after conv2) all 16
                assert spy.pooled == [1, 16]
                torch.testing.assert_close(got, plain, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_rebuild_falls_back_when_most_channels_change():
    torch.manual_seed(0)
    model = lenet5().eval()
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        _, recording = record(lambda: model(x))
        with OperationCache(recording, list(model.conv1.parameters()), rebuild=True) as cache:
            cache.rebase(lambda: model(x))
            model.conv1.weight.mul_(1.5)  # every channel moves: plain forwards must run
            with ShapeSpy() as spy:
                got = cache.replay(lambda: model(x))
            assert spy.pooled == [6, 16]
            torch.testing.assert_close(got, model(x), rtol=0, atol=0)


def test_other_inputs_are_not_served_from_the_cache():
    torch.manual_seed(0)
    model = lenet5().eval()
    x, other = torch.randn(4, 1, 32, 32), torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        _, recording = record(lambda: model(x))
        with OperationCache(recording, list(model.fc3.parameters())) as cache:
            torch.testing.assert_close(cache.replay(lambda: model(other)), model(other))


def snapshot(model):
    return (
        {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        [None if p.grad is None else p.grad.clone() for p in model.parameters()],
    )


def assert_bitwise_same(model, before):
    state, modes, flags, grads = before
    for key, value in model.state_dict(keep_vars=True).items():
        assert value.dtype == state[key].dtype
        assert torch.equal(value.detach().view(-1).view(torch.uint8) if value.is_floating_point()
                           else value, state[key].view(-1).view(torch.uint8)
                           if value.is_floating_point() else state[key]), key
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    for param, grad in zip(model.parameters(), grads):
        assert (param.grad is None) == (grad is None)
        if grad is not None:
            assert torch.equal(param.grad, grad)


def odd_state_model():
    model, start = branchy_endpoints()
    model.train()
    model.head.eval()
    model.stem.requires_grad_(False)
    for param in list(model.parameters())[::2]:  # pending gradients, as between backward and step
        param.grad = torch.randn_like(param)
    with torch.no_grad():
        model.body.bias[0] = float("nan")  # a NaN weight must not crash the sweep
    return model, start


def test_restores_everything_bitwise_and_survives_nan():
    model, start = odd_state_model()
    before = snapshot(model)
    eval_fn = make_eval_fn(F.cross_entropy, batches((3, 8, 8), 5, count=1))
    result = interpolation_sweep(model, eval_fn, start, alphas=(0.0, 0.5), scope=("model", "layers", "parameters"),
                                 robustness=True, interpolate_buffers=True, label_metric="loss")
    assert torch.is_grad_enabled()
    assert_bitwise_same(model, before)
    assert np.isnan(result.curves["body"]["loss"]).all()
    # the end model's loss is NaN, so no change of it is defined
    assert set(result.robustness.labels) == {"undefined"}


def test_restores_when_eval_fn_raises():
    model, start = odd_state_model()
    before = snapshot(model)
    calls = []

    def failing(m):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("evaluation failed")
        return {"loss": 1.0}

    with pytest.raises(RuntimeError, match="evaluation failed"):
        interpolation_sweep(model, failing, start, scope="layers")
    assert_bitwise_same(model, before)


def test_batchnorm_buffers_kept_by_default_interpolated_on_request(branchy):
    model, start, end, _, _ = branchy
    seen = []

    def spy(m):
        seen.append((m.bn.running_mean.clone(), int(m.bn.num_batches_tracked)))
        return {"loss": 0.0}

    interpolation_sweep(model, spy, start, alphas=(0.0, 0.5), scope="model")
    for mean, count in seen:
        assert torch.equal(mean, end["bn.running_mean"])
        assert count == int(end["bn.num_batches_tracked"])
    seen.clear()
    interpolation_sweep(model, spy, start, alphas=(0.0, 0.5), scope="model", interpolate_buffers=True)
    want = [end["bn.running_mean"], start["bn.running_mean"],
            torch.lerp(start["bn.running_mean"], end["bn.running_mean"], 0.5)]
    for (mean, count), expected in zip(seen, want):
        torch.testing.assert_close(mean, expected)
        assert count == int(end["bn.num_batches_tracked"])  # integer counters never move


def test_an_eval_fn_in_train_mode_gets_the_end_points_buffers_back(branchy):
    model, start, end, _, _ = branchy
    end = {k: v.clone() for k, v in end.items()}
    end["bn.running_mean"] += 0.5  # the end point's statistics are not the model's
    base = make_eval_fn(F.cross_entropy, batches((3, 8, 8), 5))

    def eval_fn(m):
        m.gate.train()  # BatchNorm stays in eval mode and uses its running statistics
        return base(m)

    result = interpolation_sweep(model, eval_fn, start, end, alphas=ALPHAS, scope="layers")
    for layer in result.layers:
        names = own_params(model, layer)
        want = reference(model, eval_fn, [lerp_state(start, end, a, names) for a in ALPHAS])
        assert_curves(result.curves[layer], want)


def test_robustness_against_hand_built_models(branchy):
    model, start, end, eval_fn, _ = branchy
    rng_before = torch.random.get_rng_state()
    robust = layer_robustness(model, eval_fn, start, threshold=0.05, label_metric="loss")
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert robust.layers == ["(root)", "stem", "bn", "body", "head"]
    for i, layer in enumerate(robust.layers):
        names = own_params(model, layer)
        hand = {k: v.clone() for k, v in end.items()}
        hand.update({k: start[k].clone() for k in names})
        assert robust.reinitialized["loss"][i] == pytest.approx(
            reference(model, eval_fn, [hand])["loss"][0], rel=1e-6)
        if layer == "(root)":  # Branchy has no reset_parameters(): nothing to draw from
            assert np.isnan(robust.rerandomized["loss"][i])
            continue
        fresh = copy.deepcopy(model)
        with torch.random.fork_rng():
            torch.manual_seed(zlib.crc32(layer.encode()))
            fresh.get_submodule(layer).reset_parameters()
        drawn = {k: v.clone() for k, v in end.items()}
        drawn.update({k: fresh.state_dict()[k] for k in names})
        assert robust.rerandomized["loss"][i] == pytest.approx(
            reference(model, eval_fn, [drawn])["loss"][0], rel=1e-6)
    assert robust.not_rerandomizable == ["(root)"]
    change = robust.reinitialized["loss"] - robust.end_metrics["loss"]
    assert robust.labels == ["robust" if abs(c) > 0.05 else "ambient" for c in change]
    loose = layer_robustness(model, eval_fn, start, threshold=1e9, label_metric="loss")
    assert set(loose.labels) == {"ambient"}


def read_back(provider):
    ctx = context.RequestContext()
    listing = provider.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    data = provider.read_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME,
                                 downsample=1000, run_tag_filter=None)
    found = {}
    for tag, series in data["run"].items():
        layout = json.loads(listing["run"][tag].plugin_content)
        for datum in series:
            found[(layout["scope"], datum.step)] = (tag, encoding.decode(layout, datum.numpy))
    return found


@pytest.fixture(scope="module")
def written(tmp_path_factory, branchy):
    model, start, _, eval_fn, _ = branchy
    logdir = tmp_path_factory.mktemp("sweeps")
    results = {}
    for step in (10, 20):
        with torch.no_grad():
            model.head.bias.add_(0.1)  # the model moved on between the two sweeps
        results[step] = interpolation_sweep(
            model, eval_fn, start, alphas=ALPHAS, scope=("model", "layers", "parameters"),
            params_per_layer=1, robustness=True, label_metric="loss",
        )
        log_interpolation_sweep(str(logdir / "run"), results[step], step)
    return logdir, results


def check_read_back(found, results):
    assert sorted(found) == sorted(
        (scope, step) for step in (10, 20) for scope in ("model", "layers", "parameters", "robustness"))
    for (scope, step), (tag, decoded) in found.items():
        assert tag.startswith(encoding.TAG_PREFIX + scope + "/")
        result = results[step]
        if scope == "robustness":
            robust = result.robustness
            assert decoded["layers"] == robust.layers
            np.testing.assert_array_equal(
                np.array(decoded["reinitialized"]["loss"], dtype=np.float32),
                robust.reinitialized["loss"].astype(np.float32))
            assert decoded["labels"] == robust.labels
            continue
        assert decoded["alphas"] == list(ALPHAS)
        assert decoded["curves"] == result.scopes[scope]
        for metric in result.metrics:
            columns = decoded["columns"][metric]
            assert columns[0] == list(ALPHAS)
            for curve, column in zip(decoded["curves"], columns[1:]):
                np.testing.assert_array_equal(
                    np.array(column, dtype=np.float32), result.curves[curve][metric].astype(np.float32))
        assert decoded["travel"] == pytest.approx([result.travel[c] for c in decoded["curves"]], rel=1e-6)


def test_python_loader_reads_sweeps_back(written):
    logdir, results = written
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    check_read_back(read_back(MultiplexerDataProvider(multiplexer, str(logdir))), results)


def test_rust_loader_reads_sweeps_back(written):
    logdir, results = written
    with in_process.data_server(logdir, samples_per_plugin={metadata.PLUGIN_NAME: 0}) as provider:
        check_read_back(read_back(provider), results)


def test_tracker_sweeps_from_its_recorded_initial_weights(tmp_path):
    torch.manual_seed(0)
    model = lenet5(kernel_size=3)
    initial = copy.deepcopy(model.state_dict())
    data = batches((1, 32, 32), 10, count=1)
    eval_fn = make_eval_fn(F.cross_entropy, data)
    dyn = LayerDynamics(model, str(tmp_path), histogram_every=None)
    dyn.log(0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data * 3:
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad()
    result = dyn.sweep(eval_fn, 3, alphas=(0.0, 1.0), scope="model")
    dyn.flush()
    assert result.curves["model"]["loss"][0] == pytest.approx(
        reference(model, eval_fn, [initial])["loss"][0], rel=1e-6)
    assert result.curves["model"]["loss"][1] == pytest.approx(eval_fn(model)["loss"], rel=1e-7)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"scope": "layer"}, "scope"),
        ({"alphas": []}, "alphas"),
        ({"alphas": [0.0, float("nan")]}, "alphas"),
        ({"params_per_layer": 0}, "params_per_layer"),
        ({"layers": ["nope"]}, "layers"),
        ({"start": {"stem.weight": torch.zeros(1)}}, "start"),
        ({"start": {"nope": torch.zeros(1)}}, "start"),
        ({"start": [1, 2]}, "start"),
        ({"end": {}}, "end"),
        ({"eval_fn": lambda m: 0.5}, "eval_fn"),
        ({"interpolate_buffers": True, "start": "params-only"}, "interpolate_buffers"),
    ],
)
def test_bad_input_names_the_argument_and_leaves_the_model(options, message):
    model, start = branchy_endpoints()
    before = snapshot(model)
    if options.get("start") == "params-only":
        options["start"] = {k: v for k, v in start.items() if "running" not in k}
    arguments = {"eval_fn": make_eval_fn(F.cross_entropy, batches((3, 8, 8), 5, count=1)),
                 "start": start, **options}
    with pytest.raises((TypeError, ValueError), match=message):
        interpolation_sweep(model, **arguments)
    assert_bitwise_same(model, before)


def test_bad_writer_arguments(tmp_path, branchy):
    *_, result = branchy
    with pytest.raises(ValueError, match="step"):
        log_interpolation_sweep(str(tmp_path), result, -1)
    with pytest.raises(TypeError, match="result"):
        log_interpolation_sweep(str(tmp_path), {"alphas": []}, 0)
    with pytest.raises(TypeError, match="writer"):
        log_interpolation_sweep(42, result, 0)


def test_encoding_imports_without_torch():
    code = "import sys, tb_layerdyn.format.sweeps; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
