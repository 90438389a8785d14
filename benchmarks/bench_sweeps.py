"""Interpolation sweeps: ``interpolation_sweep`` beside the obvious loop and the suffix-only ideal.

The obvious loop builds a state dict per alpha (the end weights with the moving entries replaced by
``torch.lerp(theta0, theta1, alpha)``), calls ``load_state_dict`` and evaluates under
``torch.no_grad()`` in eval mode. ``interpolation_sweep`` writes into the model's tensors in place,
reuses the end model's evaluation at alpha = 1 and, for the layer and parameter scopes, serves
every operation the moving tensors cannot affect from one recorded evaluation
(``tb_layerdyn.sweeps.op_cache``); per scalar it also rebuilds the operations after the moving one
in the changed channels only (``tb_layerdyn.sweeps.channel_delta``, equal up to float rounding,
hence a non-zero ``max abs diff``).

The *ideal* is what reuse could at best do, written by hand for the model: one evaluation of the
end model that keeps the input of every layer, then per curve and alpha (but 1) only the rest of
the forward, from that layer's kept input, with the moving tensors set in place. It uses the same
modules and data, and is checked to give the loop's values. For the whole model it is one
evaluation per alpha. ResNet-18 has none (its suffixes start inside residual blocks).

LeNet-5 comes in three forms with equal weights: ``modules`` (the project's ``LeNet5``: modules
for every step, a ``flatten`` call in its forward), ``functional`` (``F.relu``, ``F.max_pool2d``
and ``view`` between its convolution and linear modules) and ``Sequential``. The MLP is an
``nn.Sequential``; ResNet-18's forward is not.

Torch runs on one thread here; the three variants run in turn within each repetition (rotating
which goes first), so that their ratios share the machine's drift. Models and evaluation sets (as
in the project's performance notes): LeNet-5 on 512 samples of 1x32x32, the MLP 784-512-256-10 on
512 samples, ResNet-18 on 64 samples of 3x32x32, each in two batches. Start weights are a fresh
initialization, end weights the same plus Gaussian noise. The parameter scope takes 2 scalars per
layer. ResNet-18 sweeps 6 of its 41 layers (evenly spaced in depth, first and last included) and 1
scalar per layer, to keep the run short.

Columns:

``model``, ``scope``   what was swept; ``curves`` how many curves, ``alphas`` points per curve;
``loop s``, ``sweep s``, ``ideal s``   median wall times (the sweep's evaluation of the end model
                       and layer ordering included);
``speedup x``          median of the paired ratios ``loop s / sweep s``;
``ideal x``            the same for the ideal: ``loop s / ideal s``;
``of ideal %``         median of the paired ratios ``ideal s / sweep s``: how close the sweep gets;
``cpu speedup x``, ``cpu ideal x``   ``loop / sweep`` and ``loop / ideal`` of process CPU times:
                       steadier than wall time when other jobs share the cores (they count the
                       work, not the waiting);
``target x``           the targets on LeNet-5: 3 for layers (and 80 % of the ideal), 5 for
                       parameters (on the modules form), else empty;
``max abs diff``       the largest difference between the sweep's and the loop's metric values.

Run alone with ``python -m benchmarks.bench_sweeps [--quick]``.
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks import timing
from demo.models import FunctionalLeNet5, lenet5, mlp, resnet18, sequential_lenet5
from tb_layerdyn.sweeps import interpolation_sweep, make_eval_fn
from tb_layerdyn.sweeps.interpolation import choose_scalars, parameter_curve_name
from tb_layerdyn.sweeps.session import SweepSession

LENET_FORMS = ("LeNet-5 modules", "LeNet-5 functional", "LeNet-5 Sequential")
MODELS = LENET_FORMS + ("MLP", "ResNet-18")
TARGETS = {(form, "layers"): 3.0 for form in LENET_FORMS}
TARGETS[("LeNet-5 modules", "parameters")] = 5.0
# The ideal must give the loop's values; it is the same arithmetic, so only rounding may differ.
IDEAL_TOLERANCE = 1e-5


BUILDERS = {
    "LeNet-5 modules": lenet5,
    "LeNet-5 functional": FunctionalLeNet5,
    "LeNet-5 Sequential": sequential_lenet5,
    "MLP": mlp,
    "ResNet-18": resnet18,
}


def _stages(name, model):
    """The forward as ``[(layer, step)]``: each step starts with its layer; ``None`` for ResNet."""
    if name in LENET_FORMS:
        return [
            ("conv1", lambda x: F.max_pool2d(F.relu(model.conv1(x)), 2)),
            ("conv2", lambda x: F.max_pool2d(F.relu(model.conv2(x)), 2).flatten(1)),
            ("fc1", lambda x: F.relu(model.fc1(x))),
            ("fc2", lambda x: F.relu(model.fc2(x))),
            ("fc3", model.fc3),
        ]
    if name == "MLP":
        stages = []
        for index, module in enumerate(model):
            if index == 0 or next(module.parameters(recurse=False), None) is not None:
                stages.append((str(index), [module]))
            else:
                stages[-1][1].append(module)
        return [(layer, nn.Sequential(*modules)) for layer, modules in stages]
    return None


def _setup(name, quick):
    torch.manual_seed(0)
    model = BUILDERS[name]()
    if name == "MLP":
        shape, samples = (784,), 512
    elif name == "ResNet-18":
        shape, samples = (3, 32, 32), 32 if quick else 64
    else:
        shape, samples = (1, 32, 32), 512
    model.eval()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.02)
    generator = torch.Generator().manual_seed(1)
    half = samples // 2
    batches = [
        (torch.randn((half,) + shape, generator=generator),
         torch.randint(0, 10, (half,), generator=generator))
        for _ in range(2)
    ]
    return model, start, batches


def _subset(model, name):
    with SweepSession(model, lambda m: {"x": 0.0}, model.state_dict()) as session:
        names = [layer.name for layer in session.layers]
    if name != "ResNet-18":
        return None, names
    picks = sorted({round(i * (len(names) - 1) / 5) for i in range(6)})
    chosen = [names[i] for i in picks]
    return chosen, chosen


def _jobs(model, eval_fn, start, scope, layer_names, per_layer, seed):
    """``[(curve, layer, [(tensor name, index or None)])]``: what each curve moves."""
    if scope == "model":
        return [("model", None, [(name, None) for name, _ in model.named_parameters()])]
    if scope == "layers":
        return [(layer, layer, [(name, None) for name in _own(model, layer)])
                for layer in layer_names]
    jobs = []
    with SweepSession(model, eval_fn, start, layer_names=layer_names) as session:
        for layer in session.layers:
            for name, index in choose_scalars(session, layer, per_layer, seed):
                jobs.append((parameter_curve_name(name, index), layer.name, [(name, index)]))
    return jobs


def _obvious_loop(model, eval_fn, start, alphas, jobs):
    """The plain reference; returns {curve: {metric: array}}."""
    end = {k: v.clone() for k, v in model.state_dict().items()}
    curves = {}
    with torch.no_grad():
        for curve, _, moving in jobs:
            rows = []
            for alpha in alphas:
                state = {k: v.clone() for k, v in end.items()}
                for name, index in moving:
                    if index is None:
                        state[name] = torch.lerp(start[name], end[name], float(alpha))
                    else:
                        state[name][index] = torch.lerp(
                            start[name][index], end[name][index], float(alpha))
                model.load_state_dict(state)
                rows.append(eval_fn(model))
            curves[curve] = {m: np.array([r[m] for r in rows]) for m in rows[0]}
        model.load_state_dict(end)
    return curves


def _suffix_metrics(stages, first, inputs, batches, keep=None):
    """``make_eval_fn``'s loss and accuracy, running the forward from stage ``first`` on.

    ``keep``, if given, collects each stage's input per batch: ``keep[stage][batch]``.
    """
    total_loss, correct, count = 0.0, 0, 0
    for batch, (x, (_, targets)) in enumerate(zip(inputs, batches)):
        for stage, (_, step) in enumerate(stages[first:], first):
            if keep is not None:
                keep.setdefault(stage, {})[batch] = x
            x = step(x)
        size = len(targets)
        total_loss += float(F.cross_entropy(x, targets)) * size
        correct += int((x.argmax(dim=1) == targets).sum())
        count += size
    return {"loss": total_loss / count, "accuracy": correct / count}


def _ideal(model, stages, batches, start, alphas, jobs):
    """The suffix-only ideal (see the module docstring); returns {curve: {metric: array}}."""
    live = dict(model.named_parameters())
    end = {name: tensor.detach().clone() for name, tensor in live.items()}
    first_stage = {layer: position for position, (layer, _) in enumerate(stages)}
    curves = {}
    with torch.no_grad():
        cached = {}
        at_end = _suffix_metrics(stages, 0, [x for x, _ in batches], batches, keep=cached)
        for curve, layer, moving in jobs:
            first = 0 if layer is None else first_stage[layer]
            inputs = [cached[first][batch] for batch in range(len(batches))]
            rows = []
            for alpha in alphas:
                if alpha == 1.0:
                    rows.append(at_end)
                    continue
                for name, index in moving:
                    if index is None:
                        torch.lerp(start[name], end[name], float(alpha), out=live[name])
                    else:
                        live[name][index] = torch.lerp(
                            start[name][index], end[name][index], float(alpha))
                rows.append(_suffix_metrics(stages, first, inputs, batches))
            for name, _ in moving:
                live[name].copy_(end[name])
            curves[curve] = {m: np.array([r[m] for r in rows]) for m in rows[0]}
    return curves


def _own(model, layer):
    module = model.get_submodule(layer)
    return [f"{layer}.{n}" for n, _ in module.named_parameters(recurse=False)]


def _largest_difference(curves, other):
    return max(
        float(np.max(np.abs(curves[c][m] - other[c][m]))) for c in curves for m in curves[c]
    )


def run(quick):
    """Rows of the table; see the module docstring."""
    threads = torch.get_num_threads()
    # One thread: on shared cores an idle OpenMP worker spins, which blurs CPU-time ratios.
    torch.set_num_threads(1)
    try:
        return _rows(quick)
    finally:
        torch.set_num_threads(threads)


def _rows(quick):
    alphas = np.linspace(0.0, 1.0, 6 if quick else 21)
    rows = []
    for name in MODELS:
        model, start, batches = _setup(name, quick)
        eval_fn = make_eval_fn(F.cross_entropy, batches)
        stages = _stages(name, model)
        selection, layer_names = _subset(model, name)
        repetitions = 1 if quick else (2 if name == "ResNet-18" else 3)
        for scope in ("model", "layers", "parameters"):
            if quick and name == "ResNet-18" and scope == "parameters":
                continue
            per_layer = 1 if name == "ResNet-18" else 2
            jobs = _jobs(model, eval_fn, start, scope, layer_names, per_layer, 0)
            outputs = {}

            def loop():
                outputs["loop"] = _obvious_loop(model, eval_fn, start, alphas, jobs)

            def sweep():
                outputs["sweep"] = interpolation_sweep(
                    model, eval_fn, start, alphas=alphas, scope=scope, layers=selection,
                    params_per_layer=per_layer,
                ).curves

            def ideal():
                outputs["ideal"] = _ideal(model, stages, batches, start, alphas, jobs)

            variants = {"loop": loop, "sweep": sweep}
            if stages is not None:
                variants["ideal"] = ideal
            cpu = {}
            seconds = timing.interleaved(variants, repetitions, cpu=cpu)
            if stages is not None:
                off = _largest_difference(outputs["loop"], outputs["ideal"])
                if off > IDEAL_TOLERANCE:
                    raise RuntimeError(f"the ideal of {name} / {scope} is off by {off:.3g}")
            rows.append(_row(name, scope, alphas, outputs, seconds, cpu))
    return rows


def _row(name, scope, alphas, outputs, seconds, cpu):
    def paired(numerator, denominator, table=seconds):
        return timing.median([a / b for a, b in zip(table[numerator], table[denominator])])

    has_ideal = "ideal" in seconds
    return {
        "model": name,
        "scope": scope,
        "curves": len(outputs["sweep"]),
        "alphas": len(alphas),
        "loop s": timing.median(seconds["loop"]),
        "sweep s": timing.median(seconds["sweep"]),
        "ideal s": timing.median(seconds["ideal"]) if has_ideal else "",
        "speedup x": paired("loop", "sweep"),
        "ideal x": paired("loop", "ideal") if has_ideal else "",
        "of ideal %": 100.0 * paired("ideal", "sweep") if has_ideal else "",
        "cpu speedup x": paired("loop", "sweep", cpu),
        "cpu ideal x": paired("loop", "ideal", cpu) if has_ideal else "",
        "target x": TARGETS.get((name, scope), ""),
        "max abs diff": _largest_difference(outputs["loop"], outputs["sweep"]),
    }


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run("--quick" in sys.argv)))
