"""The demo's training loop: one model, one seed, one run directory of layer dynamics.

The loop is what a user writes: a ``SummaryWriter``, a standard SGD step, their own scalars, and one
``log_layer_dynamics`` call per step; models marked for it also take interpolation sweeps (see
``interpolation``).
"""

import copy
import dataclasses
import functools
import warnings
from typing import Callable, Dict, List

import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import log_layer_dynamics
from tb_layerdyn.tracking.guards import NoGradientWarning
from demo import data
from demo import interpolation
from demo import models


@dataclasses.dataclass(frozen=True)
class DemoModel:
    """A model the demo trains, the early/middle/late groups of its layers, and whether its runs
    take interpolation sweeps."""

    factory: Callable[[], torch.nn.Module]
    groups: Dict[str, List[str]]
    learning_rate: float
    sweeps: bool = False


DEMO_MODELS = {
    "lenet5": DemoModel(
        factory=models.lenet5,
        groups={"early": ["conv1", "conv2"], "middle": ["fc1"], "late": ["fc2", "fc3"]},
        learning_rate=0.05,
        sweeps=True,
    ),
    # nn.Sequential names its Linear layers by position: Flatten is 0, the ReLUs 2 and 4.
    "mlp": DemoModel(
        factory=functools.partial(models.mlp, in_features=32 * 32),
        groups={"early": ["1"], "middle": ["3"], "late": ["5"]},
        learning_rate=0.05,
    ),
}


def accuracy(model, images, labels, batch_size=512):
    """Fraction of ``images`` classified correctly, without recording gradients."""
    was_training = model.training
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = model(images[start : start + batch_size])
            correct += (logits.argmax(dim=1) == labels[start : start + batch_size]).sum().item()
    model.train(was_training)
    return correct / len(labels)


def train_run(
    name, seed, logdir, train_set, test_set, *, steps, batch_size=64, eval_every=25, sweeps=True
):
    """Trains one demo model from ``seed`` and logs it into ``logdir``.

    Args:
        name: a key of ``DEMO_MODELS``.
        seed: seeds the initial weights and the batch order.
        logdir: the run directory, e.g. ``runs/lenet5-seed0``.
        train_set, test_set: ``(images, labels)`` pairs from ``data.glyphs``.
        steps: optimizer steps; layer dynamics are logged at every one, and a model marked with
            ``sweeps`` takes interpolation sweeps at ``interpolation.sweep_steps(steps)``.
        batch_size: images per step.
        eval_every: steps between test-accuracy evaluations (the last step is always evaluated).
        sweeps: ``False`` skips the interpolation sweeps even for a model marked for them.

    Returns:
        The test accuracy after the last step.
    """
    spec = DEMO_MODELS[name]
    torch.manual_seed(seed)
    model = spec.factory()
    start = copy.deepcopy(model.state_dict())
    sweep_at = interpolation.sweep_steps(steps) if spec.sweeps and sweeps else []
    optimizer = torch.optim.SGD(model.parameters(), lr=spec.learning_rate, momentum=0.9)
    batches = data.batches(*train_set, batch_size, seed=seed)
    test_accuracy = accuracy(model, *test_set)
    with SummaryWriter(logdir) as writer:
        # Step 0 records the initial weights, so distances are measured from the true start;
        # there is no gradient before training, as the tracker would otherwise warn.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoGradientWarning)
            log_layer_dynamics(writer, model, 0, groups=spec.groups)
        writer.add_scalar("accuracy/test", test_accuracy, 0)
        for step in range(1, steps + 1):
            images, labels = next(batches)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # After the step and before the next zero_grad: the gradients are still there.
            log_layer_dynamics(writer, model, step, groups=spec.groups)
            writer.add_scalar("loss/train", loss.item(), step)
            if step % eval_every == 0 or step == steps:
                test_accuracy = accuracy(model, *test_set)
                writer.add_scalar("accuracy/test", test_accuracy, step)
            if step in sweep_at:
                interpolation.log_sweep(writer, model, start, test_set, step)
    return test_accuracy
