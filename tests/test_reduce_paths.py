"""The reducer's flat and chunked paths against plain float64 sums, alone and mixed in one layer."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from layerdyn_helpers import reference_layer_sums
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import metrics
from tb_layerdyn.tracking.reduce import Reducer


def mixed_model():
    """Layers of every path: small ones (flat), a channels_last conv, a layer whose weight is
    large (chunked, in several chunks below) and whose bias is small (flat), a layer without
    gradients, and an fp16 layer (copied to fp32 before reducing)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3).to(memory_format=torch.channels_last),
        nn.Linear(8, 300),
        nn.Linear(300, 200),
        nn.Linear(200, 5),
        nn.Linear(5, 5).half(),
    )
    return model


@pytest.mark.parametrize("flat_max_numel", [0, 1 << 15, 1 << 20])
def test_sums_match_reference_on_every_path(flat_max_numel):
    model = mixed_model()
    found = layers_mod.find_layers(model)
    with torch.no_grad():
        model[1].weight[:3] = 0.0  # zero previous weights: counted, left out of the ratio
    reducer = Reducer(elementwise=True, chunk=20_000, flat_max_numel=flat_max_numel)
    reducer.prepare(found, [True] * len(found))

    def snapshot():
        return {name: p.detach().clone() for layer in found for name, p in layer.params}

    init = prev = snapshot()
    gen = torch.Generator().manual_seed(1)
    for step in range(3):
        with torch.no_grad():
            for i, p in enumerate(model.parameters()):
                if i != 7:  # model[3].bias never moves: a frozen tensor inside a moving layer
                    p.add_(torch.randn(p.shape, generator=gen).to(p.dtype) * 0.01)
        for p in list(model.parameters())[:-2]:  # the fp16 layer has no gradient
            p.grad = torch.randn(p.shape, generator=gen)
        logged = reducer.layer_sums(reducer.to_host(reducer.reduce())).copy()
        expected = reference_layer_sums(found, prev, init)
        np.testing.assert_allclose(logged, expected, rtol=2e-5, atol=1e-6, err_msg=f"step {step}")
        prev = snapshot()


def test_nan_in_a_flat_layer_stays_in_that_layer():
    model = mixed_model()
    found = layers_mod.find_layers(model)
    reducer = Reducer(elementwise=True)
    reducer.prepare(found, [True] * len(found))
    with torch.no_grad():
        model[3].bias[0] = math.nan
    logged = reducer.layer_sums(reducer.to_host(reducer.reduce()))
    bad = metrics.nonfinite_columns(logged)
    assert bad.tolist() == [False, False, False, True, False]


def test_kept_snapshots_survive_a_rebuild():
    model = mixed_model()
    found = layers_mod.find_layers(model)
    reducer = Reducer()
    reducer.prepare(found, [True] * len(found))
    before = {name: t.clone() for name, t in reducer.initial_weights().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    reducer.reduce()
    # A rebuild that keeps every layer (e.g. the forward order became known) keeps the snapshots:
    # the initial ones, and the previous ones the last call left.
    reducer.prepare(found, [False] * len(found))
    after = reducer.initial_weights()
    assert all(torch.equal(before[name], after[name]) for name in before)
    logged = reducer.layer_sums(reducer.to_host(reducer.reduce()))
    assert logged[0, metrics.SUM_ABS_DIFF] == 0.0
    assert logged[0, metrics.SUM_SQ_INIT_DIFF] == pytest.approx(model[0].weight.numel(), rel=1e-5)


@pytest.mark.parametrize("flat_max_numel", [0, 1 << 16])
def test_gradients_in_any_layout_are_measured(flat_max_numel):
    """A sparse gradient (``nn.Embedding(sparse=True)``) and a gradient whose strides differ from
    its parameter's (a transposed one) give the same squared norms as the dense reference."""
    torch.manual_seed(0)
    model = nn.ModuleDict({"embed": nn.Embedding(50, 8, sparse=True), "proj": nn.Linear(8, 6)})
    found = layers_mod.find_layers(model)
    reducer = Reducer(flat_max_numel=flat_max_numel)
    reducer.prepare(found, [True] * len(found))
    model["embed"](torch.tensor([[1, 4, 4, 9]])).sum().backward()
    assert model["embed"].weight.grad.is_sparse
    model["proj"].weight.grad = torch.randn(8, 6).t()  # (6, 8), column-major
    assert not model["proj"].weight.grad.is_contiguous()
    model["proj"].bias.grad = torch.randn(6)
    logged = reducer.layer_sums(reducer.to_host(reducer.reduce()))

    def square(grad):
        return float((grad.to_dense().double() ** 2).sum())

    expected = [
        square(model["embed"].weight.grad),
        square(model["proj"].weight.grad) + square(model["proj"].bias.grad),
    ]
    assert [layer.name for layer in found] == ["embed", "proj"]
    np.testing.assert_allclose(logged[:, metrics.SUM_SQ_GRAD], expected, rtol=1e-5)
    assert reducer.has_grad(found).tolist() == [True, True]


@pytest.mark.parametrize("threads", [1, 2])
def test_default_chunks_follow_the_thread_count_and_keep_the_sums(threads):
    """On CPU a large parameter is cut into chunks of CPU_CHUNK_PER_THREAD elements per thread
    (the size that keeps a chunk's tensors in each core's L2); a remainder chunk included, the
    sums are those of the whole tensor."""
    from tb_layerdyn.tracking.reduce import CPU_CHUNK_PER_THREAD

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(400, 430), nn.Linear(430, 3))  # 172,000-element weight
        found = layers_mod.find_layers(model)
        reducer = Reducer(elementwise=True, flat_max_numel=0)
        reducer.prepare(found, [True] * len(found))
        weight = model[0].weight
        chunk = CPU_CHUNK_PER_THREAD * threads
        entry = next(e for e in reducer._chunked_params if e.param is weight)
        assert [c[0].numel() for c in entry.chunks] == [
            min(chunk, weight.numel() - start) for start in range(0, weight.numel(), chunk)
        ]
        init = {name: p.detach().clone() for layer in found for name, p in layer.params}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape) * 0.01)
                p.grad = torch.randn(p.shape)
        logged = reducer.layer_sums(reducer.to_host(reducer.reduce())).copy()
        np.testing.assert_allclose(logged, reference_layer_sums(found, init, init), rtol=2e-5, atol=1e-6)
    finally:
        torch.set_num_threads(before)
