"""The traps a logging call can fall into without an error, each caught and said once.

- **Steps.** A step must be an int in ``[0, 2**63)`` (the event's int64); one that does not increase
  (a batch index instead of the global step, a resumed loop) is logged with one warning, since
  TensorBoard then drops the values already logged at that step and later.
- **Gradients.** A plain call that sees no gradient, or only zero gradients, on every trainable
  layer (``zero_grad()`` ran before it) warns once.
- **Writers.** Two trackers writing one run directory under one name would mix their records in
  one tag, or two models in one run: the second is refused with a request for ``name=``.

Checks on the hot path cost a few numpy operations; nothing here touches a tensor.
"""

import operator
import os
import sys
import threading
import warnings
import weakref

import numpy as np
import torch

# The event's step is an int64.
MAX_STEP = 2**63 - 1

# Frames in these directories are not the user's: warnings point past them.
_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(module.__file__)) + os.sep
    for module in (sys.modules["tb_layerdyn"], torch)
)


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning raised by the caller point at the first frame
    outside this package and torch (the user's line, e.g. ``tracker.log(step)`` or
    ``optimizer.step()``)."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame = frame.f_back
        level += 1
    return level


class NoGradientWarning(UserWarning):
    """A logging call saw no gradient (or only zeros) on every trainable layer."""


class StepOrderWarning(UserWarning):
    """A logging call's step does not come after the previous call's."""


def checked_step(step) -> int:
    """The step as an int, or a clear error naming it.

    Raises:
        TypeError: ``step`` is not an integer (a bool included).
        ValueError: it is negative or does not fit an event's int64 step.
    """
    if isinstance(step, bool):
        raise TypeError("step must be an int, got bool")
    try:
        step = operator.index(step)
    except TypeError:
        raise TypeError(f"step must be an int, got {type(step).__name__}") from None
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step > MAX_STEP:
        raise ValueError(f"step must be at most 2**63 - 1 (an event's int64 step), got {step}")
    return step


class StepOrder:
    """Remembers the last step logged and warns once when a step does not increase."""

    def __init__(self):
        self.last = None
        self._warned = False

    def check(self, step: int) -> None:
        last = self.last
        self.last = step
        if last is None or step > last or self._warned:
            return
        self._warned = True
        repeated = "repeats" if step == last else "goes back from"
        warnings.warn(
            f"step {step} {repeated} the previous call's step {last}. TensorBoard keeps, per tag, "
            f"only the records written last from a step on: when it loads this run it drops the "
            f"values logged earlier at steps >= {step}, and shows (as read() does) only those "
            "logged after. Pass the global step (optimizer steps so far), not a batch or epoch "
            "index; a resumed run that restarts from a checkpoint's step replaces what came "
            "after it (warned once)",
            StepOrderWarning,
            stacklevel=user_stacklevel(),
        )


class GradientCheck:
    """Warns once when a plain call finds no gradient, or only zeros, on every trainable layer.

    Both mean the call sits after ``zero_grad()`` when earlier calls saw real gradients, or when the
    first call already sees only zeros (a gradient exists, so a backward pass ran, and was zeroed).
    A first call that finds no gradient at all is the initial weights being recorded before
    training (``tracker.log(0)`` before the loop); it warns only if the next call finds none
    either, as it does when ``zero_grad(set_to_none=True)`` runs before every call.
    """

    def __init__(self):
        self._seen_real = False
        self._calls = 0
        self._warned = False
        self._first_had_none = False

    def saw_real(self) -> None:
        """Counts a call known to have seen a real gradient (what ``check`` would conclude)."""
        self._calls += 1
        self._seen_real = True

    def check(self, has_grad, grad_squares, trainable) -> None:
        """
        Args:
            has_grad: bool per layer, a gradient was present.
            grad_squares: per layer, the sum of squared gradients.
            trainable: bool per layer, some parameter requires a gradient.
        """
        self._calls += 1
        if self._warned or not trainable.any():
            return
        real = has_grad & (grad_squares != 0)  # NaN counts as real: another warning covers it
        if real[trainable].any():
            self._seen_real = True
            return
        if self._calls == 1 and not has_grad[trainable].any():
            self._first_had_none = True  # before training: wait for the next call
            return
        if self._calls > 1 and not self._seen_real and not (self._calls == 2 and self._first_had_none):
            return
        self._warned = True
        what = "no gradient" if not has_grad[trainable].any() else "only zero gradients"
        warnings.warn(
            f"this call saw {what} on every trainable layer, so grad_norm is NaN or 0 for all of "
            "them. Most likely optimizer.zero_grad() ran before the call. Either call it after "
            "optimizer.step() and before zero_grad(), or let the optimizer log: "
            "tracker.attach(optimizer) reads the gradients in the step itself (warned once)",
            NoGradientWarning,
            stacklevel=user_stacklevel(),
        )


# Run directory -> {tracker name: weak reference to the tracker that claimed it}.
_claims = {}
_claims_lock = threading.Lock()


def claim(log_dir: str, name, model, tracker) -> None:
    """Registers a tracker as the one writing model ``name`` into a run directory.

    Raises:
        ValueError: another live tracker already writes that name there (for another model, or
            for the same model: two trackers of one layout would interleave their records in
            one tag).
    """
    key = os.path.abspath(log_dir)
    with _claims_lock:
        taken = _claims.setdefault(key, {})
        holder = taken.get(name)
        other = holder() if holder is not None else None
        previous = other._model() if other is not None else None
        if previous is not None and other is not tracker:
            same = previous is model
            label = "this model" if same else f"another model ({type(previous).__name__})"
            hint = (
                "log through one tracker (log_layer_dynamics reuses one per writer and model)"
                if same
                else "give each tracker its own name=, e.g. LayerDynamics(generator, writer, "
                "name='generator') and LayerDynamics(discriminator, writer, name='discriminator')"
            )
            shown = "without a name" if name is None else f"under name={name!r}"
            raise ValueError(
                f"a LayerDynamics tracker already logs {label} into {key!r} {shown}; "
                f"TensorBoard would mix their values. {hint}"
            )
        taken[name] = weakref.ref(tracker)


def trainable(layers) -> np.ndarray:
    """Per layer: some parameter requires a gradient."""
    return np.array([any(p.requires_grad for _, p in lay.params) for lay in layers], dtype=bool)
