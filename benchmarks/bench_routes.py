"""Latency of the Layer Dynamics routes on a large logdir, under both TensorBoard loaders.

The logdir holds 20 runs x 100 layers (and 4 block groups) x 5,000 steps x 7 metrics, as the issue
asks; one run's event file is written with ``tb_layerdyn.format.layer_metrics`` and copied to the others (the
contents do not change the latency). Requests go through TensorBoard's real WSGI app with
``Accept-Encoding: gzip``, as a browser sends them, and bodies are read to the end.

Rows:

* ``loader``: ``rust`` (the data server TensorBoard starts by default) or ``python``
  (``--load_fast=false``); the Python loader gets fewer runs because it parses every event in
  Python, which takes long and has no bearing on one run's latency.
* ``route``: the request; ``state`` is ``cold`` (first request for that run: the provider reads
  every event and the run's table is built) or ``warm`` (the table is cached and unchanged).
* ``median s`` / ``max s``: wall time over ``reps`` requests, each cold one on a run not read
  before. ``median cpu s``: CPU time of the TensorBoard process for the same requests, which
  other work on a shared machine inflates less than wall time (the Rust server's own CPU time is
  not in it).
* ``target s``: the issue's bound for the curves and heatmap routes of one run.
* ``read_tensors`` rows time the provider call alone (transfer and ``make_ndarray`` per event),
  the part of a cold request the plugin cannot change.
"""

import json
import os
import shutil
import statistics
import tempfile
import time

import numpy as np
from tensorboard.compat.proto import event_pb2
from tensorboard.context import RequestContext
from tensorboard.data import provider as tb_provider
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.plugin import in_process, runs_data

PREFIX = "/data/plugin/layer_dynamics/"
TARGET_S = 0.5
LAYERS = 100
STEPS = 5000


def _write_logdir(root, num_runs, num_steps):
    """Writes ``num_runs`` identical runs of 100 layers; returns the logdir."""
    layers = [f"block{i // 25}.layer{i:03d}" for i in range(LAYERS)]
    layout = layer_metrics.layout(
        metrics=layer_metrics.METRIC_NAMES,
        layers=layers,
        param_counts=[1000 + i for i in range(LAYERS)],
        order="forward",
        granularity="layer",
        rwc="both",
        groups=[
            {"name": f"block{b}", "kind": "block", "members": layers[b * 25 : (b + 1) * 25]}
            for b in range(4)
        ],
    )
    rng = np.random.default_rng(0)
    first = os.path.join(root, "run00")
    writer = EventFileWriter(first, max_queue_size=100)
    shape = (len(layout["metrics"]), LAYERS + len(layout["groups"]))
    for step in range(num_steps):
        values = rng.lognormal(-4.0, 1.0, size=shape).astype(np.float32)
        pb = layer_metrics.summary(values, layout, with_metadata=(step == 0))
        writer.add_event(event_pb2.Event(step=step, wall_time=1.0e9 + step, summary=pb))
    writer.close()
    (event_file,) = os.listdir(first)
    for r in range(1, num_runs):
        run_dir = os.path.join(root, f"run{r:02d}")
        os.makedirs(run_dir)
        shutil.copy(os.path.join(first, event_file), run_dir)
    return root


def _get(client, url, cpu=None):
    started, started_cpu = time.perf_counter(), time.process_time()
    response = client.get(PREFIX + url, headers={"Accept-Encoding": "gzip"})
    body = response.get_data()
    seconds = time.perf_counter() - started
    if cpu is not None:
        cpu.append(time.process_time() - started_cpu)
    if response.status_code != 200:
        raise RuntimeError(f"{url} answered {response.status_code}: {body[:200]!r}")
    return seconds, len(body)


def _wait_loaded(client, num_runs, last_step):
    started = time.perf_counter()
    while True:
        response = client.get(PREFIX + "runs")
        runs = json.loads(response.get_data())["runs"]
        if len(runs) == num_runs and all(r["last_step"] == last_step for r in runs):
            return time.perf_counter() - started
        time.sleep(0.2)


def _row(loader, runs, route, state, seconds, size=None, cpu=None):
    row = {
        "loader": loader,
        "runs": runs,
        "route": route,
        "state": state,
        "median s": statistics.median(seconds),
        "max s": max(seconds),
        "median cpu s": statistics.median(cpu) if cpu else None,
        "reps": len(seconds),
    }
    if size is not None:
        row["body MB (gzip)"] = size / 2**20
    if route.startswith(("series", "heatmap")):
        row["target s"] = TARGET_S
        row["meets target"] = max(seconds) < TARGET_S
    return row


def _measure(loader, logdir, num_runs, reps):
    started = time.perf_counter()
    rows = []
    with in_process.serve(logdir, loader) as (client, data_provider):
        _wait_loaded(client, num_runs, STEPS - 1)
        rows.append(_row(loader, num_runs, "load logdir", "cold", [time.perf_counter() - started]))
        run_names = [f"run{r:02d}" for r in range(num_runs)]
        routes = {
            "series rwc (layers)": "series?run={run}&metric=rwc",
            "series rwc (groups)": "series?run={run}&metric=rwc&target=groups",
            "heatmap rwc": "heatmap?run={run}&metric=rwc",
            "summary": "summary?run={run}",
        }
        cold_runs = iter(run_names)
        for route, url in routes.items():
            if route.startswith(("series rwc (layers)", "heatmap")):
                cpu = []
                cold = [
                    _get(client, url.format(run=next(cold_runs)), cpu)[0] for _ in range(reps // 2)
                ]
                rows.append(_row(loader, num_runs, route, "cold", cold, cpu=cpu))
            warm, cpu, size = [], [], 0
            for _ in range(reps):
                seconds, size = _get(client, url.format(run=run_names[-1]), cpu)
                warm.append(seconds)
            rows.append(_row(loader, num_runs, route, "warm", warm[1:], size, cpu[1:]))
        runs_s, size = zip(*[_get(client, "runs") for _ in range(reps)])
        rows.append(_row(loader, num_runs, "runs", "warm", list(runs_s), size[0]))

        read_s = []
        for run in run_names[:reps // 2]:
            started = time.perf_counter()
            data_provider.read_tensors(
                RequestContext(),
                experiment_id="",
                plugin_name=metadata.PLUGIN_NAME,
                downsample=runs_data.READ_ALL,
                run_tag_filter=tb_provider.RunTagFilter(runs=[run]),
            )
            read_s.append(time.perf_counter() - started)
        rows.append(_row(loader, num_runs, "read_tensors (provider)", "cold", read_s))
    return rows


def run(quick):
    """Times the routes under both loaders; see the module docstring for the rows."""
    reps = 4 if quick else 10
    rust_runs = 20
    python_runs = 4 if quick else 10
    with tempfile.TemporaryDirectory(prefix="bench_routes_") as root:
        rust_dir = _write_logdir(os.path.join(root, "rust"), rust_runs, STEPS)
        python_dir = os.path.join(root, "python")
        os.makedirs(python_dir)
        for r in range(python_runs):
            shutil.copytree(os.path.join(rust_dir, f"run{r:02d}"), os.path.join(python_dir, f"run{r:02d}"))
        rows = _measure("rust", rust_dir, rust_runs, reps)
        rows += _measure("python", python_dir, python_runs, min(reps, python_runs))
    return rows
