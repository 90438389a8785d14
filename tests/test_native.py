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


def _layout(gen):
    """Weights laid out as reduce.py lays them: two layers, each padded to whole blocks, the first
    with a parameter that straddles a block boundary and a channels_last convolution."""
    weights = [
        torch.randn(300, generator=gen),  # blocks 0-1
        torch.randn(8, 4, 3, 3, generator=gen).to(memory_format=torch.channels_last),  # 288: blocks 1-2
        torch.randn(17, generator=gen),  # ends layer 0 in block 2 (pad 163)
        torch.randn(40, 64, generator=gen),  # layer 1: blocks 3-12
    ]
    places = [(0, 300), (300, 288), (588, 17), (768, 2560)]
    return weights, places, 768 + 2560


def _storage_order(t, like=None):
    """A tensor's elements in the order of the storage of ``like`` (itself by default), a tensor
    of the same shape."""
    like = t if like is None else like
    order = sorted(range(like.dim()), key=lambda d: -like.stride(d))
    return t.permute(*order).reshape(-1)


def _reference(weights, grads, places, n, prev, init):
    """The rows the eager pass would copy, and each block's six sums, in float64."""
    w_row, g_row = torch.zeros(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)
    for w, g, (offset, numel) in zip(weights, grads, places):
        w_row[offset:offset + numel] = _storage_order(w).double()
        if g is not None:
            # A gradient is copied element by element into its weight's layout.
            g_row[offset:offset + numel] = _storage_order(g, like=w).double()
    p, w0 = prev.double(), init.double()
    blocks = lambda x: x.view(-1, 256)  # noqa: E731
    want = torch.stack([
        (blocks(w_row) ** 2).sum(1), (blocks(g_row) ** 2).sum(1), (blocks(w_row - p) ** 2).sum(1),
        (blocks(w_row - w0) ** 2).sum(1), blocks(w_row - p).abs().sum(1), blocks(p).abs().sum(1),
    ])
    return w_row, g_row, want


def test_flat_pass_equals_a_float64_reference_per_block(kernels):
    gen = torch.Generator().manual_seed(0)
    weights, places, n = _layout(gen)
    grads = [
        torch.randn(300, generator=gen),
        torch.randn(8, 4, 3, 3, generator=gen),  # contiguous, its weight channels_last: copied first
        None,  # a missing gradient: zeros
        torch.randn(40, 64, generator=gen),
    ]
    prev, init = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    want_w, want_g, want = _reference(weights, grads, places, n, prev, init)
    sources = [g if g is not None else torch.zeros_like(w) for w, g in zip(weights, grads)]
    place_t = torch.tensor(places, dtype=torch.int64)
    blocks = n // 256
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            w_row, g_row = torch.full((n,), 7.0), torch.zeros(n)
            sums = torch.full((9 * blocks + 5,), -1.0)
            out = sums[5:].view(9, blocks)
            keep = torch.zeros_like(sums)
            totals = kernels.flat_pass(weights, sources, place_t, w_row, g_row, prev, init, out[:6], sums, keep)
            results.append((w_row, out.clone(), totals, keep))
    finally:
        torch.set_num_threads(threads)
    (w_row, out, totals, keep), (_, out_2, totals_2, _) = results
    assert torch.equal(out, out_2) and totals == totals_2  # the same bits at any thread count
    # The weights row: every weight in storage order, zeros in the pads (written over the 7s).
    assert torch.equal(w_row.double(), want_w)
    np.testing.assert_allclose(out[:6].double().numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    assert (out[6:] == -1.0).all()  # nothing written past the six rows
    np.testing.assert_allclose(totals, (want.sum().item(), want[1].sum().item()), rtol=1e-5)
    assert torch.equal(keep, torch.cat([torch.full((5,), -1.0), out.reshape(-1)]))  # the whole buffer


def test_flat_pass_reads_the_gradients_row_when_given_no_gradients(kernels):
    gen = torch.Generator().manual_seed(1)
    weights, places, n = _layout(gen)
    blocks = n // 256
    prev, init = torch.randn(n, generator=gen), torch.randn(n, generator=gen)
    g_row = torch.randn(n, generator=gen)
    g_row[605:768] = 0.0  # the pads hold zeros in every row
    out = torch.zeros(6, blocks)
    kernels.flat_pass(weights, [], torch.tensor(places), torch.zeros(n), g_row, prev, init, out, out, torch.empty(0))
    want = (g_row.double().view(-1, 256) ** 2).sum(1)
    np.testing.assert_allclose(out[1].double().numpy(), want.numpy(), rtol=1e-5)


@pytest.mark.parametrize("grads", ["given", "not read", "pre-hook"])
def test_chunked_pass_equals_a_float64_reference_per_chunk(kernels, grads):
    gen = torch.Generator().manual_seed(3)
    n, chunk = 5 * 1024 + 13, 1024  # a short last chunk whose tail is not a whole lane group
    w, g, prev, init = (torch.randn(n, generator=gen) for _ in range(4))
    old_prev = prev.clone()
    rows = torch.full((6, 12), -1.0)  # a sums row per chunk, two columns past the six
    columns = torch.tensor([3, 0, 7, 1, 5, 2])
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            prev_now, rows_now = old_prev.clone(), rows.clone()
            given = g if grads == "given" else torch.empty(0)
            # The rows lie inside a larger sums buffer, which the pass copies whole into keep.
            sums = torch.cat([torch.full((5,), 2.0), rows_now.reshape(-1)])
            rows_now = sums[5:].view(6, 12)
            keep = torch.zeros_like(sums)
            totals = kernels.chunked_pass(
                w, prev_now, init, rows_now, columns, chunk, given, grads != "pre-hook", sums, keep
            )
            results.append((prev_now, rows_now, totals, keep, sums))
    finally:
        torch.set_num_threads(threads)
    (prev_after, got, totals, keep, sums), (_, got_2, _, _, _) = results
    assert torch.equal(got, got_2)  # fixed chunks: the same bits at any thread count
    assert torch.equal(prev_after, w)  # the previous snapshot moved to the weights
    assert torch.equal(keep, sums)
    # The totals of what it left in its six columns (row 0's gradient column as it is then).
    written = got[:, columns].double()
    np.testing.assert_allclose(totals, (written.sum().item(), written[:, 1].sum().item()), rtol=1e-6)
    for c in range(6):
        a, z = c * chunk, min(n, (c + 1) * chunk)
        wd, gd, pd, id_ = (x[a:z].double() for x in (w, g, old_prev, init))
        want = [(wd ** 2).sum(), (gd ** 2).sum(), ((wd - pd) ** 2).sum(), ((wd - id_) ** 2).sum(),
                (wd - pd).abs().sum(), pd.abs().sum()]
        if grads != "given":
            want[1] = torch.tensor(-1.0 if grads == "pre-hook" and c == 0 else 0.0)
        np.testing.assert_allclose(got[c, columns].double().numpy(), torch.stack(want).numpy(), rtol=1e-5)
        untouched = [k for k in range(12) if k not in columns.tolist()]
        assert (got[c, untouched] == -1.0).all()


def test_a_wrong_input_names_itself(kernels):
    gen = torch.Generator().manual_seed(2)
    weights, places, n = _layout(gen)
    place_t = torch.tensor(places)
    rows = lambda: [torch.zeros(n) for _ in range(4)]  # noqa: E731
    out, none = torch.zeros(6, n // 256), torch.empty(0)

    def call(weights=weights, grads=(), places=place_t, rows_=None, out=out):
        w_row, g_row, prev, init = rows_ or rows()
        kernels.flat_pass(list(weights), list(grads), places, w_row, g_row, prev, init, out, out, none)

    with pytest.raises(RuntimeError, match="prev must be float32"):
        call(rows_=[torch.zeros(n), torch.zeros(n), torch.zeros(n, dtype=torch.float64), torch.zeros(n)])
    with pytest.raises(RuntimeError, match="init has 256 elements"):
        call(rows_=[torch.zeros(n), torch.zeros(n), torch.zeros(n), torch.zeros(256)])
    with pytest.raises(RuntimeError, match="whole blocks"):
        call(rows_=[torch.zeros(300) for _ in range(4)])
    with pytest.raises(RuntimeError, match="weight 2 must be a dense CPU float32 tensor of 17"):
        call(weights=weights[:2] + [torch.zeros(18)] + weights[3:])
    with pytest.raises(RuntimeError, match="ascending"):
        call(places=torch.tensor([(0, 300), (200, 288), (588, 17), (768, 2560)]))
    with pytest.raises(RuntimeError, match="one tensor per weight"):
        call(grads=[torch.zeros(300)])
    with pytest.raises(RuntimeError, match="gradient 3 has shape"):
        call(grads=[torch.zeros_like(w) for w in weights[:3]] + [torch.zeros(64, 40)])
    with pytest.raises(RuntimeError, match="out must be 6 rows"):
        call(out=torch.zeros(6, 3))
    w, cols = torch.zeros(1000), torch.tensor([0, 1, 2, 3, 4, 5])

    def chunked(rows, columns=cols, chunk=256, grad=none, sums=none, keep=none):
        kernels.chunked_pass(w, torch.zeros(1000), torch.zeros(1000), rows, columns, chunk, grad, True, sums, keep)

    with pytest.raises(RuntimeError, match="one CPU float32 sums row per chunk \\(4\\)"):
        chunked(torch.zeros(3, 9))
    with pytest.raises(RuntimeError, match="column 9 is outside"):
        chunked(torch.zeros(4, 9), columns=cols + 4)
    with pytest.raises(RuntimeError, match="grad has 999 elements"):
        chunked(torch.zeros(4, 9), grad=torch.zeros(999))
    with pytest.raises(RuntimeError, match="keep has 35 elements"):
        sums = torch.zeros(36)
        chunked(sums.view(4, 9), sums=sums, keep=torch.zeros(35))
    with pytest.raises(RuntimeError, match="multiple of 8"):
        chunked(torch.zeros(4, 9), chunk=250)


class _Both(nn.Module):
    """Small parameters (the flat path), two above the flat bound (the chunked path, three chunks
    each, the last one short) and a channels_last convolution."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3).to(memory_format=torch.channels_last)
        self.big = nn.Linear(144, 512)  # 73,728 weights
        self.big2 = nn.Linear(512, 161)  # 82,432 weights
        self.out = nn.Linear(161, 3)

    def forward(self, x):
        hidden = F.relu(self.big(F.relu(self.conv(x)).flatten(1)[:, :144]))
        return self.out(F.relu(self.big2(hidden)))


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
    chunked = tracker._reducer._chunked_params
    assert [entry.name for entry in chunked] == ["big.weight", "big2.weight"]
    assert all(entry.native_args is not None and len(entry.chunks) == 3 for entry in chunked)
    eager_tracker, eager = _log(tmp_path, "eager", monkeypatch, False)
    assert eager_tracker._reducer._native is None
    assert sorted(fast) == sorted(eager) == list(range(6))
    for step in eager:
        assert sorted(fast[step]) == sorted(eager[step])
        for key, want in eager[step].items():
            got = fast[step][key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5, abs=1e-12), key


@pytest.mark.parametrize("trouble", ["NaN in a chunked weight", "zero gradients"])
def test_the_native_totals_catch_what_the_steady_check_must(kernels, tmp_path, monkeypatch, trouble):
    """With chunked parameters the steady check reads the kernels' totals instead of summing the
    host buffer: a NaN in a large weight and an all-zero gradient still leave the steady path, so
    the call warns (as eager) and logs the same values."""

    def disturb(step, tracker):
        if step != 3:
            return
        model = tracker._model()
        if trouble == "zero gradients":
            for param in model.parameters():
                param.grad.zero_()
        else:
            with torch.no_grad():
                model.big2.weight[7, 11] = float("nan")

    logged, seen = {}, {}
    for enabled in (True, False):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tracker, logged[enabled] = _log(
                tmp_path, f"native-{enabled}", monkeypatch, enabled, before_log=disturb
            )
        seen[enabled] = sorted({str(w.message).split(";")[0].split(",")[0] for w in caught})
        if enabled:
            assert tracker._reducer._native is not None  # the kernels ran the whole time
    want = "hold NaN or Inf weights" if trouble.startswith("NaN") else "saw only zero gradients"
    assert any(want in message for message in seen[True]), seen[True]
    assert seen[True] == seen[False]
    for step, values in logged[False].items():
        for key, want in values.items():
            got = logged[True][step][key]
            assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5, abs=1e-12), key


def test_the_native_sketch_is_the_eager_sketch_bit_for_bit(kernels):
    from tb_layerdyn.tracking import layers, sketch

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last),  # read in reshape(-1) order
        nn.Flatten(),
        nn.Linear(8, 300),
        nn.Linear(300, 10).double(),  # read through a float32 copy, as the eager ops read it
    )
    found = layers.find_layers(model)
    capture = sketch.SketchCapture(64)
    assert capture._native is not None
    (native_sketch, _), = capture._sketch(found)
    buffer, total, entries = capture._plans[0]
    assert any(not p.is_contiguous() for _, p in entries)  # the channels_last convolution
    eager = capture._sketch_eager(buffer, total, entries).numpy()
    assert np.array_equal(native_sketch, eager)
    # And both are the sketch of the format's own reference, layer by layer.
    content = capture._content
    start = 0
    for lay, dim, seed in zip(found, content["dims"], content["seeds"]):
        values = torch.cat([p.detach().reshape(-1).double() for _, p in lay.params]).numpy()
        np.testing.assert_allclose(
            native_sketch[start:start + dim], sketch.payload.sketch_reference(values, seed, dim), rtol=1e-4, atol=1e-5
        )
        start += dim


def test_a_failing_sketch_kernel_warns_once_and_sketches_the_same(kernels):
    from tb_layerdyn.tracking import layers, sketch

    class Failing:
        def sketch_pass(self, *args):
            raise RuntimeError("simulated failure")

    torch.manual_seed(0)
    found = layers.find_layers(_Both())
    want = sketch.SketchCapture(64)._sketch(found)[0][0]
    capture = sketch.SketchCapture(64)
    capture._native = Failing()
    with pytest.warns(RuntimeWarning, match="native sketch kernel failed .*simulated failure") as caught:
        first = capture._sketch(found)[0][0]
        second = capture._sketch(found)[0][0]
    assert len([w for w in caught if "sketch kernel" in str(w.message)]) == 1
    assert np.array_equal(first, want) and np.array_equal(second, want)


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


@pytest.mark.parametrize("failing", ["flat_pass", "chunked_pass"])
def test_a_failing_kernel_warns_once_and_the_values_stay_right(kernels, tmp_path, monkeypatch, failing):
    class Failing:
        """The real kernels, but one fails at step 2: the flat pass, or the chunked pass of the
        second large parameter (after the first one's)."""

        calls = 0

        def flat_pass(self, *args):
            if failing == "flat_pass":
                raise RuntimeError("simulated failure")
            return kernels.flat_pass(*args)

        def chunked_pass(self, *args):
            Failing.calls += 1
            if Failing.calls == 2:
                raise RuntimeError("simulated failure")
            return kernels.chunked_pass(*args)

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
