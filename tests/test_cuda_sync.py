"""On CUDA the logging call never waits for the device; skipped where there is no CUDA device.

``torch.cuda.set_sync_debug_mode("error")`` makes every operation that synchronizes the host with
the device raise (``.item()``, a copy into pageable memory, a stream or device synchronize). The
call's sums travel to pinned host memory behind the device's work and are written at a later call
or at ``flush()``; histograms, which must copy, sync on their own steps only.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter

import tb_layerdyn
from layerdyn_helpers import reference_layer_sums
from tb_layerdyn import LayerDynamics
from demo.models import FunctionalLeNet5 as LeNet
from tb_layerdyn.format import sketches
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _train_step(model, opt, gen):
    x = torch.randn(64, 1, 32, 32, generator=gen).cuda()
    y = torch.randint(0, 10, (64,), generator=gen).cuda()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


def _reference(model, granularity, prev, init):
    """Layer names and the obvious float64 sums of a CPU copy of ``model`` (gradients included)."""
    cpu = copy.deepcopy(model).cpu()
    for p, q in zip(cpu.parameters(), model.parameters()):
        p.grad = None if q.grad is None else q.grad.detach().cpu()
    found = layers_mod.find_layers(cpu, granularity=granularity)
    return [lay.name for lay in found], reference_layer_sums(found, prev, init)


def _without_sync(fn):
    torch.cuda.set_sync_debug_mode("error")
    try:
        fn()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("granularity", ["layer", "parameter"])
def test_the_call_never_synchronizes_and_every_step_is_written(tmp_path, granularity):
    torch.manual_seed(0)
    model = LeNet().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    writer = SummaryWriter(str(tmp_path / "run"))
    tracker = LayerDynamics(
        model, writer, histogram_every=5, rwc="both", granularity=granularity, sketch_every=1
    )
    steps = range(12)
    expected = {}
    prev = init = None
    for step in steps:
        _train_step(model, opt, gen)
        # The obvious reference, in float64 on the host, before the call (outside the check).
        current = {n: p.detach().double().cpu() for n, p in model.named_parameters()}
        if init is None:
            init = prev = current
        expected[step] = _reference(model, granularity, prev, init)
        prev = current
        if step < 2 or step % 5 == 0:
            tracker.log(step)  # layers settle at the first calls; histograms copy on their steps
        else:
            _without_sync(lambda step=step: tracker.log(step))
    tracker.flush()
    writer.close()
    runs = tb_layerdyn.read(str(tmp_path), cache_dir=None)
    run = runs["run"]
    assert run.steps.tolist() == list(steps)
    # The weight sketches travel to the host behind the device's work too: every call's is
    # written, and the last one is the sketch of the last weights.
    (population,) = runs.populations()
    (member,) = population.members
    assert member.steps.tolist() == list(steps)
    row, start = member.rows(np.array([steps[-1]]))[0], 0
    named = dict(model.named_parameters())
    for layer, dim in zip(population.layers, population.dims):
        shapes = [(n, tuple(p.shape)) for n, p in named.items() if n.startswith(layer + ".")]
        flat = np.concatenate([named[n].detach().double().cpu().numpy().reshape(-1) for n, _ in shapes])
        want = sketches.sketch_reference(flat, sketches.layer_seed(layer, shapes), dim)
        np.testing.assert_allclose(row[start:start + dim], want, rtol=1e-4, atol=1e-5)
        start += dim
    for i, step in enumerate(steps):
        order, sums = expected[step]
        values = metrics.compute(
            sums, has_previous=np.full(len(order), step > 0), has_grad=np.ones(len(order), bool), rwc="both"
        )
        names = metrics.metric_names("both")
        for m, metric in enumerate(names):
            got = run.metrics[metric][i, [run.layers.index(n) for n in order]]
            np.testing.assert_allclose(got, values[m], rtol=2e-4, atol=1e-7, err_msg=f"{metric} at {step}")


def test_calls_on_their_way_are_written_by_the_writers_close_and_by_dropping_the_tracker(tmp_path):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    for how in ("close", "drop"):
        model = LeNet().cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.05)
        writer = SummaryWriter(str(tmp_path / how))
        tracker = LayerDynamics(model, writer, histogram_every=None, pack=1)
        for step in range(4):
            _train_step(model, opt, gen)
            tracker.log(step)
        if how == "close":
            writer.close()
        else:
            del tracker
            writer.close()
    runs = tb_layerdyn.read(str(tmp_path), cache_dir=None)
    assert {name: run.steps.tolist() for name, run in runs.items()} == {"close": [0, 1, 2, 3], "drop": [0, 1, 2, 3]}


def test_logging_on_cuda_leaves_training_unchanged():
    def train(log, tmp):
        torch.manual_seed(0)
        model = LeNet().cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        gen = torch.Generator().manual_seed(0)
        tracker = LayerDynamics(model, SummaryWriter(tmp), histogram_every=None) if log else None
        for step in range(5):
            _train_step(model, opt, gen)
            if tracker is not None:
                tracker.log(step)
        state = torch.cuda.get_rng_state()
        return [p.detach().cpu() for p in model.parameters()], state

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        logged, rng_logged = train(True, tmp)
    plain, rng_plain = train(False, None)
    for a, b in zip(logged, plain):
        assert torch.equal(a, b)
    assert torch.equal(rng_logged, rng_plain)
