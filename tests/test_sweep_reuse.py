"""Operation-level reuse in sweeps: equal to the obvious loop, and really reusing.

Every curve is checked against ``sweep_helpers.reference`` (a deep copy, ``load_state_dict`` per
alpha, evaluate). That reuse happens is checked by counting the ATen operations that actually run
in each evaluation (``sweep_helpers.AtenCount``): a served operation runs none.
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from demo.models import FunctionalLeNet5, lenet5, sequential_lenet5
from tb_layerdyn import interpolation_sweep
from tb_layerdyn.sweeps import make_eval_fn
from tb_layerdyn.sweeps.op_cache import OperationCache, record

from sweep_helpers import (
    AtenCount, assert_curves, batches, lerp_state, own_params, reference, scalar_states,
)

ALPHAS = (-0.25, 0.0, 0.5, 0.75, 1.0, 1.5)
COUNTED_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


class InPlaceLeNet(FunctionalLeNet5):
    """LeNet-5 with in-place ReLUs: a module, a functional call and a tensor method."""

    def __init__(self):
        super().__init__()
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        x = F.max_pool2d(self.act(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x), inplace=True), 2)
        x = self.fc1(x.flatten(1)).relu_()
        return self.fc3(self.act(self.fc2(x)))


FORMS = {"modules": lenet5, "functional": FunctionalLeNet5, "sequential": sequential_lenet5}


def endpoints(build, seed=0, scale=0.1):
    """A model of ``build()`` at ``theta1`` (the start plus noise) and its state at ``theta0``."""
    torch.manual_seed(seed)
    model = build().eval()
    start = copy.deepcopy(model.state_dict())
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * scale)
    return model, start


def lenet_batches():
    return batches((1, 32, 32), 10, count=2, size=6)


def assert_exact(got, want):
    for metric, values in want.items():
        np.testing.assert_array_equal(got[metric], values, err_msg=metric)


def layer_references(model, start, eval_fn, layers, alphas=ALPHAS):
    end = copy.deepcopy(model.state_dict())
    return {
        layer: reference(model, eval_fn, [
            lerp_state(start, end, a, own_params(model, layer)) for a in alphas
        ])
        for layer in layers
    }


@pytest.mark.parametrize("form", sorted(FORMS))
def test_lenet_forms_equal_the_obvious_loop(form):
    model, start = endpoints(FORMS[form])
    end = copy.deepcopy(model.state_dict())
    eval_fn = make_eval_fn(F.cross_entropy, lenet_batches())
    result = interpolation_sweep(model, eval_fn, start, alphas=ALPHAS,
                                 scope=("model", "layers", "parameters"), params_per_layer=2)
    assert result.layers == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    names = [name for name, _ in model.named_parameters()]
    want = reference(model, eval_fn, [lerp_state(start, end, a, names) for a in ALPHAS])
    assert_exact(result.curves["model"], want)
    for layer, want in layer_references(model, start, eval_fn, result.layers).items():
        assert_exact(result.curves[layer], want)
    for curve in result.scopes["parameters"]:
        info = result.parameters[curve]
        states = scalar_states(start, end, info["parameter"], tuple(info["index"]), ALPHAS)
        assert_curves(result.curves[curve], reference(model, eval_fn, states))


def counted(eval_fn, counts, names):
    """``eval_fn`` that also appends, per evaluation, how often each of ``names`` ran."""

    def counting(model):
        with AtenCount() as count:
            metrics = eval_fn(model)
        counts.append(tuple(count.ops.get(name, 0) for name in names))
        return metrics

    return counting


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("layer, replayed", [
    # (convolutions, poolings, matrix products) per replay, over two batches
    ("conv2", (2, 2, 6)),
    ("fc1", (0, 0, 6)),
    ("fc3", (0, 0, 2)),
])
def test_operations_in_front_of_the_moving_layer_run_once(form, layer, replayed):
    model, start = endpoints(FORMS[form])
    counts = []
    names = ("convolution", "max_pool2d_with_indices", "addmm")
    eval_fn = counted(make_eval_fn(F.cross_entropy, lenet_batches()), counts, names)
    interpolation_sweep(model, eval_fn, start, alphas=COUNTED_ALPHAS, scope="layers",
                        layers=[layer])
    # The end model, recorded (and ordering the layers), then a replay per alpha but 1, which
    # is the end model's evaluation.
    assert counts == [(4, 4, 6)] + [replayed] * 4


def test_reuse_survives_earlier_curves_putting_their_layers_back():
    model, start = endpoints(FunctionalLeNet5)
    counts = []
    eval_fn = counted(make_eval_fn(F.cross_entropy, lenet_batches()), counts, ("convolution",))
    interpolation_sweep(model, eval_fn, start, alphas=COUNTED_ALPHAS,
                        scope=("layers", "parameters"), layers=["conv1", "fc1"],
                        params_per_layer=1)
    # conv1's curve runs both convolutions of both batches; fc1's, after conv1 was put back
    # (its tensors written in place, to their recorded values), none.
    assert counts[:9] == [(4,)] + [(4,)] * 4 + [(0,)] * 4
    # The same for the scalars: fc1's replays run no convolution.
    assert counts[-4:] == [(0,)] * 4


def test_in_place_relus_are_served_and_equal_the_obvious_loop():
    model, start = endpoints(InPlaceLeNet)
    data = lenet_batches()
    eval_fn = make_eval_fn(F.cross_entropy, data)
    result = interpolation_sweep(model, eval_fn, start, alphas=ALPHAS, scope="layers")
    for layer, want in layer_references(model, start, eval_fn, result.layers).items():
        assert_exact(result.curves[layer], want)
    counts = []
    names = ("convolution", "relu_", "addmm")
    interpolation_sweep(model, counted(eval_fn, counts, names), start, alphas=COUNTED_ALPHAS,
                        scope="layers", layers=["fc2"])
    # conv1, conv2 and fc1 with their in-place ReLUs are served; fc2, its ReLU and fc3 run.
    assert counts[1:] == [(0, 2, 4)] * 4


class Residual(nn.Module):
    """A skip connection that adds a prefix activation ``h`` to a later one, in one of four ways."""

    def __init__(self, join):
        super().__init__()
        self.join = join
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = F.relu(self.stem(x))
        y = F.relu(self.body(h))
        if self.join == "add":
            z = y + h
        elif self.join == "into_later":  # writes into the moving activation
            y += h
            z = y
        elif self.join == "into_prefix":  # writes the moving activation into the prefix one
            h += y
            z = h
        else:  # "after_read": a fixed in-place write into h after the moving layer read it
            h.mul_(0.5)
            z = y + h
        return self.head(z.mean((2, 3)))


@pytest.mark.parametrize("join, rerun", [
    ("add", 0), ("into_later", 0), ("into_prefix", 2), ("after_read", 2),
])
def test_residual_models_equal_the_obvious_loop(join, rerun):
    model, start = endpoints(lambda: Residual(join), scale=0.3)
    eval_fn = make_eval_fn(F.cross_entropy, batches((3, 8, 8), 5))
    result = interpolation_sweep(model, eval_fn, start, alphas=ALPHAS, scope="layers")
    for layer, want in layer_references(model, start, eval_fn, result.layers).items():
        assert_exact(result.curves[layer], want)
    # Sweeping body (one convolution and ReLU per batch): the stem's convolution is always
    # served; its ReLU, which makes h, runs again where h is written in place after body read
    # it (a served h would hold the previous alpha's sum).
    counts = []
    interpolation_sweep(model, counted(eval_fn, counts, ("convolution", "relu")), start,
                        alphas=COUNTED_ALPHAS, scope="layers", layers=["body"])
    assert counts[1:] == [(2, 2 + rerun)] * 4


class Branching(nn.Module):
    """A forward whose control flow depends on the moving layer's weights."""

    def __init__(self, branch):
        super().__init__()
        self.branch = branch
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = self.conv(x)
        flag = float(self.fc.weight.sum()) > 0
        if self.branch == "write" and flag:
            h.mul_(2.0)  # a write into a served tensor the recording did not see
        if self.branch == "before_served_write" and flag:
            h = h - 1.0
        if self.branch == "before_served_write":
            h.relu_()  # served when the recording did not branch
        return self.fc(h.flatten(1))


@pytest.mark.parametrize("branch", ["write", "before_served_write"])
def test_departures_from_the_recording_stay_exact(branch):
    torch.manual_seed(0)
    model = Branching(branch).eval()
    x = torch.randn(5, 1, 8, 8)
    weight = model.fc.weight
    with torch.no_grad():
        weight.sub_(weight.mean())
        low, high = weight - 0.01, weight + 0.01  # sums below and above zero
        weight.copy_(low)
        _, recording = record(lambda: model(x).clone())
        with OperationCache(recording, [weight, model.fc.bias]) as cache:
            assert cache.served_ops > 0
            for value in (low, high, low, high):
                weight.copy_(value)
                got = cache.replay(lambda: model(x).clone())
                torch.testing.assert_close(got, model(x), rtol=0, atol=0)
            # The first branching replay left no served tensor that could be trusted.
            assert not cache.enabled


def test_random_draws_in_front_are_drawn_again():
    class Noisy(FunctionalLeNet5):
        def forward(self, x):
            return super().forward(F.dropout(x, 0.2, training=True))

    model, start = endpoints(Noisy)
    eval_fn = make_eval_fn(F.cross_entropy, lenet_batches())
    results, states = [], []
    for reuse in (True, False):
        torch.manual_seed(5)
        results.append(interpolation_sweep(model, eval_fn, start, alphas=ALPHAS, scope="layers",
                                           reuse_activations=reuse))
        states.append(torch.random.get_rng_state())
    assert torch.equal(states[0], states[1])  # as many draws with reuse as without
    for layer in results[1].layers:
        assert_exact(results[0].curves[layer], results[1].curves[layer])
    assert np.ptp(results[0].curves["fc3"]["loss"][[1, 4]]) > 0  # the masks differ per alpha


def test_inference_mode_evaluation_runs_plainly():
    model, start = endpoints(FunctionalLeNet5)
    data = lenet_batches()

    def eval_fn(m):
        with torch.inference_mode():
            return {"loss": sum(float(F.cross_entropy(m(x), y)) for x, y in data)}

    result = interpolation_sweep(model, eval_fn, start, alphas=ALPHAS, scope="layers")
    for layer, want in layer_references(model, start, eval_fn, result.layers).items():
        assert_exact(result.curves[layer], want)


def test_inputs_made_afresh_at_every_evaluation_are_recognised_by_value():
    model, start = endpoints(FunctionalLeNet5)
    arrays = [(x.numpy().copy(), y) for x, y in lenet_batches()]

    def eval_fn(m):
        total = 0.0
        for array, y in arrays:  # a new input tensor per call: as_tensor of a copy
            total += float(F.cross_entropy(m(torch.as_tensor(array.copy())), y))
        return {"loss": total}

    counts = []
    result = interpolation_sweep(model, counted(eval_fn, counts, ("convolution",)), start,
                                 alphas=COUNTED_ALPHAS, scope="layers", layers=["fc1"])
    assert counts[1:] == [(0,)] * 4
    want = layer_references(model, start, eval_fn, ["fc1"], COUNTED_ALPHAS)["fc1"]
    assert_exact(result.curves["fc1"], want)


class PoolSpy(TorchFunctionMode):
    """Notes the channel count of every max-pooling input: a rebuild pools only changed channels."""

    def __init__(self):
        super().__init__()
        self.pooled = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.max_pool2d:
            self.pooled.append(args[0].shape[1])
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("form", sorted(FORMS))
def test_a_moved_scalar_is_rebuilt_in_its_channel_in_every_form(form):
    model, _ = endpoints(FORMS[form])
    x = torch.randn(4, 1, 32, 32)
    weight = model.conv1.weight
    with torch.no_grad():
        _, recording = record(lambda: model(x))
        cache = OperationCache(recording, [weight, model.conv1.bias], rebuild=True)
        cache.rebase(lambda: model(x))
        assert cache.rebuilt_ops > 0
        for value in (0.5, -2.0):
            weight[3, 0, 1, 2] = value
            with PoolSpy() as spy:
                got = cache.replay(lambda: model(x))
            # the first pooling sees only channel 3, the second (after conv2) all 16
            assert spy.pooled == [1, 16]
            torch.testing.assert_close(got, model(x), rtol=1e-5, atol=1e-6)
