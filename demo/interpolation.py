"""The demo's interpolation sweeps: from the initial weights to the current ones, every scope.

A LeNet run sweeps halfway through training and at its end, so the tab has two sweeps of one run
to compare, and robustness tables that show which layers the trained model needs.
"""

from torch.nn import functional as F

from tb_layerdyn import interpolation_sweep, log_interpolation_sweep
from tb_layerdyn.sweeps import make_eval_fn

# Every interpolation scope; robustness is requested separately (``robustness=True``).
SCOPES = ("model", "layers", "parameters")
# Test images each alpha is evaluated on: enough for accuracy to move in steps of 0.2%, few
# enough that one sweep of every scope takes about a second on a laptop CPU.
EVAL_IMAGES = 512
PARAMS_PER_LAYER = 4


def sweep_steps(steps):
    """The training steps a run of ``steps`` steps sweeps at: halfway and the last, ascending."""
    return sorted({max(1, steps // 2), steps})


def log_sweep(writer, model, start, test_set, step):
    """Sweeps ``model`` from ``start`` to its current weights and logs it at ``step``.

    Args:
        writer: the run's ``SummaryWriter``.
        model: the model being trained; left bitwise as it was.
        start: the state dict of the initial weights.
        test_set: ``(images, labels)``; the first ``EVAL_IMAGES`` are evaluated.
        step: the training step the sweep is taken at.

    Returns:
        The ``SweepResult``, robustness table attached.
    """
    images, labels = test_set
    eval_fn = make_eval_fn(F.cross_entropy, [(images[:EVAL_IMAGES], labels[:EVAL_IMAGES])])
    result = interpolation_sweep(
        model,
        eval_fn,
        start,
        scope=SCOPES,
        params_per_layer=PARAMS_PER_LAYER,
        robustness=True,
    )
    log_interpolation_sweep(writer, result, step)
    return result
