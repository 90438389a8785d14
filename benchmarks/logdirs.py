"""Large logdirs for the reading benchmarks, written fast and without torch.

TensorBoard's ``EventFileWriter`` computes each record's checksum in pure Python (about a
millisecond for a 6 kB record), which would make a 100,000-step run take minutes to write. Here
the events are serialised with protobuf and framed with the project's vectorised checksums
(``format.framing``): the same bytes, written in seconds. A population of runs is one run's file
hard-linked into each run directory (copies of one run, as the issue allows), so 20 runs of 580 MB
cost the disk once.
"""

import os
import struct
import time

import numpy as np
from tensorboard.compat.proto import event_pb2

from tb_layerdyn.format import framing, layer_metrics

# Records framed and written at a time.
_BATCH = 4096


def layout(layers, groups=4, metrics=layer_metrics.METRIC_NAMES):
    """A layout of ``layers`` layers in ``groups`` consecutive block groups."""
    names = [f"block{i * groups // layers}.layer{i}" for i in range(layers)]
    members = {}
    for i, name in enumerate(names):
        members.setdefault(f"block{i * groups // layers}", []).append(name)
    return layer_metrics.layout(
        metrics=list(metrics),
        layers=names,
        param_counts=[1000 + i for i in range(layers)],
        order="forward",
        granularity="layer",
        rwc="both" if "rwc_elementwise" in metrics else "l1",
        groups=[{"name": g, "kind": "block", "members": m} for g, m in members.items()],
    )


def _frame(records):
    """TFRecord frames of serialised records (all of one length here, checked in one batch)."""
    lengths = np.array([len(r) for r in records], dtype=np.int64)
    headers = b"".join(struct.pack("<Q", n) for n in lengths.tolist())
    header_crcs = framing.masked_crc32c(np.frombuffer(headers, np.uint8), np.arange(len(records)) * 8, 8)
    data = b"".join(records)
    data_array = np.frombuffer(data, np.uint8)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    data_crcs = np.empty(len(records), dtype=np.uint32)
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        data_crcs[members] = framing.masked_crc32c(data_array, starts[members], int(length))
    out = []
    for i, record in enumerate(records):
        out.append(headers[8 * i : 8 * i + 8])
        out.append(struct.pack("<I", int(header_crcs[i])))
        out.append(record)
        out.append(struct.pack("<I", int(data_crcs[i])))
    return b"".join(out)


def write_run(run_dir, content, steps, seed=0, nan_fraction=0.02):
    """Writes one event file of ``steps`` calls (steps ``0 .. steps - 1``) of a layout with random
    values.

    Returns:
        The event file's path.
    """
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, f"events.out.tfevents.{int(time.time())}.bench.{os.getpid()}.0")
    with open(path, "wb") as f:
        version = event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
        f.write(_frame([version.SerializeToString()]))
    append_calls(path, content, 0, steps, seed, nan_fraction)
    return path


def append_calls(path, content, first, count, seed=0, nan_fraction=0.02):
    """Appends calls at steps ``first .. first + count - 1`` to an event file; the layout's
    metadata rides on step 0 only, as the tracker writes it."""
    rng = np.random.default_rng(seed + first)
    shape = (len(content["metrics"]), len(content["layers"]) + len(content["groups"]))
    tag = layer_metrics.tag(content)
    wall = time.time()
    with open(path, "ab") as f:
        for start in range(first, first + count, _BATCH):
            batch = min(_BATCH, first + count - start)
            values = rng.uniform(1e-4, 2.0, size=(batch,) + shape).astype(np.float32)
            values[rng.random(values.shape) < nan_fraction] = np.nan
            records = []
            for i in range(batch):
                step = start + i
                summary = layer_metrics.summary(values[i], content, with_metadata=step == 0, tag_name=tag)
                event = event_pb2.Event(step=step, wall_time=wall + step * 1e-3, summary=summary)
                records.append(event.SerializeToString())
            f.write(_frame(records))


def population(logdir, runs, source_path):
    """Hard-links one run's event file into ``runs`` run directories ``run00`` ... under
    ``logdir`` (a copy where the filesystem refuses links). Returns the run names."""
    names = [f"run{i:02d}" for i in range(runs)]
    for name in names:
        target_dir = os.path.join(logdir, name)
        os.makedirs(target_dir, exist_ok=True)
        target = os.path.join(target_dir, os.path.basename(source_path))
        if not os.path.exists(target):
            try:
                os.link(source_path, target)
            except OSError:
                import shutil

                shutil.copyfile(source_path, target)
    return names


# ---------------------------------------------------------------- a population of small models

# The slides' dataset (003): 1,000 models x 30 iterations x 3 layers, of an MLP 784-100-100-100.
POPULATION_LAYERS = ("fc1", "fc2", "fc3")
POPULATION_PARAMS = (784 * 100 + 100, 100 * 100 + 100, 100 * 100 + 100)


def population_run_names(models, configs=10):
    """``cfg<c>/seed<k>`` for ``models`` models spread over ``configs`` configurations, so that
    the tab's seed pattern groups them by configuration."""
    per = -(-models // configs)
    return [f"cfg{i // per}/seed{i % per:03d}" for i in range(models)]


def simulate_population(models, steps, dim=64, configs=10, seed=0):
    """Weights of ``models`` small models, ``len(POPULATION_LAYERS)`` layers of ``dim`` values,
    over ``steps`` steps: each model starts at its own random point and moves by noisy gradient
    steps towards its configuration's optimum, the layers nearer the input with a larger, faster
    decaying step (they settle first).

    Returns:
        ``(weights, grads)``, float64 arrays of shape ``(steps + 1, models, layers, dim)``: index 0
        is the initialisation, index ``t + 1`` the weights after step ``t``; ``grads[t + 1]`` is
        the gradient of step ``t``.
    """
    rng = np.random.default_rng(seed)
    layers = len(POPULATION_LAYERS)
    per = -(-models // configs)
    optima = rng.normal(0.0, 1.0, size=(configs, layers, dim))
    target = optima[np.arange(models) // per]
    weights = np.empty((steps + 1, models, layers, dim))
    grads = np.zeros_like(weights)
    weights[0] = rng.normal(0.0, 1.0, size=(models, layers, dim))
    rate = np.array([0.35, 0.2, 0.1])[:, None]
    decay = np.array([0.8, 0.88, 0.95])[:, None]
    for t in range(steps):
        grad = (weights[t] - target) + rng.normal(0.0, 0.3, size=weights[t].shape)
        grads[t + 1] = grad
        weights[t + 1] = weights[t] - rate * decay**t * grad
    return weights, grads


def population_metrics(weights, grads):
    """Every metric of ``layer_metrics.METRIC_NAMES`` of simulated weights, step by step, as the
    tracker computes them (RWC and the update from the previous call; NaN at the first).

    Returns:
        float32 array ``(steps, models, metrics, layers)``.
    """
    w, prev, init, g = weights[1:], weights[:-1], weights[:1], grads[1:]
    delta = w - prev
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = {
            "rwc": np.abs(delta).sum(-1) / np.abs(prev).sum(-1),
            "rwc_elementwise": (np.abs(delta) / np.abs(prev)).mean(-1),
            "distance_from_init": np.linalg.norm(w - init, axis=-1),
            "relative_distance_from_init": np.linalg.norm(w - init, axis=-1) / np.linalg.norm(init, axis=-1),
            "update_size": np.linalg.norm(delta, axis=-1),
            "weight_norm": np.linalg.norm(w, axis=-1),
            "grad_norm": np.linalg.norm(g, axis=-1),
        }
    values = np.stack([columns[m] for m in layer_metrics.METRIC_NAMES], axis=2)
    return values.astype(np.float32)


# Values of a simulated layer: what its sketch holds (the weights of a layer this size would be
# sketched to this many values by the tracker).
POPULATION_SKETCH = 128


def _sketch_content():
    """The sketches layout of the population's layers, or ``None`` where this checkout's format
    package has no sketches yet."""
    try:
        from tb_layerdyn.format import sketches
    except ImportError:
        return None
    # nn.Linear's parameters: weight (out, in), bias (out,).
    shapes = {
        name: [(f"{name}.weight", (100, inputs)), (f"{name}.bias", (100,))]
        for name, inputs in zip(POPULATION_LAYERS, (784, 100, 100))
    }
    return sketches, sketches.layout(
        layers=list(POPULATION_LAYERS),
        param_counts=list(POPULATION_PARAMS),
        dims=[POPULATION_SKETCH] * len(POPULATION_LAYERS),
        seeds=[sketches.layer_seed(name, shapes[name]) for name in POPULATION_LAYERS],
    )


def write_population(logdir, models=1000, steps=30, configs=10, seed=0):
    """A logdir of ``models`` runs (``population_run_names``) of ``steps`` calls each of the
    3-layer population, one event per call, written with the format package.

    The weights are simulated (``simulate_population``), ``POPULATION_SKETCH`` values a layer; the
    metrics are computed from them as the tracker would, and, where the format package has
    sketches, each call also writes the layers' sketches: the simulated values themselves, under
    the layout of the real layers' sizes (so distances between runs are those of the simulation).

    Returns:
        The run names.
    """
    names = population_run_names(models, configs)
    content = layer_metrics.layout(
        metrics=list(layer_metrics.METRIC_NAMES),
        layers=list(POPULATION_LAYERS),
        param_counts=list(POPULATION_PARAMS),
        order="forward",
        granularity="layer",
        rwc="both",
        groups=[],
        descriptions=["Linear 784→100", "Linear 100→100", "Linear 100→100"],
    )
    tag = layer_metrics.tag(content)
    weights, grads = simulate_population(models, steps, dim=POPULATION_SKETCH, configs=configs, seed=seed)
    sketched = _sketch_content()
    if sketched is not None:
        sketches, sketch_content = sketched
        sketch_tag = sketches.tag(sketch_content)
        flat = weights[1:].reshape(steps, models, -1).astype(np.float32)
    values = population_metrics(weights, grads)
    wall = time.time()
    version = _frame([event_pb2.Event(wall_time=wall, file_version="brain.Event:2").SerializeToString()])
    for m, name in enumerate(names):
        run_dir = os.path.join(logdir, name)
        os.makedirs(run_dir, exist_ok=True)
        records = []
        for step in range(steps):
            summary = layer_metrics.summary(values[step, m], content, with_metadata=step == 0, tag_name=tag)
            event = event_pb2.Event(step=step, wall_time=wall + step, summary=summary)
            records.append(event.SerializeToString())
            if sketched is not None:
                summary = sketches.summary(flat[step, m], sketch_content, with_metadata=step == 0, tag_name=sketch_tag)
                records.append(event_pb2.Event(step=step, wall_time=wall + step, summary=summary).SerializeToString())
        path = os.path.join(run_dir, f"events.out.tfevents.{int(wall)}.population.{os.getpid()}.0")
        with open(path, "wb") as f:
            f.write(version + _frame(records))
    return names
