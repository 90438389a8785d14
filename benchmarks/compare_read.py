"""The first ``tb_layerdyn.read`` of one logdir by two checkouts, side by side.

Usage (from the repository root)::

    python -m benchmarks.compare_read /path/to/other/checkout [--pairs 7] [--runs 4] [--steps 5000]

Writes ``bench_read``'s quick logdir (``runs`` copies of one run of 200 layers x ``steps`` steps,
7 metrics, logged every step), then reads it into a fresh cache with the other checkout's code and
with this one's, in interleaved pairs (the order alternates), each read in a new interpreter whose
``tb_layerdyn`` comes from that checkout. Each figure is the CPU time (user + system) of the
``read`` call alone. Prints the per-pair ratios (other / this: above 1, this checkout is faster),
their median, event MB per CPU second per core for each side, the load average, and whether the two
caches hold byte-identical files (the store format is meant to change only with its version).

Not one of the ``python -m benchmarks`` modules: it needs a second checkout.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from benchmarks import logdirs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_READ = r"""
import resource, sys
import tb_layerdyn, tb_layerdyn.reading.reader
before = resource.getrusage(resource.RUSAGE_SELF)
tb_layerdyn.read(sys.argv[1], cache_dir=sys.argv[2])
after = resource.getrusage(resource.RUSAGE_SELF)
print(tb_layerdyn.__file__)
print(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
"""


def _read_cpu(checkout, logdir, cache):
    env = dict(os.environ, PYTHONPATH=checkout)
    done = subprocess.run(
        [sys.executable, "-c", _READ, logdir, cache], env=env, cwd=tempfile.gettempdir(),
        capture_output=True, text=True, check=True,
    )
    module, cpu = done.stdout.strip().splitlines()[-2:]
    if not module.startswith(os.path.abspath(checkout)):
        raise RuntimeError(f"read imported {module}, not the checkout {checkout}")
    return float(cpu)


def _digests(cache):
    found = {}
    for directory, _, names in os.walk(cache):
        for name in names:
            if name == "lock" or name.startswith(".tmp"):
                continue
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, cache)] = hashlib.sha1(f.read()).hexdigest()
    return found


def compare(other, pairs, runs, steps):
    with tempfile.TemporaryDirectory(prefix="compare_read_") as tmp:
        source = logdirs.write_run(os.path.join(tmp, "source"), logdirs.layout(200), steps)
        logdir = os.path.join(tmp, "logdir")
        logdirs.population(logdir, runs, source)
        event_mb = runs * os.path.getsize(source) / 1e6
        sides = {"other": os.path.abspath(other), "this": ROOT}
        cpu = {"other": [], "this": []}
        identical = None
        for pair in range(pairs):
            caches = {}
            for side in ("other", "this") if pair % 2 == 0 else ("this", "other"):
                caches[side] = os.path.join(tmp, f"cache-{side}-{pair}")
                cpu[side].append(_read_cpu(sides[side], logdir, caches[side]))
            if identical is None:
                identical = _digests(caches["other"]) == _digests(caches["this"])
            for cache in caches.values():
                shutil.rmtree(cache)
    ratios = [o / t for o, t in zip(cpu["other"], cpu["this"])]
    return {
        "event MB": round(event_mb, 1),
        "pairs": pairs,
        "other cpu s": [round(c, 3) for c in cpu["other"]],
        "this cpu s": [round(c, 3) for c in cpu["this"]],
        "ratios other/this": [round(r, 3) for r in ratios],
        "median ratio": round(statistics.median(ratios), 3),
        "other MB/s per core": round(event_mb / statistics.median(cpu["other"]), 1),
        "this MB/s per core": round(event_mb / statistics.median(cpu["this"]), 1),
        "load average": [round(x, 2) for x in os.getloadavg()],
        "caches byte-identical": identical,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare_read", description=__doc__.split("\n")[0])
    parser.add_argument("other", help="the other checkout's root (its tb_layerdyn is imported)")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args(argv)
    print(json.dumps(compare(args.other, args.pairs, args.runs, args.steps), indent=1))


if __name__ == "__main__":
    main()
