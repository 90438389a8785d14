"""Events written by the tracker, read back exactly through both TensorBoard loaders."""

import numpy as np
import json
import pytest
import torch
from tensorboard import context
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
from tensorboard.util import tensor_util
from torch.utils.tensorboard import SummaryWriter

from layerdyn_helpers import Zoo, expand_calls, train_step, zoo_batch
from tb_layerdyn.format import layer_metrics, sketches
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.plugin import in_process

STEPS = 5


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    torch.manual_seed(0)
    model = Zoo()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(0)
    writer = SummaryWriter(str(root / "run"))
    writer.add_scalar("loss", 1.5, 0)
    tracker = LayerDynamics(model, writer, rwc="both", histogram_every=None, sketch_every=1)
    for step in range(STEPS):
        train_step(model, opt, zoo_batch(gen))
        tracker.log(step)
    writer.close()
    return root


def raw_events(run_dir):
    """Tag -> {step: float32 array}, one entry per call, straight from the event file records."""
    found = {}
    for path in sorted(run_dir.iterdir()):
        for event in event_file_loader.EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag.startswith(metadata.TAG_PREFIX):  # metrics and weight sketches
                    found.setdefault(value.tag, []).append((event.step, tensor_util.make_ndarray(value.tensor)))
    return {tag: dict(calls) for tag, calls in expand_calls(found).items()}


def provider_tensors(provider):
    ctx = context.RequestContext()
    listing = provider.list_tensors(ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME)
    tags = sorted(listing["run"])
    data = provider.read_tensors(
        ctx, experiment_id="", plugin_name=metadata.PLUGIN_NAME, downsample=1000,
        run_tag_filter=None,
    )
    served = {tag: [(d.step, d.numpy) for d in data["run"][tag]] for tag in tags}
    out = {tag: dict(calls) for tag, calls in expand_calls(served).items()}
    contents = {
        tag: json.loads(listing["run"][tag].plugin_content)
        for tag in tags
        if not tag.endswith(layer_metrics.STEPS_SUFFIX)
    }
    return out, contents


def check_exact(raw, served):
    assert sorted(served) == sorted(raw)
    for tag, per_step in raw.items():
        assert sorted(served[tag]) == sorted(per_step)
        for step, array in per_step.items():
            got = np.asarray(served[tag][step])
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, array)


def test_python_loader_reads_exact_values(logdir):
    raw = raw_events(logdir / "run")
    for kind in (layer_metrics, sketches):
        assert sum(len(v) for t, v in raw.items() if t.startswith(kind.TAG_PREFIX)) == STEPS
    multiplexer = plugin_event_multiplexer.EventMultiplexer(tensor_size_guidance={metadata.PLUGIN_NAME: 0})
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    served, contents = provider_tensors(MultiplexerDataProvider(multiplexer, str(logdir)))
    check_exact(raw, served)
    for content in contents.values():
        if content["kind"] == layer_metrics.KIND:
            assert content["metrics"][0] == "rwc" and content["rwc"] == "both"
        else:
            assert content["kind"] == sketches.KIND and content["scheme"] == sketches.SCHEME
    assert "loss" in multiplexer.Runs()["run"]["tensors"]  # the user's own scalar is untouched


def test_rust_loader_reads_exact_values(logdir):
    with in_process.data_server(logdir, samples_per_plugin={metadata.PLUGIN_NAME: 0}) as provider:
        served, contents = provider_tensors(provider)
    check_exact(raw_events(logdir / "run"), served)
    for tag, content in contents.items():
        kind = layer_metrics if content["kind"] == layer_metrics.KIND else sketches
        assert tag == kind.tag({k: v for k, v in content.items() if k not in ("kind", "version")})
