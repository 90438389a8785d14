"""Logging attached to an optimizer: one log per optimizer step, wherever zero_grad() sits, the
same values as the plain call, gradients as the step sees them."""

import math
import warnings

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import metric_events, values_by_step
from tb_layerdyn import LayerDynamics


def small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 4, generator=gen) for _ in range(n)]


def accumulate_and_train(model, opt, data, accumulation, on_update=None, zero_first=False):
    """Trains with gradient accumulation; ``on_update(k)`` runs after the k-th update, before
    ``zero_grad`` (or after it, with ``zero_first``)."""
    updates = 0
    for i, x in enumerate(data):
        (model(x).square().mean() / accumulation).backward()
        if i % accumulation == accumulation - 1:
            opt.step()
            updates += 1
            if zero_first:
                opt.zero_grad(set_to_none=True)
            if on_update is not None:
                on_update(updates)
            if not zero_first:
                opt.zero_grad(set_to_none=True)


@pytest.mark.parametrize("every", [1, 2])
def test_attach_equals_the_plain_call_under_gradient_accumulation(tmp_path, every):
    data = batches(12)
    # Plain: log the initial weights before training (step 0), then after each update k at step k.
    plain = small()
    opt = torch.optim.Adam(plain.parameters(), lr=0.05)
    with SummaryWriter(str(tmp_path / "plain")) as writer:
        tracker = LayerDynamics(plain, writer, histogram_every=None, rwc="both", groups={"all": ".*"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no gradient before training: its own warning
            tracker.log(0)
        accumulate_and_train(plain, opt, data, 3, lambda k: k % every == 0 and tracker.log(k))
    # Attached: zero_grad right after step, where a plain call would see no gradient.
    attached = small()
    opt = torch.optim.Adam(attached.parameters(), lr=0.05)
    with SummaryWriter(str(tmp_path / "attached")) as writer:
        tracker = LayerDynamics(attached, writer, histogram_every=None, rwc="both", groups={"all": ".*"})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            hooks = tracker.attach(opt, every=every, start=1)
            accumulate_and_train(attached, opt, data, 3, zero_first=True)
        hooks.detach()
    want = values_by_step(str(tmp_path / "plain"))
    got = values_by_step(str(tmp_path / "attached"))
    # One log per update (4 updates of 3 micro-batches), none per micro-batch.
    assert sorted(got) == [k for k in range(1, 5) if k % every == 0]
    for step, values in got.items():
        assert values.keys() == want[step].keys()
        for key, value in values.items():
            other = want[step][key]
            assert (math.isnan(value) and math.isnan(other)) or value == other, (step, key)
        assert not math.isnan(values[("grad_norm", "0")]) and values[("grad_norm", "0")] > 0


def test_gradients_are_read_before_the_step_changes_them(tmp_path):
    """Nesterov SGD adds the momentum into ``p.grad`` inside the step: attached, grad_norm is the
    norm of the gradient backward left, computed here in float64 before the step."""
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, foreach=True)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.attach(opt)
    expected = {}
    for step, x in enumerate(batches(4)):
        opt.zero_grad()
        model(x).square().mean().backward()
        expected[step] = math.sqrt(sum(float(p.grad.double().square().sum()) for p in model[0].parameters()))
        opt.step()
        after = math.sqrt(sum(float(p.grad.double().square().sum()) for p in model[0].parameters()))
    assert after != pytest.approx(expected[3], rel=1e-3)  # the step did change the gradients
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    for step, norm in expected.items():
        assert logged[step][("grad_norm", "0")] == pytest.approx(norm, rel=1e-6)


def test_first_update_is_measured_against_the_weights_before_it(tmp_path):
    model = small()
    before = [p.detach().clone() for p in model[2].parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.attach(opt)
    model(batches(1)[0]).square().mean().backward()
    opt.step()
    tracker.flush()
    after = [p.detach() for p in model[2].parameters()]
    diff = sum(float((a.double() - b.double()).square().sum()) for a, b in zip(after, before))
    prev_l1 = sum(float(b.double().abs().sum()) for b in before)
    l1 = sum(float((a.double() - b.double()).abs().sum()) for a, b in zip(after, before))
    logged = values_by_step(str(tmp_path))[0]
    assert logged[("update_size", "2")] == pytest.approx(math.sqrt(diff), rel=1e-5)
    assert logged[("distance_from_init", "2")] == pytest.approx(math.sqrt(diff), rel=1e-5)
    assert logged[("rwc", "2")] == pytest.approx(l1 / prev_l1, rel=1e-5)


def test_a_closure_computes_the_gradients_inside_the_step(tmp_path):
    """LBFGS (and Lightning) pass a closure that runs backward inside ``step``: the gradients are
    read after it, not before."""
    model = small()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=1)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.attach(opt)
    x = batches(1)[0]
    seen = []

    def closure():
        opt.zero_grad()
        loss = model(x).square().mean()
        loss.backward()
        seen.append(math.sqrt(sum(float(p.grad.double().square().sum()) for p in model[2].parameters())))
        return loss

    opt.zero_grad(set_to_none=True)  # nothing before the step
    for _ in range(2):
        opt.step(closure)
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    assert sorted(logged) == [0, 1]
    assert logged[0][("grad_norm", "2")] == pytest.approx(seen[0], rel=1e-6)
    assert logged[1][("grad_norm", "2")] == pytest.approx(seen[-1], rel=1e-6)


def test_a_step_the_grad_scaler_skips_is_not_logged(tmp_path):
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    tracker.attach(opt)
    for i, x in enumerate(batches(4)):
        opt.zero_grad()
        scaler.scale(model(x).square().mean()).backward()
        if i == 1:
            model[0].weight.grad[0, 0] = math.inf  # an overflow: the scaler skips this step
        scaler.step(opt)
        scaler.update()
    tracker.flush()
    # Four iterations, three updates: steps count the updates that ran.
    assert sorted(values_by_step(str(tmp_path))) == [0, 1, 2]


def test_detach_removes_every_hook_and_plain_calls_are_refused_while_attached(tmp_path):
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pre, post = len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    with tracker.attach(opt):
        with pytest.raises(ValueError, match="attached to an optimizer"):
            tracker.log(0)
        model(batches(1)[0]).sum().backward()
        opt.step()
    assert (len(opt._optimizer_step_pre_hooks), len(opt._optimizer_step_post_hooks)) == (pre, post)
    opt.step()  # detached: not logged
    tracker.flush()
    assert sorted(values_by_step(str(tmp_path))) == [0]
    with pytest.raises(ValueError, match="every"):
        tracker.attach(opt, every=0)
    with pytest.raises(TypeError, match="optimizer"):
        tracker.attach(model)
    assert len(metric_events(str(tmp_path))) == 1
