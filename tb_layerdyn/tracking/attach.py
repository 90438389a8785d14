"""Logging attached to an optimizer: one log per optimizer step, wherever ``zero_grad()`` sits.

``LayerDynamics.attach(optimizer)`` registers a step pre-hook and a step post-hook on the optimizer:

- **pre-hook** (before the update): the tracker settles its layers and reads the gradients the
  step is about to use. When the step is given a closure (LBFGS; Lightning always passes one), the
  closure computes the gradients inside the step, so they are read right after it returns.
- **post-hook** (after the update): the weights are measured and written at that step.

The first pre-hook also records the weights before the first update as the initial and previous
weights, so the first logged step already has an RWC and an update size, and distances are from the
weights before training. With ``every=N`` only steps ``s`` with ``s % N == 0`` are logged; RWC and
update size then span the N updates since the previous log. An update that never runs (a
``GradScaler`` that found inf or NaN gradients skips ``optimizer.step()``) fires neither hook: it
is not logged and not counted.
"""

import torch


def innermost_optimizer(optimizer):
    """The ``torch.optim.Optimizer`` whose ``step`` updates the weights, through wrappers that keep
    it as ``.optimizer`` (accelerate's ``AcceleratedOptimizer``, Lightning's
    ``LightningOptimizer`` as ``._optimizer``)."""
    while True:
        inner = getattr(optimizer, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            inner = getattr(optimizer, "_optimizer", None)
        if isinstance(inner, torch.optim.Optimizer) and inner is not optimizer:
            optimizer = inner
            continue
        return optimizer


class Attachment:
    """A tracker's hooks on one optimizer. ``detach()`` (or leaving a ``with`` block) removes them.

    Args:
        tracker: the ``LayerDynamics`` that measures and writes.
        optimizer: a ``torch.optim.Optimizer`` (wrappers are looked through).
        every: log every this many optimizer steps.
        start: the step of the first update after attaching (steps then count the updates).
        step_of: instead of counting, a function giving the step of the update being made (the
            integrations pass their framework's global step).
    """

    def __init__(self, tracker, optimizer, every=1, start=0, step_of=None):
        inner = innermost_optimizer(optimizer)
        if not isinstance(inner, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int (log every N optimizer steps), got {every!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a non-negative int (the first update's step), got {start!r}")
        self.optimizer = inner
        self.every = every
        self._tracker = tracker
        self._start = start
        self._step_of = step_of
        self._updates = 0
        self._started = False
        self._pending = None
        self._handles = [
            inner.register_step_pre_hook(self._before_step),
            inner.register_step_post_hook(self._after_step),
        ]
        tracker._attachments.append(self)

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def _step(self) -> int:
        return self._step_of() if self._step_of is not None else self._start + self._updates

    def _before_step(self, optimizer, args, kwargs):
        step = self._step()
        due = step % self.every == 0
        if not due and self._started:
            return None
        self._started = True
        call = self._tracker._begin_attached(step)
        if not due or call is None:
            return None
        self._pending = (step, call)
        # ``args`` starts with the optimizer itself; a closure is the next one or a keyword.
        closure = kwargs.get("closure", args[1] if len(args) > 1 else None)
        if closure is None:
            self._tracker._read_grads(call)
            return None

        def closure_then_read():
            loss = closure()
            self._tracker._read_grads(call)
            return loss

        if "closure" in kwargs:
            return args, dict(kwargs, closure=closure_then_read)
        return (args[0], closure_then_read) + tuple(args[2:]), kwargs

    def _after_step(self, optimizer, args, kwargs):
        self._updates += 1
        pending, self._pending = self._pending, None
        if pending is not None:
            self._tracker._finish(pending[1], pending[0], attached=True)

    def detach(self) -> None:
        """Removes the hooks; the optimizer and the model are as they were before ``attach``."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._pending = None
        self._tracker._attachments = [a for a in self._tracker._attachments if a is not self]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.detach()
