"""Layer dynamics from a Hugging Face ``transformers.Trainer``.

::

    from tb_layerdyn.integrations.transformers import LayerDynamicsCallback

    trainer = Trainer(model=model, args=args, train_dataset=data,
                      callbacks=[LayerDynamicsCallback(every=10)])

The callback attaches a tracker to the torch optimizer inside the Trainer's (accelerate's wrapper is
looked through) when training begins, and detaches it when training ends. Steps are the Trainer's
``global_step`` after the update (1 for the first, as the Trainer logs its loss). A step the
Trainer's ``GradScaler`` skips is not logged.

Where it writes: ``logdir`` when given; otherwise the run directory of the Trainer's own
``TensorBoardCallback`` (``TENSORBOARD_LOGGING_DIR``, or the newest ``<output_dir>/runs/*``, which
that callback creates when ``report_to`` includes ``"tensorboard"``), so the Layer Dynamics tab
and the Scalars tab name the same run; else a new ``<output_dir>/runs/<date>_<host>``.
"""

import os
import socket
from datetime import datetime

from transformers import TrainerCallback

from tb_layerdyn.tracking.attach import Attachment
from tb_layerdyn.tracking.tracker import LayerDynamics


def _reports_tensorboard(args) -> bool:
    report_to = args.report_to
    if isinstance(report_to, str):
        report_to = [report_to]
    return "tensorboard" in (report_to or []) or "all" in (report_to or [])


def trainer_logdir(args) -> str:
    """The directory the Trainer's TensorBoard logs go to, or where ours go without them."""
    env = os.environ.get("TENSORBOARD_LOGGING_DIR")
    if env:
        return os.path.expanduser(env)
    runs = os.path.join(args.output_dir, "runs")
    if _reports_tensorboard(args) and os.path.isdir(runs):
        entries = [os.path.join(runs, name) for name in os.listdir(runs)]
        entries = [path for path in entries if os.path.isdir(path)]
        if entries:
            return max(entries, key=os.path.getmtime)
    stamp = datetime.now().strftime("%b%d_%H-%M-%S")
    return os.path.join(runs, f"{stamp}_{socket.gethostname()}")


class LayerDynamicsCallback(TrainerCallback):
    """Logs layer dynamics at every ``every``-th optimizer step of a ``transformers.Trainer``.

    Args:
        every: log global steps ``s`` with ``s % every == 0``.
        logdir: where to write; by default beside the Trainer's own TensorBoard logs (see the
            module docstring).
        **options: ``LayerDynamics`` options (``groups``, ``rwc``, ``name``, ...).
    """

    def __init__(self, every=1, logdir=None, **options):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int (log every N optimizer steps), got {every!r}")
        self.every = every
        self.logdir = logdir
        self.options = options
        self.tracker = None
        self._attachment = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if model is None or optimizer is None:
            raise ValueError("LayerDynamicsCallback needs the Trainer's model and optimizer at on_train_begin")
        writer = None
        if state.is_world_process_zero:
            writer = self.logdir if self.logdir is not None else trainer_logdir(args)
        self.tracker = None  # a second train() starts over; the old tracker must not linger
        self.tracker = LayerDynamics(model, writer, **self.options)
        self._attachment = Attachment(
            self.tracker, optimizer, every=self.every, step_of=lambda: state.global_step + 1
        )

    def on_train_end(self, args, state, control, **kwargs):
        if self._attachment is not None:
            self._attachment.detach()
            self._attachment = None
        if self.tracker is not None:
            self.tracker.flush()
