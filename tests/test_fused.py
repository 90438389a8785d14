"""The fused (compiled) pass: same sums as the eager pass and a float64 reference, NaN kept in its
layer, the model untouched, and an honest fallback when inductor cannot compile."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from layerdyn_helpers import reference_layer_sums
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import metrics
from tb_layerdyn.tracking.reduce import Reducer
from tb_layerdyn.tracking.tracker import LayerDynamics

# A C++ compiler that does not exist: inductor's own option, so compiling really fails.
BROKEN_COMPILER = {"cpp.cxx": ("/nonexistent/bin/c++",)}


def large_model():
    """Several parameters above the flat path's size (fused), a channels_last conv among them,
    and small biases (flat path) beside them."""
    torch.manual_seed(1)
    return nn.Sequential(
        nn.Conv2d(64, 64, 3).to(memory_format=torch.channels_last),
        nn.Flatten(),
        nn.Linear(256, 200),
        nn.Linear(200, 300),
        nn.Linear(300, 10),
    )


def train_step(model, opt):
    conv, rest = model[0], model[2:]
    x = torch.randn(4, 64, 3, 3)
    loss = rest(conv(x).flatten(1).repeat(1, 4)).square().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def run_reducer(fused, elementwise, steps=3):
    """Sums of each call of a reducer over a few SGD steps, with the float64 reference's."""
    model = large_model()
    with torch.no_grad():
        model[3].weight[:5] = 0.0  # zero previous weights at the next call
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    found = layers_mod.find_layers(model)
    reducer = Reducer(elementwise=elementwise, fused=fused)
    reducer.prepare(found, [True] * len(found))

    def snap():
        return {n: p.detach().clone() for layer in found for n, p in layer.params}

    init, got, want = snap(), [], []
    for _ in range(steps):
        prev = snap()
        train_step(model, opt)
        got.append(reducer.layer_sums(reducer.to_host(reducer.reduce())).copy())
        want.append(reference_layer_sums(found, prev, init))
    return got, want, reducer


@pytest.mark.parametrize("elementwise", [False, True])
def test_fused_sums_equal_eager_and_reference(elementwise):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fused, want, reducer = run_reducer(True, elementwise)
    # A fallback would warn: the kernel must really have run here.
    assert not [w for w in caught if "fused=True" in str(w.message)]
    eager, _, _ = run_reducer(False, elementwise)
    fused_params = [p for p in reducer._params if p.fused_args is not None]
    assert len(fused_params) >= 3 and reducer._fused.available
    cols = list(range(metrics.NUM_SUMS))
    if not elementwise:
        cols = [c for c in cols if c not in (metrics.SUM_RATIO, metrics.SUM_ZERO_PREV)]
    for f, e, w in zip(fused, eager, want):
        np.testing.assert_allclose(f[:, cols], w[:, cols], rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(f[:, cols], e[:, cols], rtol=2e-5, atol=1e-6)
    # model[3]'s zeroed rows were the previous weights of the first call: counted, not divided by.
    if elementwise:
        row = [layer.name for layer in layers_mod.find_layers(large_model())].index("3")
        assert fused[0][row, metrics.SUM_ZERO_PREV] == want[0][row, metrics.SUM_ZERO_PREV] >= 5 * 200


def test_fused_nan_blanks_only_its_layer_and_never_changes_the_model(tmp_path):
    logged, plain = large_model(), large_model()
    opts = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (logged, plain)]
    tracker = LayerDynamics(logged, str(tmp_path), histogram_every=None, rwc="both", fused=True)
    for step in range(3):
        torch.manual_seed(step)
        train_step(logged, opts[0])
        torch.manual_seed(step)
        train_step(plain, opts[1])
        tracker.log(step)
    for a, b in zip(logged.parameters(), plain.parameters()):
        assert torch.equal(a, b)

    found = layers_mod.find_layers(logged)
    reducer = Reducer(elementwise=True, fused=True)
    reducer.prepare(found, [True] * len(found))
    with torch.no_grad():
        logged[3].weight[7, 7] = float("nan")
    sums = reducer.layer_sums(reducer.to_host(reducer.reduce()))
    bad = metrics.nonfinite_columns(sums)
    names = [layer.name for layer in found]
    assert [n for n, b in zip(names, bad) if b] == ["3"]
    assert np.isfinite(sums[names.index("2"), metrics.SUM_SQ_WEIGHT])


def test_fallback_warns_once_and_logs_correct_values():
    with pytest.warns(RuntimeWarning, match="fused=True: torch.compile could not build") as caught:
        got, want, reducer = run_reducer(BROKEN_COMPILER, elementwise=True)
    assert len([w for w in caught if "fused=True" in str(w.message)]) == 1
    assert not reducer._fused.available
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


def test_fused_option_must_be_bool_or_dict():
    with pytest.raises(ValueError, match="fused must be True, False or a dict"):
        LayerDynamics(large_model(), None, fused="yes")
