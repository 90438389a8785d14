"""How fast ``tb_layerdyn.read`` reads a logdir for the first time and again, and what it holds.

Each plan is a logdir of copies of one run (``logdirs.population``: 200 layers in 4 blocks, every
metric, logged every step, 2% NaN). Every figure comes from a fresh interpreter, so that memory is
that of one ``read`` and nothing else:

``runs``, ``steps``, ``event MB``  the logdir's size (every copy counted: each is read);
``first cpu s``    CPU seconds of the first ``read`` (an empty cache: every event file parsed, every
                   column and pyramid written);
``MB/s per core``  ``event MB / first cpu s``: the reading speed per core (target: at least 100);
``again s``        wall seconds of a second ``read`` in a new process: the cache is warm and
                   nothing is parsed;
``append s``       wall seconds of a ``read`` after 1% more steps were appended to every run's file:
                   only the new records are parsed;
``arrays MB``      bytes of the arrays ``read`` returned;
``peak / arrays``  the process's peak resident memory above what it held before ``read`` (the
                   interpreter and its imports), over ``arrays MB`` (target: at most 1.5);
``used / arrays``  the same once every value has been looked at (``pass cpu s``: one ``nansum``
                   of every array): tables mapped from the store (``columns.mapped_rows``) come
                   into the process's memory only then, as file pages shared with the page cache;
``subset s``, ``subset peak MB``  the time and the peak above the baseline of
                   ``read(runs=one run, metrics=["rwc"], steps=the last tenth)`` on the warm cache
                   (its arrays are a few MB: what it does not read, it does not hold);
``tb loader MB/s`` one run read with TensorBoard's own Python ``EventFileLoader`` (checksums in
                   pure Python) and ``make_ndarray``, per CPU second, for comparison.

Run alone with ``python -m benchmarks read [--quick]``.
"""

import json
import os
import subprocess
import sys
import tempfile

from benchmarks import logdirs, memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_MB_PER_S = 100.0
TARGET_PEAK_RATIO = 1.5

# (runs, steps) of each logdir, and layers per run.
PLANS = {False: [(20, 10_000), (1, 100_000)], True: [(4, 5_000)]}
LAYERS = 200

_READ = memory.PEAK_SAMPLER + r"""
import json, os, sys, threading, time
import numpy as np
import tb_layerdyn
import tb_layerdyn.reading.reader  # imported before the baseline: modules are not what read holds

logdir, cache, subset = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
before = rss_kb()
sampler = threading.Thread(target=sample, daemon=True)
sampler.start()
wall, cpu = time.perf_counter(), time.process_time()
runs = tb_layerdyn.read(logdir, cache_dir=cache, **subset)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
done.set()
sampler.join()
peak[0] = max(peak[0], rss_kb())
arrays = sum(a.nbytes for r in runs.values() for a in [*r.metrics.values(), *r.group_metrics.values(), r.steps])
# One pass over every value, as any use of them makes: mapped pages come into the process here.
pass_cpu = time.process_time()
for r in runs.values():
    for a in [*r.metrics.values(), *r.group_metrics.values()]:
        np.nansum(a)
pass_cpu = time.process_time() - pass_cpu
print(json.dumps({"wall": wall, "cpu": cpu, "arrays": arrays, "peak_kb": peak[0], "before_kb": before,
                  "used_kb": rss_kb(), "pass_cpu": pass_cpu, "runs": len(runs)}))
"""

_TB_LOADER = r"""
import sys, time
import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.util import tensor_util
path = sys.argv[1]
cpu = time.process_time()
arrays = []
for event in event_file_loader.EventFileLoader(path).Load():
    for value in event.summary.value:
        if value.HasField("tensor"):
            arrays.append(tensor_util.make_ndarray(value.tensor))
stacked = np.stack(arrays)
print(time.process_time() - cpu)
"""


def _python(script, *args):
    done = subprocess.run(
        [sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.strip().splitlines()[-1]


def _read(logdir, cache, **subset):
    return json.loads(_python(_READ, logdir, cache, json.dumps(subset)))


def run(quick):
    rows = []
    content = logdirs.layout(LAYERS)
    for runs, steps in PLANS[quick]:
        with tempfile.TemporaryDirectory(prefix="bench_read_") as tmp:
            source = logdirs.write_run(os.path.join(tmp, "source"), content, steps)
            logdir = os.path.join(tmp, "logdir")
            names = logdirs.population(logdir, runs, source)
            event_mb = runs * os.path.getsize(source) / 1e6
            cache = os.path.join(tmp, "cache")
            first = _read(logdir, cache)
            again = _read(logdir, cache)
            logdirs.append_calls(source, content, steps, steps // 100)
            appended = _read(logdir, cache)
            last_tenth = (steps - steps // 10, None)
            subset = _read(logdir, cache, runs=[names[0]], metrics=["rwc"], steps=last_tenth)
            tb_cpu = float(_python(_TB_LOADER, source))
            source_mb = os.path.getsize(source) / 1e6

            def ratio(result, key="peak_kb"):
                return (result[key] - result["before_kb"]) * 1024 / max(1, result["arrays"])

            rows.append(
                {
                    "runs": runs,
                    "steps": steps,
                    "event MB": event_mb,
                    "first cpu s": first["cpu"],
                    "MB/s per core": event_mb / first["cpu"],
                    "again s": again["wall"],
                    "append s": appended["wall"],
                    "arrays MB": first["arrays"] / 1e6,
                    "peak / arrays": ratio(first),
                    "used / arrays": ratio(first, "used_kb"),
                    "pass cpu s": first["pass_cpu"],
                    "subset s": subset["wall"],
                    "subset peak MB": (subset["peak_kb"] - subset["before_kb"]) / 1024,
                    "tb loader MB/s": source_mb / tb_cpu,
                    "targets met": event_mb / first["cpu"] >= TARGET_MB_PER_S
                    and max(ratio(first), ratio(first, "used_kb")) <= TARGET_PEAK_RATIO,
                }
            )
    return rows


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run("--quick" in sys.argv)))
