"""The shared setting of every sweep: endpoints, layers, evaluation and the promise to restore.

``SweepSession`` is entered once per call of the public API. Inside it the model is in eval mode,
gradients are off, and the model holds the end point ``theta1``; swept tensors are changed in place
and put back to ``theta1`` after each curve; on exit the model gets back exactly what it had.
"""

import contextlib
from collections.abc import Mapping

import torch

from tb_layerdyn.sweeps import endpoints, layers as layer_lib, op_cache
from tb_layerdyn.sweeps.restore import ModelSnapshot


class SweepSession(contextlib.AbstractContextManager):
    """Holds a model between its two endpoints for the duration of one sweep.

    Args:
        model: the ``torch.nn.Module`` to sweep.
        eval_fn: ``eval_fn(model) -> {name: float}``; must return the same names every call.
        start: the start point ``theta0`` (see ``endpoints.resolve_endpoint``).
        end: the end point ``theta1``; ``None`` for the model's current values.
        interpolate_buffers: move floating-point buffers (BatchNorm running statistics) with the
            parameters instead of keeping them at their end values.
        reuse_activations: record the end model's evaluation operation by operation, and serve
            from it the operations the swept tensors cannot affect (``op_cache``).
        layer_names: restrict the layers to these names; ``None`` for all.

    Attributes (valid inside the ``with`` block):
        layers: the swept ``layers.Layer`` objects in depth order.
        metrics: the metric names ``eval_fn`` returns.
        end_metrics: ``{name: float}`` at ``theta1``.
        theta0, theta1: tensors by canonical name.
    """

    def __init__(
        self,
        model,
        eval_fn,
        start,
        end=None,
        *,
        interpolate_buffers=False,
        reuse_activations=True,
        layer_names=None,
    ):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(eval_fn):
            raise TypeError(
                f"eval_fn must be callable as eval_fn(model) -> dict of floats, got "
                f"{type(eval_fn).__name__}; make_eval_fn(loss_fn, batches) builds one"
            )
        self.model = model
        self.eval_fn = eval_fn
        self.interpolate_buffers = bool(interpolate_buffers)
        self.reuse_activations = bool(reuse_activations)
        self._start = start
        self._end = end
        self._layer_names = None if layer_names is None else list(layer_names)
        self._snapshot = None
        self._stack = None
        self._recording = None
        self.metrics = None

    def __enter__(self):
        self._snapshot = ModelSnapshot(self.model)
        current = self._snapshot.values()
        self.theta0 = endpoints.resolve_endpoint(
            self._start, self.model, argument="start", current=current,
            need_buffers=self.interpolate_buffers,
        )
        self.theta1 = endpoints.resolve_endpoint(
            self._end, self.model, argument="end", current=current,
            need_buffers=self.interpolate_buffers,
        )
        found = layer_lib.find_layers(self.model)
        if self._layer_names is not None:
            known = {layer.name for layer in found}
            unknown = [name for name in self._layer_names if name not in known]
            if unknown:
                raise ValueError(
                    f"layers names unknown layers {unknown}; the model's layers are "
                    f"{sorted(known)}"
                )
        self.live = dict(self.model.named_parameters())
        self.live.update(self.model.named_buffers())
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(torch.no_grad())
        try:
            for module in self.model.modules():
                module.training = False
            if self._end is not None:
                self.set_end(list(self.theta1))
            self.end_metrics, ordered = layer_lib.order_by_first_call(
                found, self.model, self._evaluate_end
            )
        except BaseException:
            self.__exit__(None, None, None)
            raise
        wanted = None if self._layer_names is None else set(self._layer_names)
        self.layers = [layer for layer in ordered if wanted is None or layer.name in wanted]
        return self

    def _evaluate_end(self):
        """Evaluates the end model, recorded operation by operation when activations are reused."""
        if not self.reuse_activations:
            return self.evaluate()

        def recorded(evaluate):
            result, recording = op_cache.record(evaluate)
            if not recording.untrackable:
                self._recording = recording
            return result

        return self.evaluate(recorded)

    def __exit__(self, *exc):
        self._recording = None
        if self._stack is not None:
            self._stack.close()
            self._stack = None
        if self._snapshot is not None:
            self._snapshot.restore()
            self._snapshot = None
        return False

    def moving(self, layer):
        """Canonical names of the tensors a layer sweep moves: its parameters (and buffers)."""
        names = list(layer.params)
        if self.interpolate_buffers:
            names += layer.buffers
        return [name for name in names if name in self.theta0]

    def param_names(self):
        """Canonical names of all parameters."""
        return [name for name, _ in self.model.named_parameters()]

    def all_moving(self):
        """Canonical names of the tensors a whole-model sweep moves."""
        names = self.param_names()
        if self.interpolate_buffers:
            names += [
                name
                for name, buffer in self.model.named_buffers()
                if buffer.is_floating_point() and name in self.theta0
            ]
        return names

    def lerp(self, names, alpha):
        """Sets the named tensors to ``(1 - alpha) * theta0 + alpha * theta1``, in place."""
        for name in names:
            torch.lerp(self.theta0[name], self.theta1[name], alpha, out=self.live[name])

    def set_end(self, names):
        """Puts the named tensors back to ``theta1`` (where the recording saw them)."""
        for name in names:
            self.live[name].copy_(self.theta1[name])
        if self._recording is not None:
            self._recording.restored([self.live[name] for name in names])

    def still(self, names):
        """Whether the named tensors do not move between the endpoints (equal and finite)."""
        for name in names:
            start, end = self.theta0[name], self.theta1[name]
            if not (torch.equal(start, end) and bool(torch.isfinite(end).all())):
                return False
        return True

    def evaluate(self, run=None):
        """Runs ``eval_fn`` on the model (through ``run`` when given) and checks its answer."""
        if run is None:
            answer = self.eval_fn(self.model)
        else:
            answer = run(lambda: self.eval_fn(self.model))
        if any(module.training for module in self.model.modules()):
            # eval_fn switched to train mode: BatchNorm updated its running statistics, which a
            # plain loop (load_state_dict per alpha) would reset before the next evaluation: to
            # the end point's where it has them, else to the model's own.
            self._snapshot.restore_buffers()
            self.set_end([name for name, _ in self.model.named_buffers() if name in self.theta1])
            if self._recording is not None:
                self._recording.restored([buffer for _, buffer in self.model.named_buffers()])
            for module in self.model.modules():
                module.training = False
        return self._check(answer)

    def cached(self, names):
        """An evaluator for repeated evaluations while only ``names`` move.

        Returns:
            A callable ``evaluate() -> {name: float}`` and a ``close()`` to call after the last use.
        """
        evaluate, _, close = self._cached(names, rebuild=False)
        return evaluate, close

    def cached_scalars(self, names):
        """Like ``cached``, for when only single scalars of ``names`` move, one at a time.

        The operations after the moving layer are also rebuilt channel by channel from reference
        calls, which the first evaluation takes (``OperationCache(rebuild=True)``). ``rebase()``,
        called while the tensors hold ``theta1`` between two scalars, takes them there once, so
        that each later evaluation differs from them only in the channels its own scalar reaches.

        Returns:
            ``evaluate() -> {name: float}``, ``rebase()`` and ``close()``.
        """
        return self._cached(names, rebuild=True)

    def _cached(self, names, rebuild):
        if self._recording is None:
            return self.evaluate, lambda: None, lambda: None
        cache = op_cache.OperationCache(
            self._recording, [self.live[name] for name in names], rebuild=rebuild
        )

        at_end = []

        def evaluate():
            return self.evaluate(cache.replay)

        def rebase():
            if not cache.rebuilt_ops:
                return  # the first evaluation takes the references itself
            if at_end:
                cache.keep_references()
            else:
                self.evaluate(cache.rebase)
                at_end.append(True)

        return evaluate, rebase, cache.close

    def _check(self, answer):
        if not isinstance(answer, Mapping) or not answer:
            raise TypeError(
                f"eval_fn must return a non-empty dict of named floats (e.g. "
                f"{{'loss': 0.3, 'accuracy': 0.9}}), got {type(answer).__name__}"
            )
        values = {}
        for key, value in answer.items():
            if not isinstance(key, str):
                raise TypeError(f"eval_fn returned a metric named {key!r}; names must be str")
            try:
                values[key] = float(value)
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(
                    f"eval_fn returned {key!r} = {value!r}, which is not a number; return floats "
                    "or one-element tensors"
                ) from None
        if self.metrics is None:
            self.metrics = list(values)
        elif list(values) != self.metrics:
            raise ValueError(
                f"eval_fn returned metrics {list(values)} after {self.metrics}; it must return "
                "the same names in the same order on every call"
            )
        return values

