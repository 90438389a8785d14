"""What a population of runs costs to read and compare: the slides' 1,000 models x 30 iterations x
3 layers, with weight sketches.

The logdir (written without torch, as ``logdirs`` does) holds ``runs`` runs of 30 logged steps of
a 3-layer model (every metric, and a sketch of 128 values per layer at every step; the sketches
are random walks around five cluster centres, so the clustering has something to find). Every
figure comes from a fresh interpreter:

``event MB``        the logdir's size;
``first read s``    wall seconds of the first ``tb_layerdyn.read`` (an empty cache: every file
                    parsed, the sketches stored as columns beside the metrics);
``again s``         a second ``read`` in a new process (warm cache);
``distances s``     ``runs.distances(29)`` after that read: one row per run from the store, the
                    matrix, and the average-linkage order (``order s`` of it alone);
``trajectories s``  ``runs.trajectories()``: every run's sketches at every step, projected on the
                    two principal directions;
``peak MB``         the process's peak resident memory above its baseline (after imports) over
                    the warm read, the distances and the trajectories;
``binary MB``       the size of the ``distances`` route's binary body for all runs (float32).

Run alone with ``python -m benchmarks population [--quick]``.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from tensorboard.compat.proto import event_pb2

from benchmarks import logdirs, memory
from tb_layerdyn.format import layer_metrics, sketches

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANS = {False: [1000], True: [200]}
STEPS = 30
LAYERS = ("fc1", "fc2", "fc3")
PARAMS = (78500, 10100, 1010)
SIZE = 128

_SCRIPT = memory.PEAK_SAMPLER + r"""
import json, sys, threading, time
import tb_layerdyn
import tb_layerdyn.reading.reader
from tb_layerdyn.reading import populations

logdir, cache, mode = sys.argv[1], sys.argv[2], sys.argv[3]
before = rss_kb()
threading.Thread(target=sample, daemon=True).start()
out = {}
started = time.perf_counter()
runs = tb_layerdyn.read(logdir, cache_dir=cache)
out["read"] = time.perf_counter() - started
if mode == "all":
    started = time.perf_counter()
    result = runs.distances(29)
    out["distances"] = time.perf_counter() - started
    started = time.perf_counter()
    populations.cluster_order(result.matrix)
    out["order"] = time.perf_counter() - started
    out["points"] = len(result.names)
    started = time.perf_counter()
    paths = runs.trajectories()
    out["trajectories"] = time.perf_counter() - started
done.set()
out["peak_mb"] = (max(peak[0], rss_kb()) - before) / 1024
print(json.dumps(out))
"""


def _content():
    metrics = layer_metrics.layout(
        metrics=list(layer_metrics.METRIC_NAMES[:1] + layer_metrics.METRIC_NAMES[2:]),
        layers=list(LAYERS), param_counts=list(PARAMS), order="forward", granularity="layer",
        rwc="l1", groups=[],
    )
    seeds = [sketches.layer_seed(name, [(f"{name}.weight", (n,))]) for name, n in zip(LAYERS, PARAMS)]
    sketch = sketches.layout(layers=list(LAYERS), param_counts=list(PARAMS), dims=[SIZE] * 3, seeds=seeds)
    return metrics, sketch


def write_population(logdir, runs):
    metrics, sketch = _content()
    metric_tag, sketch_tag = layer_metrics.tag(metrics), sketches.tag(sketch)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, SIZE * 3)) * 3.0
    for run in range(runs):
        run_dir = os.path.join(logdir, f"pop/run{run:04d}")
        os.makedirs(run_dir, exist_ok=True)
        path = os.path.join(run_dir, "events.out.tfevents.0.bench.0.0")
        position = centres[run % 5] + rng.normal(size=SIZE * 3)
        records = [event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString()]
        values = rng.uniform(1e-4, 2.0, size=(STEPS, len(metrics["metrics"]), 3)).astype(np.float32)
        for step in range(STEPS):
            position = position + rng.normal(size=SIZE * 3) * 0.1
            first = step == 0
            for summary in (
                layer_metrics.summary(values[step], metrics, with_metadata=first, tag_name=metric_tag),
                sketches.summary(position, sketch, with_metadata=first, tag_name=sketch_tag),
            ):
                records.append(event_pb2.Event(step=step, wall_time=1.0 + step, summary=summary).SerializeToString())
        with open(path, "wb") as f:
            f.write(logdirs._frame(records))


def _measure(logdir, cache, mode):
    done = subprocess.run([sys.executable, "-c", _SCRIPT, logdir, cache, mode], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick):
    rows = []
    for runs in PLANS[quick]:
        with tempfile.TemporaryDirectory(prefix="bench_population_") as tmp:
            logdir, cache = os.path.join(tmp, "logdir"), os.path.join(tmp, "cache")
            write_population(logdir, runs)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(logdir) for f in fs)
            first = _measure(logdir, cache, "read")
            again = _measure(logdir, cache, "all")
            rows.append({
                "runs": runs,
                "steps": STEPS,
                "layers": len(LAYERS),
                "event MB": size / 1e6,
                "first read s": first["read"],
                "again s": again["read"],
                "distances s": again["distances"],
                "order s": again["order"],
                "trajectories s": again["trajectories"],
                "peak MB": again["peak_mb"],
                "binary MB": (again["points"] ** 2 * 4) / 1e6,
            })
    return rows
