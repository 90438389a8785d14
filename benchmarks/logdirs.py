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
