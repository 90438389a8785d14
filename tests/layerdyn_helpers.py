"""Shared test pieces: a model with every kind of layer, a short training, reading events back."""

import numpy as np
import json
import torch
from tensorboard.backend.event_processing import event_accumulator
from torch import nn

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.tracking import metrics


class Zoo(nn.Module):
    """Conv, batchnorm, embedding, linear layers, a frozen layer, a tied weight and a
    parameter-free module, registered in an order that differs from the forward order."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv2d(1, 3, 3)
        self.bn = nn.BatchNorm2d(3)
        self.act = nn.ReLU()
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)
        self.block = nn.Sequential(nn.Linear(3, 8), nn.Linear(8, 4))
        self.head = nn.Linear(4, 10)
        self.head.weight = self.emb.weight

    def forward(self, images, tokens):
        h = self.act(self.bn(self.conv(images))).mean((2, 3))
        h = self.block(h) + self.emb(tokens).mean(1)
        return self.head(self.frozen(h))


# Layer -> its parameters, written out by hand: the tied head.weight belongs to emb only.
ZOO_LAYERS = {
    "emb": ["emb.weight"],
    "conv": ["conv.weight", "conv.bias"],
    "bn": ["bn.weight", "bn.bias"],
    "frozen": ["frozen.weight", "frozen.bias"],
    "block.0": ["block.0.weight", "block.0.bias"],
    "block.1": ["block.1.weight", "block.1.bias"],
    "head": ["head.bias"],
}
ZOO_FORWARD_ORDER = ["conv", "bn", "block.0", "block.1", "emb", "frozen", "head"]


def zoo_batch(generator):
    images = torch.randn(4, 1, 6, 6, generator=generator)
    tokens = torch.randint(0, 10, (4, 3), generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    return images, tokens, labels


def train_step(model, opt, batch):
    images, tokens, labels = batch
    loss = nn.functional.cross_entropy(model(images, tokens), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()


def expand_calls(per_tag):
    """Packed records turned into one entry per call, the way their format says (a slow,
    obvious reference for the readers): ``{tag: [(step, array)]}`` as a loader served them, the
    ``<tag>/steps`` tags among them, in; ``{tag: [(step, 2-D array)]}`` of the values tags out,
    with TensorBoard's rule applied to each record's first step (a step at or before the last
    one kept drops the calls kept from that step on)."""
    out = {}
    for tag, events in per_tag.items():
        if tag.endswith(layer_metrics.STEPS_SUFFIX):
            continue
        # A packed record's steps travel in the same event: pair them in the order served.
        steps_of = {}
        for step, steps in per_tag.get(tag + layer_metrics.STEPS_SUFFIX, []):
            steps_of.setdefault(step, []).append(steps)
        kept = []
        for step, array in events:
            array = np.asarray(array)
            if array.ndim == 3:
                calls = [int(s) for s in np.asarray(steps_of[step].pop(0)).reshape(-1)]
                assert calls[0] == step and len(calls) == len(array)  # version 3: the first
                pairs = list(zip(calls, array))
            else:
                pairs = [(step, array)]
            kept = [(s, a) for s, a in kept if s < pairs[0][0]] + pairs
        out[tag] = kept
    return out


def metric_events(logdir):
    """``[(tag, content, steps, values)]`` of the metrics tags, read with the Python loader;
    packed records are expanded into one entry per call (``expand_calls``)."""
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    served = {}
    for tag in sorted(acc.Tags()["tensors"]):
        if not tag.startswith(layer_metrics.TAG_PREFIX):
            continue
        served[tag] = [
            (
                e.step,
                np.frombuffer(
                    e.tensor_proto.tensor_content,
                    dtype=np.int64 if tag.endswith(layer_metrics.STEPS_SUFFIX) else np.float32,
                ).reshape([d.size for d in e.tensor_proto.tensor_shape.dim]),
            )
            for e in acc.Tensors(tag)
        ]
    found = []
    for tag, calls in sorted(expand_calls(served).items()):
        content = json.loads(acc.SummaryMetadata(tag).plugin_data.content)
        found.append((tag, content, [s for s, _ in calls], [a for _, a in calls]))
    return found


def values_by_step(logdir):
    """``{step: {(metric, column name): value}}`` over every metrics tag of a logdir."""
    table = {}
    for _, content, steps, values in metric_events(logdir):
        columns = content["layers"] + [g["name"] for g in content["groups"]]
        for step, array in zip(steps, values):
            row = table.setdefault(step, {})
            for m, metric in enumerate(content["metrics"]):
                for c, column in enumerate(columns):
                    row[(metric, column)] = float(array[m, c])
    return table


def reference_layer_sums(found, prev, init):
    """The reducer's ``(layers, NUM_SUMS)`` sums in float64, element by element in the obvious way.

    Args:
        found: the layers (``layers.find_layers``).
        prev, init: ``{qualified parameter name: tensor}``: the previous and initial weights.
    """
    out = np.zeros((len(found), metrics.NUM_SUMS))
    for i, layer in enumerate(found):
        for name, p in layer.params:
            w, q, w0 = p.detach().double(), prev[name].double(), init[name].double()
            d = w - q
            nz = q != 0
            out[i, metrics.SUM_ABS_DIFF] += float(d.abs().sum())
            out[i, metrics.SUM_SQ_DIFF] += float((d * d).sum())
            out[i, metrics.SUM_ABS_PREV] += float(q.abs().sum())
            out[i, metrics.SUM_SQ_INIT_DIFF] += float(((w - w0) ** 2).sum())
            out[i, metrics.SUM_SQ_WEIGHT] += float((w * w).sum())
            if p.grad is not None:
                out[i, metrics.SUM_SQ_GRAD] += float((p.grad.double() ** 2).sum())
            out[i, metrics.SUM_RATIO] += float((d.abs()[nz] / q.abs()[nz]).sum())
            out[i, metrics.SUM_ZERO_PREV] += float((~nz).sum())
            out[i, metrics.SUM_SQ_INIT] += float((w0 * w0).sum())
            out[i, metrics.SUM_NUMEL] += p.numel()
    return out


class MergedTable:
    """A model's layout tags merged by layer name, computed the slow, obvious way (a reference
    for ``tb_layerdyn.reading.models``): per tag the last record of a step wins; across tags the
    layout that started later wins where it has a defined value.

    Attributes:
        layers, param_counts, groups (dicts with name, kind, members), steps (int64), metrics and
        group_metrics
        (metric -> float64 steps x series, NaN where undefined or not logged).
    """

    def __init__(self, layouts):
        from tb_layerdyn.reading.models import merge_order

        per_tag = []
        for content, events in layouts:
            latest = {}
            for step, value in events:
                latest[int(step)] = np.asarray(value, dtype=np.float64)
            if latest:
                per_tag.append((content, latest))
        per_tag.sort(key=lambda item: min(item[1]))
        self.layers = merge_order([c["layers"] for c, _ in per_tag])
        group_names = merge_order([[g["name"] for g in c["groups"]] for c, _ in per_tag])
        groups = {g["name"]: g for c, _ in per_tag for g in c["groups"]}
        self.groups = [groups[name] for name in group_names]
        counts = {n: c for content, _ in per_tag for n, c in zip(content["layers"], content["param_counts"])}
        self.param_counts = [counts[name] for name in self.layers]
        self.steps = np.array(sorted({s for _, latest in per_tag for s in latest}), dtype=np.int64)
        row = {s: i for i, s in enumerate(self.steps.tolist())}
        self.metrics, self.group_metrics = {}, {}
        for content, latest in per_tag:
            columns = content["layers"] + [g["name"] for g in content["groups"]]
            for m, metric in enumerate(content["metrics"]):
                layers = self.metrics.setdefault(metric, np.full((len(self.steps), len(self.layers)), np.nan))
                grouped = self.group_metrics.setdefault(metric, np.full((len(self.steps), len(group_names)), np.nan))
                for step, value in latest.items():
                    for c, name in enumerate(columns):
                        v = value[m, c]
                        if np.isnan(v):
                            continue
                        if c < len(content["layers"]):
                            layers[row[step], self.layers.index(name)] = v
                        else:
                            grouped[row[step], group_names.index(name)] = v


def multiplexer_table(multiplexer, run):
    """The ``MergedTable`` of a run as TensorBoard's Python multiplexer loaded it."""
    from tensorboard.util import tensor_util

    layouts = []
    served = {
        tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto)) for e in multiplexer.Tensors(run, tag)]
        for tag in multiplexer.GetAccumulator(run).Tags()["tensors"]
        if tag.startswith(layer_metrics.TAG_PREFIX)
    }
    for tag, events in expand_calls(served).items():
        content = json.loads(multiplexer.SummaryMetadata(run, tag).plugin_data.content)
        layouts.append((content, events))
    assert layouts, f"no layer dynamics in run {run!r}"
    return MergedTable(layouts)
