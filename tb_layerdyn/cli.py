"""``tb-layerdyn``: the logged layer dynamics from the terminal, and for other tools.

    tb-layerdyn export LOGDIR [--format csv|parquet] [-o FILE] [--runs REGEX] [--metrics M ...]
    tb-layerdyn report LOGDIR [--runs REGEX] [--metric rwc] [--percent 10] [--smoothing 0]

``export`` writes the long table of ``tb_layerdyn.read()`` (``reading.export``); ``report``
prints per run the settling order, the robust and ambient layers and the layers that moved least
(``reading.report``). Neither imports torch.
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
    return parser


def main(argv=None) -> int:
    """Runs ``tb-layerdyn`` with ``argv`` (``sys.argv[1:]`` by default); returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    # read() reports files it skips through logging; without a handler they would be lost.
    logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.WARNING)
    try:
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
    if args.runs is not None:
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
