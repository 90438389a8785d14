"""Records one evaluation operation by operation, and plans its reuse for any set of moving tensors.

The recording sees every torch operation of an evaluation (``op_cache`` feeds it from a
``TorchFunctionMode``), in order, with the model at one point (the sweep's end point). For each it
keeps its arguments (``op_arguments``), its result, what it read, wrote in place or viewed, and
whether it drew random numbers. None of that depends on which tensors will move, so one recording
serves every layer and scalar of a sweep: ``plan(moving)`` derives what replays do when ``moving``
changes and everything else stays as recorded.

Which operations depend on the moving tensors
---------------------------------------------
An operation *moves* when one of its tensor arguments is a moving tensor, the result of a moving
operation, or a view of memory a moving operation wrote into or made; when it draws random numbers
(the default generators' states are compared around it, and an explicit ``generator`` counts); or
when its memory cannot be tracked. Everything else computes the recorded value at every alpha:
before the first read of a moving tensor that is every operation, and after it, every operation on
other data (the second batch's layers in front of the moving one, a skip connection's other
branch).

Which of those are served
-------------------------
A served operation is not run at a replay: it returns the recorded result object. So a tensor
made by served operations holds, during a replay, what it held at the end of the recording. That
is right for whoever reads it only if no operation that runs at replays writes into its memory,
and every one that reads it does so after the last served write (an in-place ReLU on a served
convolution output is fine; a residual ``h += f(h)`` with a moving ``f`` is not). Where that does
not hold, every operation that made, wrote or viewed that memory runs instead, at every replay,
which in turn may spoil other memory; this is repeated until nothing changes. Memory is told apart
by storage, so that views and in-place writes through them are seen; writes are seen as changes
of the tensors' version counters.

Operations that only change global state (no tensor in or out), change autograd metadata, return
objects other than tensors and plain values, take objects other than those (a NumPy array may hold
other values next time: their results are compared by value downstream), return views of tensors
the recording did not make, write into such tensors, or whose results require gradients, run at
every replay too.
"""

import weakref

import torch

from tb_layerdyn.sweeps import op_arguments as arguments

# Above this many bytes of new results, later operations run at every replay instead of being kept.
ACTIVATION_BUDGET = 1 << 30

READ, WRITE, VIEW = range(3)
# How a result relates to memory: newly made, a view of an argument's, or an argument itself.
NEW, ALIAS, SAME = range(3)

_ALWAYS_RUN = {
    torch.Tensor.requires_grad_, torch.Tensor.retain_grad, torch.Tensor.register_hook,
    torch.Tensor.backward, torch.Tensor.share_memory_, torch.Tensor.data_ptr,
    torch.Tensor.__hash__, torch.Tensor.__setstate__, torch.Tensor.untyped_storage,
}
if hasattr(torch.Tensor, "register_post_accumulate_grad_hook"):
    _ALWAYS_RUN.add(torch.Tensor.register_post_accumulate_grad_hook)


class TracedOp:
    """One recorded operation.

    Attributes:
        func: the function called.
        args, kwargs: descriptors of its arguments (``op_arguments.describe``).
        reads, writes: storages of its tensor arguments, and of those it wrote into.
        made: ``(storage, NEW | ALIAS | SAME)`` of each tensor in its result.
        sources: ``(position, leaf)`` of the recorded results among its arguments.
        drifts: it moves whatever moves (random draws, untracked memory, gradients).
        checked: a replay can tell whether it gets the recorded arguments (it takes tensors
            and plain values only), so that it computes the recorded result.
        keepable: it may be served, whatever moves.
        result, leaves, versions: its result, the tensors in it, and their versions at the end
            of the recording (kept for keepable operations only).
    """

    __slots__ = (
        "func", "args", "kwargs", "reads", "writes", "made", "sources", "drifts", "checked",
        "keepable", "result", "leaves", "versions",
    )

    def __init__(self, func, args, kwargs):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.reads = ()
        self.writes = ()
        self.made = ()
        self.sources = ()
        self.drifts = False
        self.checked = False
        self.keepable = False
        self.result = None
        self.leaves = None
        self.versions = None


class Plan:
    """What replays do at each position of the recorded operations, for one set of moving tensors.

    Attributes:
        steps: per position, ``(func, args, kwargs, served, strict, result, leaves, copy)``:
            ``strict`` for operations that run although they do not move (their arguments are
            checked in full), ``copy`` for served results holding lists (copied when served).
        moves: per position, whether the operation depends on the moving tensors.
        served_tensors: ``{id: tensor}`` of every tensor a replay hands out from the recording.
        versions: ``[(tensor, version)]`` of those as recorded; a replay that leaves one changed
            makes the cache stop (``OperationCache``).
        pending: ``[(made, last_write)]`` positions of memory that served operations make and
            later write in place: a replay that departs from the recording in between cannot go
            on with the served tensor (it would hold the later contents too early).
    """

    def __init__(self, ops, moves, served, pending):
        self.moves = moves
        self.pending = pending
        self.served_count = sum(served)
        self.served_tensors = {}
        self.versions = []
        for op, serve in zip(ops, served):
            if serve:
                for leaf, version in zip(op.leaves, op.versions):
                    if id(leaf) not in self.served_tensors:
                        self.served_tensors[id(leaf)] = leaf
                        self.versions.append((leaf, version))
        self.steps = [
            (op.func, op.args, op.kwargs, serve, op.checked and not moving,
             op.result if serve else None, op.leaves if serve else None,
             serve and arguments.has_list(op.result))
            for op, moving, serve in zip(ops, moves, served)
        ]


class _Memory:
    """What the recorded operations did to one storage that one of them made."""

    __slots__ = ("events",)

    def __init__(self, position):
        self.events = [(position, WRITE)]


class Recording:
    """One evaluation, operation by operation: ``observe`` runs each, ``plan`` derives the reuse.

    Args:
        budget: bytes of new results to keep at most (``ACTIVATION_BUDGET``).
    """

    def __init__(self, *, budget=ACTIVATION_BUDGET):
        self.ops = []
        self.untrackable = None
        self._budget = budget
        self._bytes = 0
        # Every result: id -> (weak reference, position, leaf index); weak, so that results not
        # kept need not stay in memory while recording.
        self._produced = {}
        # Storage -> _Memory for the storages results made; every such record, for ``plan``.
        self._memory = {}
        self._memories = []
        # Versions that outside tensors must have to count as recorded (see ``restored``).
        self.outside_versions = {}

    def observe(self, func, args, kwargs):
        """Runs one operation, records it, and returns its result."""
        position = len(self.ops)
        op = TracedOp(func, None, None)
        leaves = []
        sources = []
        state = {"untracked": False, "objects": False}

        def tensor(value):
            key = arguments.storage_key(value)
            version = arguments.version(value)
            leaves.append((value, key, version))
            if key is None or version is None:
                state["untracked"] = True
            produced = self._produced.get(id(value))
            if produced is not None and produced[0]() is value:
                sources.append((produced[1], produced[2]))
                if self.ops[produced[1]].checked:
                    return (arguments.FROM_OP, produced[1], produced[2])
            self.outside_versions.setdefault(id(value), version)
            return (arguments.OUTSIDE, value)

        op.args = arguments.describe(args, tensor)
        op.kwargs = arguments.describe(kwargs, tensor)
        drifts = _holds(args, torch.Generator) or _holds(kwargs, torch.Generator)
        random_before = _random_states()
        result = func(*args, **kwargs)
        if not _same_random_states(random_before, _random_states()):
            drifts = True  # it drew random numbers: another evaluation draws others
        outputs = arguments.tensor_leaves(result)
        written = []
        for value, key, before in leaves:
            after = arguments.version(value)
            if before is None or after is None:
                self.untrackable = "tensors without version counters (inference mode)"
            elif after != before:
                written.append(key)
        reads = tuple(key for _, key, _ in leaves)
        inputs = {id(value) for value, _, _ in leaves}
        made = []
        for value in outputs:
            key = arguments.storage_key(value)
            if key is None or arguments.version(value) is None:
                self.untrackable = self.untrackable or "results without storage or version"
            if value.requires_grad:
                drifts = True  # its graph belongs to this evaluation
            kind = SAME if id(value) in inputs else ALIAS if key in reads else NEW
            made.append((key, kind))
        op.reads, op.writes = reads, tuple(written)
        op.made, op.sources = tuple(made), tuple(sources)
        op.checked = not (
            arguments.holds_objects(op.args) or arguments.holds_objects(op.kwargs)
        )
        op.drifts = drifts or state["untracked"]
        op.keepable = (
            op.checked
            and not op.drifts
            and func not in _ALWAYS_RUN
            and getattr(func, "__name__", "") != "__set__"
            and bool(leaves or outputs)
            and arguments.servable(result)
        )
        self.ops.append(op)
        self._note_memory(op, position, outputs)
        for index, value in enumerate(outputs):
            self._produced[id(value)] = (weakref.ref(value), position, index)
        if op.keepable:
            op.result = result
            op.leaves = outputs
        return result

    def _note_memory(self, op, position, outputs):
        for key in set(op.reads):
            memory = self._memory.get(key)
            if memory is not None:
                memory.events.append((position, READ))
        for key in op.writes:
            memory = self._memory.get(key)
            if memory is None:
                op.keepable = False  # it writes into a tensor no recorded operation made
            else:
                memory.events.append((position, WRITE))
        for value, (key, kind) in zip(outputs, op.made):
            if kind == NEW:
                # Its address may be one a dead result had: that record is complete.
                memory = self._memory[key] = _Memory(position)
                self._memories.append(memory)
                if op.keepable:
                    self._bytes += value.untyped_storage().nbytes()
                    op.keepable = self._bytes <= self._budget
            elif self._memory.get(key) is None:
                op.keepable = False  # a view of (or the very) tensor it was given from outside
            elif kind == ALIAS:
                self._memory[key].events.append((position, VIEW))

    def finish(self):
        """Ends the recording: notes the kept results' versions and drops the bookkeeping."""
        for op in self.ops:
            if op.keepable:
                op.versions = [arguments.version(leaf) for leaf in op.leaves]
        self._produced = {}
        self._memory = {}

    def restored(self, tensors):
        """Tells the recording that ``tensors`` hold their recorded values again.

        A sweep writes the moving tensors in place and puts them back bitwise; their version
        counters still moved, and without this they would no longer count as the recorded ones.
        """
        for tensor in tensors:
            if id(tensor) in self.outside_versions:
                self.outside_versions[id(tensor)] = arguments.version(tensor)

    def plan(self, moving):
        """What replays do while ``moving`` (tensors) change; returns a ``Plan``."""
        moving_memory = {arguments.storage_key(tensor) for tensor in moving}
        moving_results = set()
        moves = []
        for position, op in enumerate(self.ops):
            moving_op = (
                op.drifts
                or any(key in moving_memory for key in op.reads)
                or any(source in moving_results for source in op.sources)
            )
            for index, (key, kind) in enumerate(op.made):
                if moving_op:
                    moving_results.add((position, index))
                    if kind == NEW:
                        moving_memory.add(key)
                elif kind == NEW:
                    moving_memory.discard(key)  # an address a dead moving result had
            if moving_op:
                moving_memory.update(op.writes)
            moves.append(moving_op)
        served = [
            op.keepable and not moving_op and _intact(op)
            for op, moving_op in zip(self.ops, moves)
        ]
        changed = True
        while changed:
            changed = False
            for memory in self._memories:
                if _spoilt(memory.events, served):
                    for position, kind in memory.events:
                        if kind != READ and served[position]:
                            served[position] = False
                            changed = True
        pending = []
        for memory in self._memories:
            writes = [p for p, kind in memory.events if kind == WRITE and served[p]]
            if len(writes) > 1:
                pending.append((writes[0], writes[-1]))
        return Plan(self.ops, moves, served, pending)


def _intact(op):
    """Whether a kept result still holds what it held when recorded (a replay may spoil it)."""
    return all(
        arguments.version(leaf) == version for leaf, version in zip(op.leaves, op.versions)
    )


def _spoilt(events, served):
    """Whether served operations cannot stand for the ones that made or wrote this memory."""
    last_served_write = -1
    for position, kind in events:
        if kind == WRITE:
            if not served[position]:
                return True
            last_served_write = position
    return any(
        kind != WRITE and not served[position] and position < last_served_write
        for position, kind in events
    )


def _holds(value, kind):
    if isinstance(value, kind):
        return True
    if isinstance(value, (tuple, list)):
        return any(_holds(item, kind) for item in value)
    if isinstance(value, dict):
        return any(_holds(item, kind) for item in value.values())
    return False


def _random_states():
    states = [torch.default_generator.get_state()]
    if torch.cuda.is_initialized():
        states.extend(torch.cuda.get_rng_state_all())
    return states


def _same_random_states(before, after):
    return len(before) == len(after) and all(torch.equal(a, b) for a, b in zip(before, after))
