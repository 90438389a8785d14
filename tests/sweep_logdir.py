"""A logdir of interpolation sweeps written by the real API, and the results it was written from.

Shared by the plugin's sweep routes tests and the ``read`` tests, which check what they serve or
return against the ``SweepResult`` objects kept here.
"""

import dataclasses
import os
from typing import Dict, Tuple

import numpy as np
import torch
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from torch import nn
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import interpolation_sweep, log_interpolation_sweep, log_layer_dynamics
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.sweeps import make_eval_fn

ALPHAS = (-0.5, 0.0, 0.5, 1.0, 1.5)
SHORT_ALPHAS = (0.0, 0.5, 1.0)
SWEEP_STEPS = (4, 9)
TRAIN_STEPS = 10
MANY_STEPS = 12  # model sweeps of one tag, beyond the 10 tensors a stock Python loader keeps
# Steps at which ``sweeps_only`` has a model sweep written twice, with other alphas (another tag);
# the tags sort before the served one at one step and after it at the other.
REWRITTEN = {9: ((0.0, 1.0), SHORT_ALPHAS), 6: (SHORT_ALPHAS, (0.0, 0.75, 1.0))}

# A robustness table with an infinite and an undefined change, written by hand: metrics loss and
# accuracy, layers a, b, c.
DIVERGED_VALUES = np.array(
    [
        [[0.5, 0.5, 0.5], [0.9, 0.9, 0.9]],
        [[np.inf, 0.52, np.nan], [0.1, 0.9, np.nan]],
        [[np.nan, 0.7, 3.0], [np.nan, 0.85, 0.2]],
    ],
    dtype=np.float32,
)
DIVERGED_LAYOUT = encoding.robustness_layout(["loss", "accuracy"], ["a", "b", "c"], 0.1, "loss")
DIVERGED_STEP = 3


@dataclasses.dataclass
class SweepLogdir:
    """What ``write`` wrote.

    Attributes:
        logdir: the directory.
        results: ``{(run, step): SweepResult}``, the sweep each run serves at each step.
        superseded: ``{(run, step): SweepResult}`` written earlier at the same step and scope.
    """

    logdir: str
    results: Dict[Tuple[str, int], object]
    superseded: Dict[Tuple[str, int], object]


def tiny_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 3))


def _batches():
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(32, 4, generator=generator)
    targets = torch.randint(0, 3, (32,), generator=generator)
    return [(inputs, targets)]


def write(logdir):
    """Trains a tiny MLP and logs, into ``logdir``:

    * ``mlp``: per-layer metrics at every step and, at ``SWEEP_STEPS``, sweeps of every scope
      (two scalars per layer) with a robustness table labelled on the loss;
    * ``sweeps_only``: no per-layer metrics; a model sweep at each of ``MANY_STEPS`` steps and a
      layers sweep at ``SWEEP_STEPS``; at the steps of ``REWRITTEN`` two model sweeps, the
      second superseding the first;
    * ``metrics_only``: per-layer metrics, no sweep;
    * ``diverged``: ``DIVERGED_VALUES`` at ``DIVERGED_STEP``, written with TensorBoard's writer.
    """
    model = tiny_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    eval_fn = make_eval_fn(nn.functional.cross_entropy, _batches())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    inputs, targets = _batches()[0]
    results, superseded = {}, {}
    with SummaryWriter(os.path.join(logdir, "mlp")) as mlp, SummaryWriter(
        os.path.join(logdir, "sweeps_only")
    ) as only, SummaryWriter(os.path.join(logdir, "metrics_only")) as plain:
        for step in range(max(TRAIN_STEPS, MANY_STEPS)):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), targets).backward()
            optimizer.step()
            if step < TRAIN_STEPS:
                log_layer_dynamics(mlp, model, step)
                log_layer_dynamics(plain, model, step)
            walltime = 1000.0 + 10 * step
            if step in SWEEP_STEPS:
                result = interpolation_sweep(
                    model, eval_fn, start, alphas=ALPHAS,
                    scope=("model", "layers", "parameters"), params_per_layer=2,
                    robustness=True, label_metric="loss",
                )
                log_interpolation_sweep(mlp, result, step, walltime=walltime)
                results[("mlp", step)] = result
            if step in REWRITTEN:
                first, last = REWRITTEN[step]
                early = interpolation_sweep(model, eval_fn, start, alphas=first, scope="model")
                log_interpolation_sweep(only, early, step, walltime=walltime)
                superseded[("sweeps_only", step)] = early
            else:
                last = SHORT_ALPHAS
            scopes = ("model", "layers") if step in SWEEP_STEPS else ("model",)
            result = interpolation_sweep(model, eval_fn, start, alphas=last, scope=scopes)
            log_interpolation_sweep(only, result, step, walltime=walltime + 1)
            results[("sweeps_only", step)] = result
    diverged = os.path.join(logdir, "diverged")
    os.makedirs(diverged)
    writer = EventFileWriter(diverged)
    writer.add_event(
        event_pb2.Event(
            step=DIVERGED_STEP,
            wall_time=1.0,
            summary=encoding.sweep_pb(DIVERGED_VALUES, DIVERGED_LAYOUT),
        )
    )
    writer.close()
    return SweepLogdir(logdir, results, superseded)


def expected_scopes(logged):
    """``{run: [(step, scope)]}`` of every sweep each run should serve, sorted as served."""
    order = encoding.INTERPOLATION_SCOPES + (encoding.ROBUSTNESS_SCOPE,)
    found = {"diverged": [(DIVERGED_STEP, encoding.ROBUSTNESS_SCOPE)]}
    for (run, step), result in logged.results.items():
        scopes = list(result.scopes) + (["robustness"] if result.robustness is not None else [])
        found.setdefault(run, []).extend((step, scope) for scope in scopes)
    return {run: sorted(pairs, key=lambda p: (p[0], order.index(p[1]))) for run, pairs in found.items()}
