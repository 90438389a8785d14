"""``tb-layerdyn``: the logged layer dynamics from the terminal, and for other tools.

    tb-layerdyn export LOGDIR [--format csv|parquet] [-o FILE] [--runs REGEX] [--metrics M ...]
    tb-layerdyn report LOGDIR [--runs REGEX] [--metric rwc] [--percent 10] [--smoothing 0]
    tb-layerdyn cache [LOGDIR] [--prune | --clear]

``export`` writes the long table of ``tb_layerdyn.read()`` (``reading.export``); ``report``
prints per run the settling order, the robust and ambient layers and the layers that moved least
(``reading.report``); ``cache`` lists or removes what the cache holds per logdir
(``reading.store``). None imports torch.
"""

import argparse
import logging
import os
import re
import sys

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.reading import export as exporting
from tb_layerdyn.reading import report as reporting
from tb_layerdyn.reading import settling

PROG = "tb-layerdyn"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read the layer dynamics logged by tb_layerdyn: export them as a long table, "
        "or print a report per run.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    export = commands.add_parser(
        "export",
        help="write the long table (run, model, step, layer, metric, value) as CSV or Parquet",
        description="Write the long table of read(LOGDIR): one row per run, step, layer and "
        "metric, columns run, model, step, layer, metric, value. Runs are read and written one "
        "batch at a time.",
    )
    export.add_argument("logdir", metavar="LOGDIR", help="the directory given to tensorboard --logdir")
    export.add_argument(
        "--format", choices=exporting.FORMATS, default=None,
        help="csv or parquet (parquet needs pyarrow); default: from --output's suffix, else csv",
    )
    export.add_argument(
        "-o", "--output", default="-", metavar="FILE",
        help="where to write (default: standard output, CSV only)",
    )
    export.add_argument("--runs", metavar="REGEX", help="only runs whose names match this regex")
    export.add_argument(
        "--metrics", nargs="+", metavar="METRIC", choices=layer_metrics.METRIC_NAMES,
        help=f"only these metrics (of {', '.join(layer_metrics.METRIC_NAMES)})",
    )

    report = commands.add_parser(
        "report",
        help="print per run the settling order, robust and ambient layers, and the layers that moved least",
        description="Print per run: when each layer settles and the rank correlation of depth and "
        "settling step; the robust and ambient layers of its latest robustness table; the layers "
        "whose weights moved least from their initial values. Then the correlation's mean and "
        "spread over each group of seeds.",
    )
    report.add_argument("logdir", metavar="LOGDIR", help="the directory given to tensorboard --logdir")
    report.add_argument("--runs", metavar="REGEX", help="only runs whose names match this regex")
    report.add_argument(
        "--metric", default=settling.DEFAULT_METRIC, choices=layer_metrics.METRIC_NAMES,
        help=f"the metric that settles (default {settling.DEFAULT_METRIC})",
    )
    report.add_argument(
        "--percent", type=float, default=settling.DEFAULT_FRACTION * 100,
        help="a layer settles once its metric stays below this percentage of its peak (default 10)",
    )
    report.add_argument(
        "--smoothing", type=float, default=0.0,
        help="the tab's smoothing weight in [0, 1), applied before the rule (default 0: none)",
    )
    report.add_argument(
        "--least", type=int, default=reporting.LEAST,
        help=f"how many of the layers that moved least to list (default {reporting.LEAST})",
    )
    report.add_argument(
        "--seed-pattern", default=settling.SEED_PATTERN, metavar="REGEX",
        help=f"the seed part of a run name, cut out to group seeds (default {settling.SEED_PATTERN})",
    )
    cache = commands.add_parser(
        "cache",
        help="list what the cache holds per logdir, or remove it",
        description="The cache read() and the Layer Dynamics tab keep outside the logdir "
        "($TB_LAYERDYN_CACHE, else $XDG_CACHE_HOME/tb_layerdyn, else ~/.cache/tb_layerdyn): list "
        "its logdirs with their runs and size, or remove them. A TensorBoard still using a "
        "removed logdir reads it again from its event files.",
    )
    cache.add_argument("logdir", nargs="?", metavar="LOGDIR", help="only this logdir")
    action = cache.add_mutually_exclusive_group()
    action.add_argument(
        "--prune", action="store_true",
        help="remove what the cache holds of local logdirs that no longer exist",
    )
    action.add_argument(
        "--clear", action="store_true", help="remove LOGDIR from the cache, or everything without LOGDIR",
    )
    return parser


def _size(count: int) -> str:
    """Bytes as a person reads them: 512 B, 3.4 MB, 1.2 GB."""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} B"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _cache(args) -> int:
    """``tb-layerdyn cache``: lists the cached logdirs, or removes some."""
    from tb_layerdyn.reading import files, store

    cached = store.cached_logdirs()
    if args.logdir is not None:
        wanted = files.normalize(args.logdir)
        cached = [c for c in cached if c.logdir == wanted]
    if args.prune:
        cached = [c for c in cached if c.gone]
    if args.prune or args.clear:
        left = [c for c in cached if not store.remove_cached(c)]
        freed = sum(c.bytes for c in cached if c not in left)
        print(f"removed {_count(len(cached) - len(left), 'logdir')} from {store.default_cache_dir()}, {_size(freed)}")
        for c in left:
            print(f"left {c.logdir or c.root}: another process is reading it; run this again later")
        return 1 if left else 0
    print(f"{store.default_cache_dir()}: {_count(len(cached), 'logdir')}, {_size(sum(c.bytes for c in cached))}")
    for c in cached:
        where = c.logdir if c.logdir is not None else f"(logdir unknown) {c.root}"
        print(f"{_size(c.bytes):>10}  {_count(c.runs, 'run'):>10}  {where}{'  (gone)' if c.gone else ''}")
    return 0


def main(argv=None) -> int:
    """Runs ``tb-layerdyn`` with ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    # read() reports files it skips through logging; without a handler they would be lost.
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
        if args.command == "cache":
            return _cache(args)
        if args.command == "export":
            rows = exporting.export(
                args.logdir, args.output, format=args.format, runs=args.runs, metrics=args.metrics
            )
            if args.output != "-":
                print(f"{PROG}: wrote {rows} rows to {args.output}", file=sys.stderr)
        else:
            count = reporting.report(
                args.logdir, runs=args.runs, metric=args.metric, fraction=args.percent / 100,
                smoothing=args.smoothing, least=args.least, seed_pattern=args.seed_pattern,
            )
            if count == 0:
                print(f"{PROG}: no run with layer dynamics or sweeps under {args.logdir}", file=sys.stderr)
    except BrokenPipeError:
        # `tb-layerdyn export runs | head` closes the pipe early: not an error. Standard output
        # goes to devnull so that flushing it at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ImportError, ValueError, TypeError, OSError) as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, (ValueError, TypeError)) else 1
    return 0


def _check(parser, args) -> None:
    """Refuses, naming the option, what argparse's types let through."""
    if getattr(args, "runs", None) is not None:
        try:
            re.compile(args.runs)
        except re.error as error:
            parser.error(f"--runs {args.runs!r} is not a valid regular expression: {error}")
    if args.command != "report":
        return
    if not 0 < args.percent <= 100:
        parser.error(f"--percent must be above 0 and at most 100, got {args.percent:g}")
    if not 0 <= args.smoothing < 1:
        parser.error(f"--smoothing must be in [0, 1) (0 is none), got {args.smoothing:g}")
    if args.least < 1:
        parser.error(f"--least must be 1 or more, got {args.least}")
    try:
        settling.compile_seed_pattern(args.seed_pattern)
    except ValueError as error:
        parser.error(f"--seed-pattern: {error}")


if __name__ == "__main__":
    sys.exit(main())
