"""Pictures written by the tracker, served by both TensorBoard loaders, decode to their documented size.

The logdir is served as ``tensorboard --logdir`` would serve it (``plugin.in_process``, the plugin
loader's flags applied); each picture is fetched blob by blob through the data provider, the way a
route would, and must equal what the event file holds.
"""

import json
import time

import numpy as np
import pytest
import torch
from tensorboard import context
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

from picture_helpers import LeNet, picture_events
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import envelope, png
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.plugin import in_process

STEPS = 11
EVERY = 3
PICTURE_STEPS = [0, 3, 6, 9]


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    torch.manual_seed(0)
    model = LeNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    writer = SummaryWriter(str(root / "run"))
    tracker = LayerDynamics(model, writer, histogram_every=None, images_every=EVERY, probe=x[:1])
    for step in range(STEPS):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        tracker.log(step)
        opt.zero_grad()
    writer.close()
    return root


def served_pictures(provider, expected_tags, timeout=60.0):
    """``{tag: (content, {step: [blob bytes]})}`` read through a data provider, waiting until
    every expected tag has every picture step (the Rust server loads in the background)."""
    ctx = context.RequestContext()
    deadline = time.monotonic() + timeout
    while True:
        listing = provider.list_blob_sequences(ctx, experiment_id="", plugin_name=envelope.PLUGIN_NAME)
        tags = listing.get("run", {})
        ready = set(tags) >= set(expected_tags)
        if ready:
            sequences = provider.read_blob_sequences(
                ctx, experiment_id="", plugin_name=envelope.PLUGIN_NAME, downsample=1000,
                run_tag_filter=None,
            )["run"]
            ready = all(len(sequences[tag]) == len(expected_tags[tag]) for tag in expected_tags)
        if ready:
            break
        assert time.monotonic() < deadline, f"the loader served {sorted(tags)} only"
        time.sleep(0.2)
    found = {}
    for tag in expected_tags:
        content = json.loads(tags[tag].plugin_content)
        frames = {
            datum.step: [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in datum.values]
            for datum in sequences[tag]
        }
        found[tag] = (content, frames)
    return found


@pytest.mark.parametrize("loader", in_process.LOADERS)
def test_both_loaders_serve_every_picture_at_its_documented_size(logdir, loader):
    written = picture_events(str(logdir / "run"))
    assert sorted(written) == sorted(payload.PICTURES)
    raw = {}
    for frames in written.values():
        for step, parsed, pictures in frames:
            raw.setdefault(payload.tag(_content(parsed)), {})[step] = pictures
    assert [sorted(steps) for steps in raw.values()].count(PICTURE_STEPS) == 4  # updates start at 3
    # TensorBoard's own loaders keep one sample per tag of this plugin by default (the plugin
    # serves from its store); kept in full here, they must decode every picture record.
    keep_all = ["--samples_per_plugin", "layer_dynamics=0"]
    with in_process.serve(str(logdir), loader, flags=keep_all) as served:
        got = served_pictures(served.data_provider, {tag: steps for tag, steps in raw.items()})
    for tag, (content, frames) in got.items():
        parsed = payload.parse_layout(content)
        assert sorted(frames) == sorted(raw[tag]), tag  # every picture step is kept
        for step, blobs in frames.items():
            assert len(blobs) == parsed.elements
            facts = json.loads(blobs[0])["facts"]
            for index, picture in enumerate(raw[tag][step]):
                for p, plane in enumerate(picture.planes):
                    blob = blobs[1 + index * len(parsed.planes) + p]
                    assert blob == plane.png
                    assert png.decode(blob).shape == parsed.shapes[index]
                    assert facts[index * len(parsed.planes) + p] == [*plane.interval, *plane.quantiles]
                drawn = payload.picture_rgb(parsed, index, picture)
                assert drawn.shape == parsed.drawn_shape(index) + (3,)


def _content(parsed):
    """The content dict a ``Layout`` was parsed from (without ``kind`` and ``version``)."""
    content = {
        "picture": parsed.picture,
        "layers": list(parsed.layers),
        "shapes": [list(s) for s in parsed.shapes],
        "tiles": [list(t) for t in parsed.tiles],
        "cells": list(parsed.cells),
        "descriptions": list(parsed.descriptions),
        "planes": list(parsed.planes),
        "maps": list(parsed.maps),
        "quantiles": list(parsed.quantiles),
    }
    if parsed.model is not None:
        content["model"] = parsed.model
    return content


def test_lenet_pictures_have_the_documented_sizes(logdir):
    """LeNet-5's pictures as the README lists them."""
    frames = picture_events(str(logdir / "run"))
    _, weights, _ = frames["weights"][0]
    assert dict(zip(weights.layers, weights.shapes)) == {
        "conv1": (30, 5), "conv2": (80, 30), "fc1": (30, 100), "fc2": (42, 60), "fc3": (10, 84),
    }
    assert dict(zip(weights.layers, (weights.drawn_shape(i) for i in range(5)))) == {
        "conv1": (35, 5), "conv2": (95, 35), "fc1": (30, 100), "fc2": (42, 60), "fc3": (10, 84),
    }
    _, activations, _ = frames["activations"][0]
    assert dict(zip(activations.layers, activations.shapes)) == {
        "conv1": (28, 42), "conv2": (40, 40), "fc1": (1, 120), "fc2": (1, 84), "fc3": (1, 10),
    }
    assert np.prod(activations.shapes, axis=1).max() <= 4096
