"""Reuses, across the evaluations of a sweep, every operation the moving tensors cannot affect.

When only some tensors move (one layer, or one scalar of it), every torch operation that does not
depend on them computes the same value at every alpha: the whole forward in front of the first
read of a moving tensor, whatever mix of modules, functional calls (``F.relu``,
``F.max_pool2d``), views, arithmetic and in-place operations it is written in, and after it every
operation on other data (a later batch's layers in front of the moving one, the other branch of a
skip connection). Nothing assumes an architecture: a ``TorchFunctionMode`` watches real
evaluations, seeing each torch function, method and operator call in order.

How
---
1. **Record** (``record``, once per sweep, at the end point): every operation runs, and
   ``op_trace`` notes its arguments, result, and what it read, wrote in place or viewed.
2. **Plan** (one ``OperationCache`` per set of moving tensors): ``op_trace`` derives which
   operations depend on those tensors (or on random numbers) and which results to serve.
3. **Replay** (every evaluation of the curve): operations are numbered in call order, as when
   recording. A served operation returns its recorded result without running, provided it is the
   same function with the same arguments: the same tensors by origin (the result of the same
   earlier operation of this evaluation, or the same unmodified outside tensor, or one equal to
   it) and equal plain values. Every other operation runs, after a check that it reads the
   recorded tensors it read then. Module hooks and Python code run as usual around served
   results.
4. **Departure**: at the first operation that differs from the recording (another function, other
   inputs: data-dependent control flow, another batch) the replay stops serving and runs the rest
   of the evaluation plainly; the values stay exact. In the rare case where that happens between
   a served tensor's creation and an in-place write to it that was served, the evaluation is
   repeated without the cache and the cache turns itself off.
5. **Check**: after each replay every served tensor must hold its recorded version; if one was
   modified in place, the cache turns itself off for the rest of the curve (the evaluation just
   made is still exact: it saw what a plain run sees), and later plans recompute that result.
6. **Rebuild** (optional, ``rebuild=True``, for sweeps of single scalars): the first replay, and
   each ``rebase``, keep a copy of the input and output of every supported operation that depends
   on the moving tensors, and later replays rebuild those from the copy in the channels that
   changed (``channel_delta``).

Assumptions, which hold for evaluation code: apart from what depends on the moving tensors, the
evaluation runs the same operations on the same inputs every time (the sweep runs in eval mode;
random draws are detected and recomputed), and operations are functions of their arguments.
Tensors without version counters (made under ``torch.inference_mode``) cannot be checked for
in-place writes: then nothing is reused and every evaluation runs plainly.
"""

from torch.overrides import TorchFunctionMode

from tb_layerdyn.sweeps import channel_delta
from tb_layerdyn.sweeps import op_arguments as arguments
from tb_layerdyn.sweeps.op_trace import Recording

# Reference copies for rebuilt operations stop being kept beyond this many bytes per cache.
REFERENCE_BUDGET = 256 * 2**20


class _StaleReplay(BaseException):
    """A replay departed from the recording before a served tensor had its recorded contents.

    A ``BaseException``, so that an ``except Exception`` in the evaluation code does not swallow
    it on its way back to ``OperationCache.replay``, which then evaluates without the cache.
    """


class _Watch(TorchFunctionMode):
    """Hands every torch call of the evaluation to one handler."""

    def __init__(self, handle):
        super().__init__()
        self._handle = handle

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return self._handle(func, args, kwargs if kwargs is not None else {})


def record(evaluate):
    """Runs ``evaluate()`` while recording its operations.

    Returns:
        ``(result of evaluate(), op_trace.Recording)``; the recording's ``untrackable`` says why
        it cannot be used, when it cannot.
    """
    recording = Recording()
    with _Watch(recording.observe):
        result = evaluate()
    recording.finish()
    return result, recording


class OperationCache:
    """Serves, during repeated evaluations, the operations the moving tensors cannot affect.

    Use one instance per set of moving tensors, all from one recording made while they held the
    values they are put back to between curves: ``replay`` each evaluation, ``close`` at the end
    (also as a context manager).

    Args:
        recording: from ``record``, made with the model at the end point.
        moving: the tensors (parameters, buffers) whose values change between evaluations.
        rebuild: also rebuild, in replays, the operations that read the moving tensors from
            reference calls (kept by the first replay and by ``rebase``) when only a few channels
            changed (``channel_delta``). Pays when the moving tensors change in single scalars.
    """

    def __init__(self, recording, moving, *, rebuild=False):
        self._recording = recording
        self._rebuild = bool(rebuild)
        self._enabled = not recording.untrackable
        self._plan = recording.plan(list(moving)) if self._enabled else None
        self._references = {}
        self._reference_bytes = 0
        self._renewed = None
        self._taken = False
        self._provenance = channel_delta.Provenance()
        self._producers = {}
        self._position = 0
        self._steps = None
        self._outputs = None
        self._departed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def enabled(self):
        """Whether replays still reuse anything (the cache turns itself off when it must)."""
        return self._enabled and self._plan is not None

    @property
    def served_ops(self):
        """How many operations each replay serves instead of running (0 when off)."""
        return self._plan.served_count if self.enabled else 0

    @property
    def rebuilt_ops(self):
        """How many operations each replay may rebuild from a reference call (0 when off)."""
        return len(self._references) if self.enabled else 0

    def replay(self, evaluate):
        """Runs ``evaluate()`` with the recorded operations served; returns its result.

        With ``rebuild``, the first replay also takes the reference calls (see ``rebase``).
        """
        if self._rebuild and not self._taken and self._renewed is None:
            return self.rebase(evaluate)
        if not self.enabled or not (self._plan.served_count or self._references
                                    or self._renewed is not None):
            return evaluate()
        self._position = 0
        self._steps = self._plan.steps
        self._outputs = [None] * len(self._steps)
        self._departed = False
        self._provenance.reset()
        try:
            with _Watch(self._replay_op):
                result = evaluate()
        except _StaleReplay:
            result = _StaleReplay
        finally:
            self._end_pass()
        if result is _StaleReplay:
            self._enabled = False
            return evaluate()
        for tensor, recorded in self._plan.versions:
            if arguments.version(tensor) != recorded:
                # A served tensor was modified in place after being handed out: it cannot serve
                # the next evaluation. This one was still exact (it saw what a plain run sees).
                self._enabled = False
                break
        return result

    def rebase(self, evaluate):
        """Replays ``evaluate()`` and makes it the reference of later rebuilds; returns its result.

        A rebuild is cheapest when few channels differ from its reference: call this when the
        moving tensors are back at the values that later evaluations differ least from (the end
        point, between two scalars). A reference not renewed by this pass is dropped.
        """
        if not (self._rebuild and self.enabled):
            return self.replay(evaluate)
        self._taken = True
        self._renewed = {}
        self._reference_bytes = 0
        try:
            result = self.replay(evaluate)
        finally:
            renewed, self._renewed = self._renewed, None
        self._references = renewed
        return result

    def keep_references(self):
        """Keeps the references for another scalar, forgetting which calls it found dense.

        References taken by ``rebase`` at the end point serve every scalar that moves from there;
        only which calls changed in most channels depends on the scalar.
        """
        for ref in self._references.values():
            ref.dense = False

    def close(self):
        """Drops the plan and the references."""
        self._plan = None
        self._references = {}
        self._provenance.reset()
        self._producers = {}

    def _end_pass(self):
        self._steps = None
        self._outputs = None
        self._producers = {}
        self._provenance.reset()

    def _replay_op(self, func, args, kwargs):
        position = self._position
        self._position = position + 1
        if self._departed:
            return func(*args, **kwargs)
        steps = self._steps
        if position >= len(steps) or steps[position][0] is not func:
            return self._depart(position, func, args, kwargs)
        _, args_descriptor, kwargs_descriptor, served, strict, result, leaves, copy = (
            steps[position]
        )
        outputs = self._outputs
        versions = self._recording.outside_versions
        if served:
            if arguments.matches_call(
                args_descriptor, kwargs_descriptor, args, kwargs, outputs, versions
            ):
                outputs[position] = leaves
                return arguments.fresh_containers(result) if copy else result
            return self._depart(position, func, args, kwargs)
        seen = []
        served_tensors = self._plan.served_tensors
        same = arguments.same_sources(args_descriptor, args, outputs, served_tensors, seen) and (
            arguments.same_sources(kwargs_descriptor, kwargs, outputs, served_tensors, seen)
        )
        if same and strict:
            same = arguments.matches_call(
                args_descriptor, kwargs_descriptor, args, kwargs, outputs, versions
            )
        if not same:
            return self._depart(position, func, args, kwargs)
        before = [tensor._version for tensor in seen]
        result = self._run(position, func, args, kwargs)
        if any(tensor._version != version for tensor, version in zip(seen, before)):
            # It wrote into a served tensor, which the recording did not see: serve no more.
            self._depart(position + 1)
        if strict:
            # Later served operations may take it. Results of moving operations are not kept:
            # they would stay in memory until the evaluation ends.
            outputs[position] = arguments.tensor_leaves(result)
        return result

    def _depart(self, position, func=None, args=(), kwargs=None):
        """Stops serving for the rest of this evaluation, from ``position`` on."""
        self._departed = True
        for made, last_write in self._plan.pending:
            if made < position <= last_write:
                raise _StaleReplay
        if func is None:
            return None
        return func(*args, **kwargs)

    def _run(self, position, func, args, kwargs):
        """Runs one operation that is not served, rebuilt where it can be."""
        ref = self._references.get(position) if self._references else None
        result = None
        if ref is not None:
            call = channel_delta.parse(func, args, kwargs)
            rebuilt = None if call is None else channel_delta.rebuild(ref, call, self._provenance)
            if rebuilt is not None:
                result, channels, dim = rebuilt
                self._provenance.note(position, result, channels, dim)
        if result is None:
            result = func(*args, **kwargs)
        if self._renewed is not None and self._plan.moves[position]:
            self._keep_reference(position, func, args, kwargs, result)
        return result

    def _keep_reference(self, position, func, args, kwargs, result):
        if self._reference_bytes > REFERENCE_BUDGET:
            return
        call = channel_delta.parse(func, args, kwargs)
        if call is None:
            return
        source = self._producers.get(id(call.x))
        if source is None or source[0] is not call.x or source[1] != arguments.version(call.x):
            source = None
        # The input is the previous reference's output, unchanged: share that copy.
        x0 = None if source is None else self._renewed[source[2]].y0
        ref = channel_delta.record(call, result, x0)
        if ref is None:
            return
        if source is not None:
            ref.source = source[2]
        # Strong references until the evaluation ends, so that ids stay unique.
        self._producers[id(result)] = (result, arguments.version(result), position)
        self._reference_bytes += ref.nbytes
        self._renewed[position] = ref
