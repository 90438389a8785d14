"""Bad input: a clear error naming the argument, nothing already logged is lost, training goes on."""

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import metric_events, values_by_step
from tb_layerdyn import LayerDynamics, log_layer_dynamics
from tb_layerdyn.tracking.guards import NoGradientWarning


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def test_non_module_model_names_the_argument(tmp_path):
    model = small()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        log_layer_dynamics(str(tmp_path), model.parameters(), 0)
    with pytest.raises(TypeError, match="model"):
        LayerDynamics(model.state_dict(), str(tmp_path))


def test_bad_writer_step_and_options(tmp_path):
    model = small()
    with pytest.raises(TypeError, match="writer"):
        LayerDynamics(model, 42)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    with pytest.raises(TypeError, match="step"):
        tracker.log(1.5)
    with pytest.raises(ValueError, match="step"):
        tracker.log(-1)
    with pytest.raises(ValueError, match="granularity"):
        LayerDynamics(model, str(tmp_path), granularity="neuron")
    with pytest.raises(ValueError, match="rwc"):
        LayerDynamics(model, str(tmp_path), rwc="l2")
    with pytest.raises(ValueError, match="histogram_every"):
        LayerDynamics(model, str(tmp_path), histogram_every=0)
    with pytest.raises(ValueError, match=r"groups\['x'\]"):
        LayerDynamics(model, str(tmp_path), groups={"x": ["nope"]})
    with pytest.raises(ValueError, match="matches no layer"):
        LayerDynamics(model, str(tmp_path), groups={"x": "^conv"})
    log_layer_dynamics(str(tmp_path / "b"), model, 0, rwc="both")
    with pytest.raises(ValueError, match="options"):
        log_layer_dynamics(str(tmp_path / "b"), model, 1, rwc="l1")


def test_closed_writer_warns_once_and_keeps_what_was_logged(tmp_path):
    model = small()
    writer = SummaryWriter(str(tmp_path))
    log_layer_dynamics(writer, model, 0, histogram_every=None)
    log_layer_dynamics(writer, model, 1, histogram_every=None)
    writer.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log_layer_dynamics(writer, model, 2, histogram_every=None)
        log_layer_dynamics(writer, model, 3, histogram_every=None)
    closed = [w for w in caught if "SummaryWriter is closed" in str(w.message)]
    assert len(closed) == 1 and "step 2" in str(closed[0].message)
    assert closed[0].filename == __file__  # it points at the call, not inside the package
    assert sorted(values_by_step(str(tmp_path))) == [0, 1]
    assert len(list(tmp_path.iterdir())) == 1  # no new event file was opened behind the user's back


def test_nan_layer_is_nan_for_that_step_with_one_warning(tmp_path):
    model = small()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.log(0)
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.log(1)
        tracker.log(2)
    assert len([w for w in caught if "NaN or Inf" in str(w.message)]) == 1
    with torch.no_grad():
        model[0].weight[0, 0] = 0.5
    model[2].weight.data.add_(0.01)
    tracker.log(3)
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    for metric in ("rwc", "distance_from_init", "weight_norm", "update_size"):
        assert math.isnan(logged[1][(metric, "0")])
        assert not math.isnan(logged[1][("weight_norm", "2")])
    assert logged[3][("rwc", "2")] > 0  # the healthy layer kept being measured


def test_zero_previous_weights_give_undefined_rwc_without_warning(tmp_path):
    model = small()
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.zero_()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # No backward pass here: the missing gradients have their own warning, not checked here.
        warnings.filterwarnings("ignore", category=NoGradientWarning)
        tracker.log(0)
        model[0].weight.data.fill_(0.1)
        tracker.log(1)
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    assert math.isnan(logged[1][("rwc", "0")])
    assert logged[1][("update_size", "0")] == pytest.approx(math.sqrt(12 * 0.01))


def test_parameter_that_appears_or_changes_shape_restarts_with_warning(tmp_path):
    model = small()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.log(0)
    model[2] = nn.Linear(4, 3)
    model.add_module("extra", nn.Linear(3, 3))
    with pytest.warns(UserWarning, match="layers changed"):
        tracker.log(1)
    model[2].weight.data.add_(0.1)
    tracker.log(2)
    tracker.flush()
    tags = metric_events(str(tmp_path))
    assert len(tags) == 2
    logged = values_by_step(str(tmp_path))
    assert math.isnan(logged[1][("rwc", "2")])  # restarted: no previous weights
    assert logged[1][("distance_from_init", "2")] == 0.0
    assert logged[2][("rwc", "2")] > 0
    assert logged[2][("rwc", "0")] == 0.0  # untouched layer kept its snapshots


def test_weights_given_new_storage_are_read_from_it(tmp_path):
    """``param.data = ...`` (same shape, new storage) between calls: the next calls measure the new
    tensor, not the storage the snapshots were built from."""
    model = small()
    def norm(lin):
        return float(torch.cat([lin.weight.detach().flatten(), lin.bias.detach()]).double().norm())

    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.log(0)
    model[0].weight.data = model[0].weight.data + 1.0
    tracker.log(1)
    expected = {1: norm(model[0])}
    model[0].weight.data.mul_(2.0)  # in place, on the new storage
    tracker.log(2)
    expected[2] = norm(model[0])
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    for step, value in expected.items():
        assert logged[step][("weight_norm", "0")] == pytest.approx(value, rel=1e-6)
    assert logged[2][("rwc", "0")] > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_reduced_in_float32(tmp_path, dtype):
    model = nn.Linear(2048, 1024).to(dtype)
    with torch.no_grad():
        model.weight.fill_(8.0)  # sum of squares overflows fp16 (max 65504)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.log(0)
    with torch.no_grad():
        model.weight.add_(1.0)
    tracker.log(1)
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    n = 2048 * 1024
    bias = model.bias.detach().double()
    assert logged[1][("weight_norm", "(root)")] == pytest.approx(
        math.sqrt(n * 81 + float((bias * bias).sum())), rel=1e-5
    )
    assert logged[1][("update_size", "(root)")] == pytest.approx(math.sqrt(n), rel=1e-5)
