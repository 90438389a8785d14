"""Runs the benchmark modules and prints one markdown table per module.

Usage (from the repository root)::

    python -m benchmarks                  # every benchmarks/bench_*.py
    python -m benchmarks logging routes   # only bench_logging.py and bench_routes.py
    python -m benchmarks --quick          # few repetitions, for a smoke check

Each module's rows are also written as JSON to ``benchmarks/results/<name>.json``, together with a
description of the machine, so that figures quoted in the README can be traced to a run.
"""

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time

from benchmarks import report

HERE = os.path.dirname(os.path.abspath(__file__))
PREFIX = "bench_"


def available():
    """Names of the benchmark modules, without the ``bench_`` prefix, sorted."""
    return sorted(
        info.name[len(PREFIX):]
        for info in pkgutil.iter_modules([HERE])
        if info.name.startswith(PREFIX)
    )


def parse_args(argv):
    names = available()
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {names})"
    )
    parser.add_argument("--quick", action="store_true", help="few repetitions (about a minute each)")
    parser.add_argument(
        "--results",
        default=os.path.join(HERE, "results"),
        help="directory for the JSON results (default: benchmarks/results)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in names]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {names}")
    args.names = args.names or names
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.results, exist_ok=True)
    machine = report.machine_info()
    print(report.describe_machine(machine))
    for name in args.names:
        module = importlib.import_module(f"benchmarks.{PREFIX}{name}")
        started = time.perf_counter()
        rows = module.run(quick=args.quick)
        seconds = time.perf_counter() - started
        print(f"\n## {name} ({'quick' if args.quick else 'full'} run, {seconds:.0f} s)\n")
        print(report.markdown_table(rows))
        path = os.path.join(args.results, f"{name}.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(
                {"benchmark": name, "quick": args.quick, "seconds": seconds,
                 "machine": machine, "rows": rows},
                f, indent=2,
            )
        print(f"\n(written to {os.path.relpath(path)})")


if __name__ == "__main__":
    main()
