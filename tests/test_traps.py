"""The traps of issue 11, each with the test that would have caught it: gradients zeroed before
the call, steps that go backwards or overflow, several models on one writer, I/O that fails."""

import contextlib
import math
import os
import subprocess
import warnings

import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import metric_events, values_by_step
from tb_layerdyn import LayerDynamics, log_layer_dynamics
from tb_layerdyn.tracking.guards import NoGradientWarning, StepOrderWarning


def small(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def step(model, opt):
    model(torch.randn(6, model[0].in_features)).square().mean().backward()
    opt.step()


def caught(category, run):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        run()
    return [w for w in seen if issubclass(w.category, category)]


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_before_the_call_warns_once_naming_both_fixes(tmp_path, set_to_none):
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)

    def train(calls, zero_first):
        for i in calls:
            opt.zero_grad(set_to_none=set_to_none)
            step(model, opt)
            if zero_first:
                opt.zero_grad(set_to_none=set_to_none)
            tracker.log(i)

    assert caught(NoGradientWarning, lambda: train(range(2), zero_first=False)) == []
    warned = caught(NoGradientWarning, lambda: train(range(2, 5), zero_first=True))
    assert len(warned) == 1
    message = str(warned[0].message)
    assert "zero_grad()" in message and "after optimizer.step()" in message and "attach(optimizer)" in message
    assert warned[0].filename == __file__
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    grad = logged[3][("grad_norm", "0")]
    assert (math.isnan(grad) if set_to_none else grad == 0.0)


def test_initial_weights_logged_before_training_do_not_warn(tmp_path):
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)

    def train():
        tracker.log(0)  # before any backward: the initial weights
        for i in range(1, 4):
            step(model, opt)
            tracker.log(i)
            opt.zero_grad()

    assert caught(NoGradientWarning, train) == []


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_before_every_call_warns_by_the_second_call(tmp_path, set_to_none):
    model = small()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    calls = []

    def train():
        for i in range(4):
            step(model, opt)
            opt.zero_grad(set_to_none=set_to_none)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                tracker.log(i)
            calls.append([w for w in seen if issubclass(w.category, NoGradientWarning)])

    train()
    # Zeros exist only after a backward pass, so they warn at once; no gradient at all at the
    # first call may be the initial weights, so that warns at the next call that finds none.
    warned_at = [i for i, found in enumerate(calls) if found]
    assert warned_at == ([1] if set_to_none else [0])


def test_a_frozen_model_never_warns(tmp_path):
    frozen = small().requires_grad_(False)
    tracker = LayerDynamics(frozen, str(tmp_path), histogram_every=None)
    assert caught(NoGradientWarning, lambda: [tracker.log(i) for i in range(3)]) == []


def test_steps_that_go_backwards_warn_once_before_anything_moves(tmp_path):
    model = small()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGradientWarning)
        for s in (0, 3, 5, 6):
            tracker.log(s)
        warned = caught(StepOrderWarning, lambda: [tracker.log(0), tracker.log(1), tracker.log(1)])
    assert len(warned) == 1
    assert "steps >= 0" in str(warned[0].message) and "global step" in str(warned[0].message)
    # Out of an event's int64 range: refused before the snapshots move, so nothing is lost.
    model[0].weight.data.add_(1.0)
    with pytest.raises(ValueError, match="2\\*\\*63"):
        tracker.log(2**63)
    tracker.log(7)
    tracker.flush()
    logged = values_by_step(str(tmp_path))
    # The update since step 1 is all in step 7's value: the refused call moved nothing.
    assert logged[7][("update_size", "0")] == pytest.approx(math.sqrt(12), rel=1e-5)


def test_named_models_on_one_writer_are_kept_apart(tmp_path):
    generator, discriminator = small(0), small(1)
    with SummaryWriter(str(tmp_path)) as writer:
        for net, name in ((generator, "generator"), (discriminator, "discriminator")):
            tracker = LayerDynamics(net, writer, name=name, histogram_every=None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NoGradientWarning)
                tracker.log(0)
    events = metric_events(str(tmp_path))
    assert sorted(content["model"] for _, content, _, _ in events) == ["discriminator", "generator"]
    for _, content, _, values in events:
        net = generator if content["model"] == "generator" else discriminator
        norm = float(torch.cat([p.detach().flatten() for p in net[0].parameters()]).double().norm())
        assert values[0][content["metrics"].index("weight_norm"), 0] == pytest.approx(norm, rel=1e-6)


def test_a_second_unnamed_model_on_one_run_directory_is_refused(tmp_path):
    first, second = small(0), small(1)
    writer = SummaryWriter(str(tmp_path))
    keep = LayerDynamics(first, writer)
    with pytest.raises(ValueError, match="name="):
        LayerDynamics(second, str(tmp_path))  # another writer object, the same directory
    with pytest.raises(ValueError, match="one tracker"):
        LayerDynamics(first, writer)
    LayerDynamics(second, writer, name="ema")  # named: kept apart
    del keep
    LayerDynamics(second, writer)  # the first tracker is gone: free again
    writer.close()


def test_descriptions_and_names_in_the_layout(tmp_path):
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.Flatten(), nn.LazyLinear(5))
    model(torch.zeros(1, 1, 8, 8))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoGradientWarning)
        log_layer_dynamics(str(tmp_path), model, 0, name="student")
    from tb_layerdyn.tracking import sink

    sink._close_owned()  # a logdir path's writer flushes at exit: close it now
    (content,) = [c for _, c, _, _ in metric_events(str(tmp_path))]
    assert content["model"] == "student"
    assert content["descriptions"] == ["Conv2d 1→6 3×3", "Linear 216→5"]


@contextlib.contextmanager
def mounted_tmpfs(path, options):
    os.makedirs(path, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def train_logging(tracker, model, steps):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for s in steps:
        opt.zero_grad()
        step(model, opt)
        tracker.log(s)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # TensorBoard's thread
def test_a_full_disk_warns_once_and_training_goes_on(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "size=48k") as disk:
        model = nn.Sequential(nn.Linear(64, 64), nn.Linear(64, 2))
        tracker = LayerDynamics(model, str(disk / "run"), histogram_every=1)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            train_logging(tracker, model, range(40))
            tracker.flush()
        stopped = [w for w in seen if "stop being logged" in str(w.message)]
        assert len(stopped) == 1 and "No space left" in str(stopped[0].message)
        assert stopped[0].filename == __file__
        assert torch.isfinite(model[0].weight).all()  # trained to the end


def test_a_read_only_logdir_warns_once_and_training_goes_on(tmp_path):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=64k") as read_only:
        model = small()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            tracker = LayerDynamics(model, str(read_only / "run"), histogram_every=None)
            train_logging(tracker, model, range(3))
            tracker.flush()
        stopped = [w for w in seen if "stop being logged" in str(w.message)]
        assert len(stopped) == 1 and "Read-only" in str(stopped[0].message)
