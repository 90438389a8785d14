"""Reuses, across the evaluations of one sweep, the module outputs that the swept tensors cannot reach.

When only some tensors move (one layer, or one scalar of it), every module call that finishes
before any of them is first read computes the same output at every alpha. This works for any
forward, not only ``nn.Sequential``: the cache never assumes an architecture, it watches one real
evaluation.

How
---
1. **Record** (the first evaluation of a sweep): every module's ``forward`` is wrapped so that each
   call gets an id in call order within its top-level ("root") call, and a ``TorchFunctionMode``
   watches every torch operation for the first one that reads a swept tensor, whoever reads it
   (the layer itself, a tied weight, a parent's functional call). A call that returned before that
   moment is a candidate, and its output is kept.
2. **Check**: a candidate whose output was later modified in place (e.g. by ``ReLU(inplace=True)``)
   is dropped, because its stored tensor no longer holds what it returned. Of the remaining ones
   only the outermost are kept; their nested calls are covered by them.
3. **Replay** (every later evaluation): a kept call returns its stored output without running.
   A root call is replayed only if its inputs equal those seen when recording; otherwise it runs
   normally, as does everything after the first read of a swept tensor. Only ``forward`` is
   replaced, so the module's hooks still run around a reused output.
4. **Rebuild** (optional, ``rebuild=True``, for sweeps of single scalars): the calls after the first
   read keep a copy of their input and output, and in replays a supported module is rebuilt from
   that copy in the channels that changed (``channel_delta``); ``rebase`` renews the copies.

Assumptions, which hold for evaluation code: the evaluation is deterministic (the sweep runs in eval
mode; dropout in train mode would draw new masks in a plain loop), feeds the same inputs in the same
order every time, and module calls depend only on their inputs, parameters and buffers. After every
replay the stored outputs are checked for in-place changes; if one changed, the cache turns itself
off for the rest of the sweep (the evaluation just made is still exact).
"""

import contextlib

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from tb_layerdyn.sweeps import channel_delta

# Reference copies for rebuilt calls stop being kept beyond this many bytes per cache.
REFERENCE_BUDGET = 256 * 2**20


class _Call:
    """What the record pass learnt about one module call."""

    __slots__ = ("cid", "nested", "output", "versions", "candidate")

    def __init__(self, cid):
        self.cid = cid
        self.nested = 0
        self.output = None
        self.versions = None
        self.candidate = False


class _Root:
    """One top-level call: its inputs and the calls it made."""

    __slots__ = (
        "leaves", "spec", "versions", "calls", "read_swept", "skips", "refs", "outputs", "fresh"
    )

    def __init__(self, args, kwargs):
        self.leaves, self.spec = pytree.tree_flatten((args, kwargs))
        self.versions = [_version(leaf) for leaf in self.leaves]
        self.calls = []
        self.read_swept = False
        self.skips = {}
        self.refs = {}
        self.outputs = {}
        self.fresh = set()


def _version(value):
    return value._version if isinstance(value, torch.Tensor) else None


def _tensor_versions(value):
    return [(t, t._version) for t in pytree.tree_leaves(value) if isinstance(t, torch.Tensor)]


def _unchanged(versions):
    return all(tensor._version == version for tensor, version in versions)


def _same_value(new, old, old_version):
    if new is old:
        return not isinstance(old, torch.Tensor) or old._version == old_version
    if isinstance(old, torch.Tensor) or isinstance(new, torch.Tensor):
        return (
            isinstance(old, torch.Tensor)
            and isinstance(new, torch.Tensor)
            and old._version == old_version
            and new.shape == old.shape
            and new.dtype == old.dtype
            and new.device == old.device
            and bool(torch.equal(new, old))
        )
    try:
        return bool(new == old)
    except Exception:  # an object whose == is not a plain truth value cannot be trusted
        return False


class _ReadWatcher(TorchFunctionMode):
    """Marks the current root as soon as any torch operation reads a swept tensor."""

    def __init__(self, cache):
        super().__init__()
        self._cache = cache

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        cache = self._cache
        root = cache._root
        if cache._depth and root is not None and not root.read_swept:
            swept = cache._swept
            for leaf in pytree.tree_leaves((args, kwargs)):
                if isinstance(leaf, torch.Tensor) and id(leaf) in swept:
                    root.read_swept = True
                    break
        return func(*args, **kwargs)


class PrefixCache:
    """Skips, during repeated evaluations, the module calls the swept tensors cannot affect.

    Use one instance per set of swept tensors: ``record`` the first evaluation, ``replay`` the
    others, ``close`` at the end (also as a context manager).

    Args:
        model: the model whose modules are wrapped.
        swept: the tensors (parameters, buffers) whose values change between evaluations.
        rebuild: also rebuild, in replays, the calls after the first read of a swept tensor from
            their recorded ones when only a few channels changed (``channel_delta``). Pays when
            the swept tensors are single scalars; record at the end point then.
    """

    def __init__(self, model, swept, *, rebuild=False):
        self._model = model
        self._swept = {id(t) for t in swept}
        self._rebuild = bool(rebuild)
        self._reference_bytes = 0
        self._provenance = channel_delta.Provenance()
        self._roots = []
        self._recording = False
        self._rebasing = False
        self._enabled = True
        self._root = None
        self._root_index = -1
        self._local = 0
        self._depth = 0
        self._stack = []
        self._patched = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def skipped_calls(self):
        """How many module calls each replay skips (0 when the cache is off)."""
        if not self._enabled:
            return 0
        return sum(call.nested + 1 for root in self._roots for call in root.skips.values())

    @property
    def rebuilt_calls(self):
        """How many module calls each replay may rebuild from a recorded call."""
        return sum(len(root.refs) for root in self._roots) if self._enabled else 0

    def record(self, evaluate):
        """Runs ``evaluate()`` once, learning which calls to skip later; returns its result."""
        self._roots = []
        self._reference_bytes = 0
        self._recording = True
        try:
            with self._wrapped(), _ReadWatcher(self):
                result = evaluate()
        finally:
            self._recording = False
        self._choose_skips()
        return result

    def replay(self, evaluate):
        """Runs ``evaluate()`` with the recorded calls skipped; returns its result."""
        if not self._enabled or not any(root.skips or root.refs for root in self._roots):
            return evaluate()
        with self._wrapped():
            result = evaluate()
        self._check_stored()
        return result

    def rebase(self, evaluate):
        """Replays ``evaluate()`` and makes it the reference of later rebuilds; returns its result.

        A rebuild is cheapest when few channels differ from its reference: call this when the
        swept tensors are back at the values that later evaluations differ least from (the end
        point, between two scalars). A reference not renewed by this pass is dropped.
        """
        if not self._enabled or not any(root.refs for root in self._roots):
            return self.replay(evaluate)
        self._reference_bytes = 0
        for root in self._roots:
            root.fresh = set()
        self._rebasing = True
        try:
            with self._wrapped():
                result = evaluate()
        finally:
            self._rebasing = False
            for root in self._roots:
                root.refs = {cid: ref for cid, ref in root.refs.items() if cid in root.fresh}
                root.outputs = {}
        self._check_stored()
        return result

    def _check_stored(self):
        if not all(
            _unchanged(call.versions) for root in self._roots for call in root.skips.values()
        ):
            # A stored output was modified in place after being handed out: it cannot serve
            # the next evaluation. This one was still exact (it saw what a plain run sees).
            self._enabled = False

    def close(self):
        """Drops the stored outputs."""
        self._roots = []
        self._provenance.reset()

    def _choose_skips(self):
        for root in self._roots:
            root.outputs = {}
            covered_until = -1
            for call in sorted(root.calls, key=lambda c: c.cid):
                if call.cid <= covered_until:
                    call.output = None
                    continue
                if call.candidate and _unchanged(call.versions):
                    root.skips[call.cid] = call
                    covered_until = call.cid + call.nested
                    for cid in range(call.cid, covered_until + 1):
                        root.refs.pop(cid, None)
                else:
                    call.output = None
            root.calls = []

    @contextlib.contextmanager
    def _wrapped(self):
        self._patch()
        try:
            yield
        finally:
            self._unpatch()

    def _patch(self):
        self._root = None
        self._root_index = -1
        self._depth = 0
        self._stack = []
        for module in self._model.modules():
            had_own = "forward" in module.__dict__
            previous = module.__dict__.get("forward")
            rebuildable = self._rebuild and not had_own and channel_delta.supports(module)
            module.forward = self._wrapper(module, module.forward, rebuildable)
            self._patched.append((module, had_own, previous))

    def _unpatch(self):
        for module, had_own, previous in reversed(self._patched):
            if had_own:
                module.__dict__["forward"] = previous
            else:
                del module.__dict__["forward"]
        self._patched = []
        self._root = None

    def _wrapper(self, module, forward, rebuildable):
        cache = self

        def wrapped(*args, **kwargs):
            if cache._depth == 0:
                cache._begin_root(args, kwargs)
            root = cache._root
            cid = cache._local
            cache._local += 1
            ref = None
            if not cache._recording:
                call = root.skips.get(cid) if root is not None else None
                if call is not None:
                    cache._local += call.nested
                    return call.output
                ref = root.refs.get(cid) if rebuildable and root is not None else None
                if ref is not None:
                    rebuilt = channel_delta.rebuild(ref, args[0], cache._provenance)
                    if rebuilt is not None:
                        output, channels, dim = rebuilt
                        cache._provenance.note(cid, output, channels, dim)
                        if cache._rebasing:
                            cache._keep_reference(root, cid, module, args, kwargs, output)
                        return output
            cache._depth += 1
            try:
                output = forward(*args, **kwargs)
            finally:
                cache._depth -= 1
            if cache._recording and root is not None:
                call = _Call(cid)
                call.nested = cache._local - cid - 1
                if not root.read_swept:
                    call.candidate = True
                    call.output = output
                    call.versions = _tensor_versions(output)
                root.calls.append(call)
                if rebuildable and root.read_swept:
                    cache._keep_reference(root, cid, module, args, kwargs, output)
            elif cache._rebasing and ref is not None:
                cache._keep_reference(root, cid, module, args, kwargs, output)
            return output

        return wrapped

    def _keep_reference(self, root, cid, module, args, kwargs, output):
        if self._reference_bytes > REFERENCE_BUDGET:
            return
        ref = channel_delta.record(module, args, kwargs, output, self._swept)
        if ref is None:
            root.refs.pop(cid, None)
            return
        root.fresh.add(cid)
        self._reference_bytes += ref.nbytes
        source = root.outputs.get(id(args[0]))
        if source is not None and source[0] is args[0] and source[1] == args[0]._version:
            ref.source = source[2]
        # Strong references until the root ends, so that ids stay unique.
        root.outputs[id(output)] = (output, output._version, cid)
        root.refs[cid] = ref

    def _begin_root(self, args, kwargs):
        self._root_index += 1
        self._local = 0
        self._provenance.reset()
        if self._root is not None:
            self._root.outputs = {}
        if self._recording:
            self._root = _Root(args, kwargs)
            self._roots.append(self._root)
            return
        self._root = None
        if self._root_index >= len(self._roots):
            return
        recorded = self._roots[self._root_index]
        leaves, spec = pytree.tree_flatten((args, kwargs))
        if spec != recorded.spec or len(leaves) != len(recorded.leaves):
            return
        if all(
            _same_value(new, old, version)
            for new, old, version in zip(leaves, recorded.leaves, recorded.versions)
        ):
            self._root = recorded
