"""The native kernel of the flat pass: the same sums as a float64 reference, the same values logged
as the eager pass, and the eager pass whenever it is off, missing or failing."""

import math
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from layerdyn_helpers import values_by_step
from tb_layerdyn import LayerDynamics
from tb_layerdyn.tracking import native


@pytest.fixture(scope="module")
def kernels():
    # scripts/setup.sh builds them; a machine without a C++ compiler cannot.
    if native.kernels() is None and native.build() is None:
        pytest.skip("the native kernels could not be built here (no C++ compiler?)")
    found = native.kernels()
    assert found is not None
    return found


def test_flat_block_sums_equal_a_float64_reference_per_block(kernels):
    gen = torch.Generator().manual_seed(0)
    blocks = 300  # several of parallel_for's grains of 64 blocks
    w, g, prev, init = (torch.randn(blocks * 256, generator=gen) for _ in range(4))
    out = torch.full((9, blocks), -1.0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        kernels.flat_block_sums(w, g, prev, init, out[:6])
        once = out[:6].clone()
        torch.set_num_threads(2)
        kernels.flat_block_sums(w, g, prev, init, out[:6])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(once, out[:6])  # fixed blocks: the same bits whatever the thread count
    by_block = [x.double().view(blocks, 256) for x in (w, g, prev, init)]
    w, g, prev, init = by_block
    want = torch.stack([
        (w * w).sum(1), (g * g).sum(1), ((w - prev) ** 2).sum(1), ((w - init) ** 2).sum(1),
        (w - prev).abs().sum(1), prev.abs().sum(1),
    ])
    np.testing.assert_allclose(out[:6].double().numpy(), want.numpy(), rtol=1e-6)
    assert (out[6:] == -1.0).all()  # nothing written past the six rows


def test_a_wrong_input_names_itself(kernels):
    rows = [torch.zeros(512) for _ in range(3)]
    with pytest.raises(RuntimeError, match="prev must be float32"):
        kernels.flat_block_sums(rows[0], rows[1], torch.zeros(512, dtype=torch.float64), rows[2], torch.zeros(6, 2))
    with pytest.raises(RuntimeError, match="init has 256 elements"):
        kernels.flat_block_sums(*rows, torch.zeros(256), torch.zeros(6, 2))
    with pytest.raises(RuntimeError, match="whole blocks"):
        kernels.flat_block_sums(*(torch.zeros(300) for _ in range(4)), torch.zeros(6, 1))


class _Both(nn.Module):
    """Small parameters (the flat path), one above the flat bound (a chunked parameter) and a
    channels_last convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3).to(memory_format=torch.channels_last)
        self.big = nn.Linear(144, 512)  # 73,728 weights
        self.out = nn.Linear(512, 3)

    def forward(self, x):
        return self.out(F.relu(self.big(F.relu(self.conv(x)).flatten(1)[:, :144])))


def _log(tmp_path, name, monkeypatch, enabled, steps=6, before_log=None, **options):
    monkeypatch.setenv(native.ENV, "1" if enabled else "0")
    torch.manual_seed(0)
    model = _Both()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    tracker = LayerDynamics(model, str(tmp_path / name), histogram_every=None, sketches=False, **options)
    gen = torch.Generator().manual_seed(1)
    for step in range(steps):
        x = torch.randn(8, 1, 8, 8, generator=gen).to(memory_format=torch.channels_last)
        F.cross_entropy(model(x), torch.randint(0, 3, (8,), generator=gen)).backward()
        opt.step()
        if before_log is not None:
            before_log(step, tracker)
        tracker.log(step)
        opt.zero_grad()
    tracker.flush()
    return tracker, values_by_step(str(tmp_path / name))


def test_the_native_pass_logs_the_eager_values(kernels, tmp_path, monkeypatch):
    tracker, fast = _log(tmp_path, "native", monkeypatch, True)
    assert tracker._reducer._native is not None and tracker._reducer._native_args is not None
    assert tracker._reducer._chunked_params  # the large layer stays on the eager chunked path
    eager_tracker, eager = _log(tmp_path, "eager", monkeypatch, False)
    assert eager_tracker._reducer._native is None
    assert sorted(fast) == sorted(eager) == list(range(6))
    for step in eager:
        assert sorted(fast[step]) == sorted(eager[step])
        for key, want in eager[step].items():
            got = fast[step][key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5, abs=1e-12), key


def test_the_elementwise_variant_and_fused_stay_off_the_native_kernels(kernels, tmp_path, monkeypatch):
    tracker, _ = _log(tmp_path, "both", monkeypatch, True, steps=2, rwc="both")
    assert tracker._reducer._native is None


def test_missing_or_unloadable_kernels_leave_the_pass_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    assert native.kernels() is None
    directory = native.build_dir()
    os.makedirs(directory)
    with open(native._library_path(directory), "wb") as broken:
        broken.write(b"not a shared library")
    native._loaded.pop(directory, None)
    assert native.kernels() is None
    monkeypatch.setenv(native.ENV, "0")
    assert not native.enabled()


def test_a_failing_kernel_warns_once_and_the_values_stay_right(kernels, tmp_path, monkeypatch):
    class Failing:
        def flat_block_sums(self, *args):
            raise RuntimeError("simulated failure")

    _, eager = _log(tmp_path, "eager", monkeypatch, False)

    def break_at_2(step, tracker):
        if step == 2:
            tracker._reducer._native = Failing()

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _, logged = _log(tmp_path, "failing", monkeypatch, True, before_log=break_at_2)
    failed = [w for w in seen if "native kernel" in str(w.message)]
    assert len(failed) == 1 and "simulated failure" in str(failed[0].message)
    for step in eager:
        for key, want in eager[step].items():
            got = logged[step][key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5, abs=1e-12), key
