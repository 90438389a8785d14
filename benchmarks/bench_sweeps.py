"""Interpolation sweeps: ``interpolation_sweep`` beside the obvious loop, per model and scope.

The obvious loop builds a state dict per alpha (the end weights with the moving entries replaced by
``torch.lerp(theta0, theta1, alpha)``), calls ``load_state_dict`` and evaluates under
``torch.no_grad()`` in eval mode. ``interpolation_sweep`` writes into the model's tensors in place,
reuses the end model's evaluation at alpha = 1 and, for the layer and parameter scopes, reuses the
module outputs in front of the moving layer (``tb_layerdyn.sweeps.prefix_cache``); per scalar it
also rebuilds the calls after it in the changed channels only (``tb_layerdyn.sweeps.channel_delta``,
equal up to float rounding, hence a non-zero ``max abs diff``). LeNet-5's and
ResNet-18's forwards are not ``nn.Sequential``; the MLP's is.

Torch runs on one thread here. Models and evaluation sets (as in the project's performance notes): LeNet-5 on 512 samples of
1x32x32, the MLP 784-512-256-10 on 512 samples, ResNet-18 on 64 samples of 3x32x32, each in two
batches. Start weights are a fresh initialization, end weights the same plus Gaussian noise.
The parameter scope takes 2 scalars per layer. ResNet-18 sweeps 6 of its 41 layers (evenly spaced in
depth, first and last included) and 1 scalar per layer, to keep the run short.

Columns:

``model``, ``scope``   what was swept; ``curves`` how many curves, ``alphas`` points per curve;
``loop s``             median wall time of the obvious loop;
``sweep s``            median wall time of ``interpolation_sweep`` (its evaluation of the end
                       model and layer ordering included);
``speedup x``          median of the paired ratios ``loop s / sweep s``;
``cpu speedup x``      the same ratio of process CPU times: steadier than wall time when other
                       jobs share the cores (it counts the work, not the waiting);
``target x``           issue 4's target on LeNet-5 (3 for layers, 5 for parameters), else empty;
``max abs diff``       the largest difference between the two methods' metric values.

Run alone with ``python -m benchmarks.bench_sweeps [--quick]``.
"""

import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks import timing
from demo.models import lenet5, mlp, resnet18
from tb_layerdyn.sweeps import interpolation_sweep, make_eval_fn
from tb_layerdyn.sweeps.interpolation import choose_scalars, parameter_curve_name
from tb_layerdyn.sweeps.session import SweepSession

TARGETS = {("LeNet-5", "layers"): 3.0, ("LeNet-5", "parameters"): 5.0}


def _setup(name, quick):
    torch.manual_seed(0)
    if name == "LeNet-5":
        model, shape, samples = lenet5(), (1, 32, 32), 512
    elif name == "MLP":
        model, shape, samples = mlp(), (784,), 512
    else:
        model, shape, samples = resnet18(), (3, 32, 32), 32 if quick else 64
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
    return model, start, make_eval_fn(F.cross_entropy, batches)


def _subset(model, name):
    with SweepSession(model, lambda m: {"x": 0.0}, model.state_dict()) as session:
        names = [layer.name for layer in session.layers]
    if name != "ResNet-18":
        return None, names
    picks = sorted({round(i * (len(names) - 1) / 5) for i in range(6)})
    chosen = [names[i] for i in picks]
    return chosen, chosen


def _obvious_loop(model, eval_fn, start, alphas, scope, layer_names, per_layer, seed):
    """The plain reference; returns {curve: {metric: array}}."""
    end = {k: v.clone() for k, v in model.state_dict().items()}
    params = dict(model.named_parameters())
    curves = {}
    jobs = []
    if scope == "model":
        jobs.append(("model", [(name, None) for name in params]))
    elif scope == "layers":
        for layer in layer_names:
            jobs.append((layer, [(name, None) for name in _own(model, layer)]))
    else:
        with SweepSession(model, eval_fn, start, layer_names=layer_names) as session:
            for layer in session.layers:
                for name, index in choose_scalars(session, layer, per_layer, seed):
                    jobs.append((parameter_curve_name(name, index), [(name, index)]))
    with torch.no_grad():
        for curve, moving in jobs:
            rows = []
            for alpha in alphas:
                state = {k: v.clone() for k, v in end.items()}
                for name, index in moving:
                    if index is None:
                        state[name] = torch.lerp(start[name], end[name], float(alpha))
                    else:
                        state[name][index] = torch.lerp(start[name][index], end[name][index], float(alpha))
                model.load_state_dict(state)
                rows.append(eval_fn(model))
            curves[curve] = {m: np.array([r[m] for r in rows]) for m in rows[0]}
        model.load_state_dict(end)
    return curves


def _own(model, layer):
    module = model.get_submodule(layer)
    return [f"{layer}.{n}" for n, _ in module.named_parameters(recurse=False)]


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
    repetitions = 1 if quick else 2
    rows = []
    for name in ("LeNet-5", "MLP", "ResNet-18"):
        model, start, eval_fn = _setup(name, quick)
        selection, layer_names = _subset(model, name)
        for scope in ("model", "layers", "parameters"):
            if quick and name == "ResNet-18" and scope == "parameters":
                continue
            outputs = {}
            cpu = {"loop": [], "sweep": []}
            per_layer = 1 if name == "ResNet-18" else 2

            def loop():
                started = time.process_time()
                outputs["loop"] = _obvious_loop(
                    model, eval_fn, start, alphas, scope, layer_names, per_layer, 0
                )
                cpu["loop"].append(time.process_time() - started)

            def sweep():
                started = time.process_time()
                outputs["sweep"] = interpolation_sweep(
                    model, eval_fn, start, alphas=alphas, scope=scope, layers=selection,
                    params_per_layer=per_layer,
                ).curves
                cpu["sweep"].append(time.process_time() - started)

            seconds = timing.interleaved({"loop": loop, "sweep": sweep}, repetitions)
            diff = max(
                float(np.max(np.abs(outputs["loop"][c][m] - outputs["sweep"][c][m])))
                for c in outputs["loop"]
                for m in outputs["loop"][c]
            )
            ratios = [a / b for a, b in zip(seconds["loop"], seconds["sweep"])]
            rows.append({
                "model": name,
                "scope": scope,
                "curves": len(outputs["sweep"]),
                "alphas": len(alphas),
                "loop s": timing.median(seconds["loop"]),
                "sweep s": timing.median(seconds["sweep"]),
                "speedup x": timing.median(ratios),
                "cpu speedup x": timing.median([a / b for a, b in zip(cpu["loop"], cpu["sweep"])]),
                "target x": TARGETS.get((name, scope), ""),
                "max abs diff": diff,
            })
    return rows


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run("--quick" in sys.argv)))
