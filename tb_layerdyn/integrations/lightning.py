"""Layer dynamics from a Lightning ``Trainer`` (``lightning`` or ``pytorch_lightning``).

::

    from tb_layerdyn.integrations.lightning import LayerDynamicsCallback

    trainer = lightning.Trainer(callbacks=[LayerDynamicsCallback(every=10)])

The callback attaches a tracker to each of the Trainer's optimizers when fitting starts and
detaches it at the end. Lightning runs forward and backward inside ``optimizer.step`` (a closure),
so the gradients are read when the closure returns, after Lightning's gradient clipping. Steps are
``trainer.global_step`` as it stands during the update (0 for the first), the step Lightning logs
that batch's metrics at.

Where it writes: ``logdir`` when given; otherwise through the Trainer's ``TensorBoardLogger`` (its
``SummaryWriter``, the same event file as its scalars) when it has one; else
``<default_root_dir>/layer_dynamics``.
"""

import os

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    import pytorch_lightning as pl

from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn.tracking.attach import Attachment
from tb_layerdyn.tracking.tracker import LayerDynamics


def trainer_writer(trainer):
    """The ``SummaryWriter`` of the Trainer's TensorBoard logger, or ``None``."""
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            experiment = logger.experiment
            if isinstance(experiment, SummaryWriter):
                return experiment
    return None


class LayerDynamicsCallback(pl.Callback):
    """Logs layer dynamics at every ``every``-th optimizer step of a Lightning ``Trainer``.

    Args:
        every: log global steps ``s`` with ``s % every == 0``.
        logdir: where to write; by default through the Trainer's TensorBoard logger.
        **options: ``LayerDynamics`` options (``groups``, ``rwc``, ``name``, ...).
    """

    def __init__(self, every=1, logdir=None, **options):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int (log every N optimizer steps), got {every!r}")
        self.every = every
        self.logdir = logdir
        self.options = options
        self.tracker = None
        self._attachments = []

    def on_train_start(self, trainer, pl_module):
        writer = None
        if trainer.is_global_zero:
            writer = self.logdir
            if writer is None:
                writer = trainer_writer(trainer) or os.path.join(trainer.default_root_dir, "layer_dynamics")
        self.tracker = None  # a second train() starts over; the old tracker must not linger
        self.tracker = LayerDynamics(pl_module, writer, **self.options)
        for optimizer in trainer.optimizers:
            attachment = Attachment(
                self.tracker, optimizer, every=self.every, step_of=lambda: trainer.global_step
            )
            self._attachments.append(attachment)

    def on_train_end(self, trainer, pl_module):
        for attachment in self._attachments:
            attachment.detach()
        self._attachments = []
        if self.tracker is not None:
            self.tracker.flush()
