"""The TensorBoard histograms the tracker writes, read back by both loaders against numpy."""

import contextlib

import numpy as np
import pytest
import torch
from tensorboard import context
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import LayerDynamics
from tb_layerdyn.plugin import in_process
from tb_layerdyn.tracking.sink import HISTOGRAM_BUCKETS


def reference(values):
    """min, max, count, sum, sum of squares and equal-width bucket counts, with numpy."""
    v = values.detach().double().numpy().ravel()
    counts, _ = np.histogram(v, bins=np.linspace(v.min(), v.max(), HISTOGRAM_BUCKETS + 1))
    return v.min(), v.max(), v.size, v.sum(), (v * v).sum(), counts


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("hist")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(30, 20), nn.Linear(20, 1))
    with torch.no_grad():
        model[1].bias.fill_(0.25)  # one distinct value: a single bucket
    model(torch.randn(8, 30)).sum().backward()
    writer = SummaryWriter(str(root / "run"))
    LayerDynamics(model, writer, histogram_every=1).log(0)
    writer.close()
    return root, model


def expected_tensors(model):
    expected = {f"weights/{n}": p for n, p in model.named_parameters()}
    expected.update({f"gradients/{n}": p.grad for n, p in model.named_parameters()})
    return expected


def test_python_loader_reads_the_histograms(logged):
    root, model = logged
    acc = event_accumulator.EventAccumulator(str(root / "run"), size_guidance={event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    expected = expected_tensors(model)
    assert sorted(acc.Tags()["histograms"]) == sorted(expected)
    for tag, values in expected.items():
        (event,) = acc.Histograms(tag)
        histo = event.histogram_value
        low, high, num, total, squares, counts = reference(values)
        assert (histo.min, histo.max, histo.num) == (pytest.approx(low), pytest.approx(high), num)
        assert histo.sum == pytest.approx(total, abs=1e-9) and histo.sum_squares == pytest.approx(squares)
        assert sum(histo.bucket) == num
        if low == high:
            assert list(histo.bucket) == [num]
        else:
            assert histo.bucket_limit[-1] == pytest.approx(high)
            np.testing.assert_array_equal(np.asarray(histo.bucket), counts)


def rust_provider(root):
    return in_process.data_server(root, samples_per_plugin={"histograms": 0})


@contextlib.contextmanager
def python_provider(root):
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={"histograms": 0})
    multiplexer.AddRunsFromDirectory(str(root))
    multiplexer.Reload()
    yield MultiplexerDataProvider(multiplexer, str(root))


@pytest.mark.parametrize("make_provider", [python_provider, rust_provider])
def test_both_loaders_serve_the_buckets(logged, make_provider):
    root, model = logged
    with make_provider(root) as provider:
        data = provider.read_tensors(
            context.RequestContext(), experiment_id="", plugin_name="histograms", downsample=10,
            run_tag_filter=None,
        )
    expected = expected_tensors(model)
    assert sorted(data["run"]) == sorted(expected)
    for tag, values in expected.items():
        low, high, num, _, _, counts = reference(values)
        buckets = np.asarray(data["run"][tag][0].numpy)
        assert buckets[:, 2].sum() == num, tag
        assert buckets[0, 0] == pytest.approx(low) and buckets[-1, 1] == pytest.approx(high), tag
        if low != high:
            # Empty buckets at both ends are dropped by the loaders; the inner counts are kept.
            nonzero = np.flatnonzero(counts)
            np.testing.assert_array_equal(buckets[:, 2], counts[nonzero[0] : nonzero[-1] + 1])
