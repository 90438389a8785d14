"""What the demo measured about the source documents' questions: the figures of README's Findings.

    python -m demo --no-tensorboard --logdir runs && python -m demo.findings runs

Reads the logdir the demo wrote (``tb_layerdyn.read``, nothing else) and prints, as markdown:

1. which layers settle first: per experiment, the rank correlation between depth and settling
   step (``Runs.settling``: RWC below 10% of its peak, or ``--percent``) with its spread over
   seeds, and which layer
   settles first and last in how many seeds;
2. which LeNet-5 layers are robust or ambient: per layer, the accuracy change when it is put back
   at its initial weights in the end sweep, over the seeds, and how many seeds label it robust;
3. how RWC differs by depth: per layer (per stage for the ResNet), the mean RWC over the first and
   the second half of training, averaged over seeds, and the rank correlation of depth and mean
   RWC;
4. whether the stripe nets' last layer slows first: in how many seeds the last layer's RWC and
   update size settle first, and the first layer's last.
"""

import argparse
import math
from typing import Dict, List

import numpy as np

import tb_layerdyn
from tb_layerdyn.reading import settling
from tb_layerdyn.reading.sweep_records import RobustnessTable

STRIPES = ("stripes-4layer", "stripes-4layer-10ch-1x1", "stripes-6layer")
LENET = "lenet5"
RESNET = "resnet"


def _signed(value: float) -> str:
    return "undefined" if math.isnan(value) else f"{value:+.2f}".replace("-", "\u2212")


def _range(values) -> str:
    spread = settling.spread(values)
    if spread.count == 0:
        return "undefined"
    return f"{_signed(spread.mean)} ± {spread.std:.2f} ({_signed(spread.low)} to {_signed(spread.high)})"


def _count(names: List[str]) -> str:
    """``fc3 5/5`` or ``conv2 2/3, conv4 1/3``: how often each name comes, most often first."""
    tally: Dict[str, int] = {}
    for name in names:
        tally[name] = tally.get(name, 0) + 1
    ordered = sorted(tally.items(), key=lambda item: -item[1])
    return ", ".join(f"{name} {n}/{len(names)}" for name, n in ordered)


def _first_and_last(result: settling.RunSettling):
    """The layers that settle first and those that settle last (a not-yet layer counts as last),
    each a list (several when they tie); both empty when no layer settled."""
    if not result.order:
        return [], []
    steps = {s.layer: (s.step if s.state == settling.SETTLED else math.inf) for s in result.layers
             if s.state in (settling.SETTLED, settling.NOT_YET)}
    low, high = min(steps.values()), max(steps.values())
    return (
        [layer for layer, step in steps.items() if step == low],
        [layer for layer, step in steps.items() if step == high],
    )


def _tied(layers: List[str]) -> str:
    """Layers that tie, joined by ``=``; past three, how many."""
    if not layers:
        return "none settled"
    return "=".join(layers) if len(layers) <= 3 else f"{len(layers)} layers tied"


def settling_section(runs, fraction) -> List[str]:
    lines = [
        "| experiment | seeds | rho(depth, settling step): mean ± sd (min to max) | settles first | settles last |",
        "|---|---|---|---|---|",
    ]
    for name, group in runs.settling(fraction=fraction).items():
        ends = [_first_and_last(r) for r in group.runs]
        c = group.correlation
        rho = "undefined (no layer settles)" if c.count == 0 else _range(r.correlation for r in group.runs)
        if 0 < c.count < len(group.runs):
            rho += f", defined in {c.count} of {len(group.runs)} seeds"
        lines.append(
            f"| {name} | {len(group.runs)} | {rho} | {_count([_tied(f) for f, _ in ends])} | "
            f"{_count([_tied(last) for _, last in ends])} |"
        )
    return lines


def robustness_section(runs, _fraction) -> List[str]:
    tables = []
    for key, run in runs.items():
        if not key.startswith(f"{LENET}/"):
            continue
        found = [s for s in run.sweeps if isinstance(s, RobustnessTable)]
        if found:
            tables.append(found[-1])
    if not tables:
        return ["No LeNet-5 robustness table in this logdir."]
    layers = tables[0].layers
    metric = tables[0].label_metric
    step = tables[0].step
    lines = [
        f"End sweep (step {step}), {len(tables)} seeds: change of test {metric} with one layer back "
        f"at its initial weights (threshold {tables[0].threshold:g} for robust).",
        "",
        f"| layer | {metric} change: mean (min to max) | robust in | largest drop in | rerandomized: mean |",
        "|---|---|---|---|---|",
    ]
    # Per seed, the layer whose re-initialization costs the most.
    worst = [int(np.argmin(t.change("reinitialized")[metric])) for t in tables]
    for i, layer in enumerate(layers):
        changes = [float(t.change("reinitialized")[metric][i]) for t in tables]
        fresh = [float(t.change("rerandomized")[metric][i]) for t in tables]
        robust = sum(t.labels[i] == "robust" for t in tables)
        lines.append(
            f"| {layer} | {_signed(np.mean(changes))} ({_signed(min(changes))} to {_signed(max(changes))}) "
            f"| {robust}/{len(tables)} | {worst.count(i)}/{len(tables)} | {_signed(np.nanmean(fresh))} |"
        )
    return lines


def _halves(run, values: np.ndarray):
    """Mean of each column over the first and the second half of the logged steps (NaN left out)."""
    middle = run.steps[0] + (run.steps[-1] - run.steps[0]) / 2
    early, late = values[run.steps <= middle], values[run.steps > middle]
    return np.nanmean(early, axis=0), np.nanmean(late, axis=0)


def rwc_section(runs, _fraction) -> List[str]:
    lines = []
    for experiment in (LENET, RESNET, *STRIPES):
        members = [run for key, run in runs.items() if key.startswith(f"{experiment}/")]
        if not members or "rwc" not in members[0].metrics:
            continue
        if experiment == RESNET:
            blocks = [g for g in members[0].groups.values() if g.kind == "block"]
            names = [g.name for g in blocks]
            tables = [np.stack([r.groups[n].metrics["rwc"] for n in names], axis=1) for r in members]
        else:
            names = members[0].layers
            tables = [r.metrics["rwc"] for r in members]
        halves = [_halves(r, t) for r, t in zip(members, tables)]
        early = np.mean([h[0] for h in halves], axis=0)
        late = np.mean([h[1] for h in halves], axis=0)
        overall = [np.nanmean(t, axis=0) for t in tables]
        rho = [settling.rank_correlation(np.arange(len(names)), o) for o in overall]
        lines += [
            f"**{experiment}** ({len(members)} seeds; rho(depth, mean RWC) {_range(rho)})",
            "",
            "| | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
            "| first half | " + " | ".join(f"{v:.2e}" for v in early) + " |",
            "| second half | " + " | ".join(f"{v:.2e}" for v in late) + " |",
            "",
        ]
    return lines[:-1]


def stripes_section(runs, fraction) -> List[str]:
    lines = [
        "| net | metric | last layer settles first | first layer settles last | rho(depth, step) |",
        "|---|---|---|---|---|",
    ]
    for experiment in STRIPES:
        members = {k: r for k, r in runs.items() if k.startswith(f"{experiment}/")}
        if not members:
            continue
        for metric in ("rwc", "update_size"):
            results = [r.settling(metric, fraction) for r in members.values()]
            ends = [_first_and_last(r) for r in results]
            last_layer = results[0].layers[-1].layer
            first_layer = results[0].layers[0].layer
            last_first = sum(last_layer in first for first, _ in ends)
            first_last = sum(first_layer in last for _, last in ends)
            lines.append(
                f"| {experiment} | {metric} | {last_first}/{len(results)} | {first_last}/{len(results)} "
                f"| {_range(r.correlation for r in results)} |"
            )
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m demo.findings", description=__doc__.split("\n")[0])
    parser.add_argument("logdir", nargs="?", default="runs", help="the demo's logdir (default: runs)")
    parser.add_argument(
        "--percent", type=float, default=settling.DEFAULT_FRACTION * 100,
        help="a layer settles once its metric stays below this percentage of its peak (default 10)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.percent <= 100:
        parser.error(f"--percent must be above 0 and at most 100, got {args.percent:g}")
    runs = tb_layerdyn.read(args.logdir)
    if not runs:
        parser.error(f"no runs under {args.logdir}: run python -m demo --no-tensorboard --logdir {args.logdir} first")
    sections = (
        ("Which layers settle first", settling_section),
        ("Robust and ambient LeNet-5 layers", robustness_section),
        ("RWC by depth", rwc_section),
        ("Does the stripe nets' last layer slow first?", stripes_section),
    )
    for title, section in sections:
        print(f"### {title}\n")
        print("\n".join(section(runs, args.percent / 100)))
        print()


if __name__ == "__main__":
    main()
