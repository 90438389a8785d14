"""Records one evaluation operation by operation and decides which results later evaluations reuse.

The recording sees every torch operation of an evaluation (``op_cache`` feeds it from a
``TorchFunctionMode``), in order, and keeps for each: its arguments (``op_arguments``), whether its
value can depend on the moving tensors, and what it did to memory.

Which operations depend on the moving tensors
---------------------------------------------
An operation *moves* when one of its tensor arguments is a moving tensor, the result of a moving
operation, or a view of memory a moving operation wrote into; when it consumes random numbers
(the default generators' states are compared around it, and an explicit ``generator`` counts); or
when its memory cannot be tracked. Everything else computes the same value at every alpha: before
the first read of a moving tensor that is every operation, and after it, every operation on other
data (the second batch's layers in front of the moving one, a skip connection's other branch).

Which of those are served
-------------------------
A served operation is not run at a replay: it returns the recorded result object. So a tensor
made by served operations holds, during a replay, what it held at the end of the recording. That
is right for whoever reads it only if no operation that runs at replays writes into its memory,
and every one that reads it does so after the last served write (an in-place ReLU on a served
convolution output is fine; a residual ``x += f(x)`` with a moving ``f`` is not). Where that does
not hold, every operation that made, wrote or viewed that memory runs instead, at every replay,
which in turn may spoil other memory; this is repeated until nothing changes (``plan``). Memory is
told apart by storage, so that views and in-place writes through them are seen; writes are seen as
changes of the tensors' version counters.

Operations that only change global state (no tensor in or out), change autograd metadata, return
objects other than tensors and plain values, return views of tensors the recording did not make,
write into such tensors, or whose results require gradients, run at every replay too.
"""

import weakref

import torch

from tb_layerdyn.sweeps import op_arguments as arguments

# Above this many bytes of new results, later operations run at every replay instead of being kept.
ACTIVATION_BUDGET = 1 << 30

READ, WRITE, VIEW = range(3)

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
        moves: whether its value may depend on the moving tensors.
        checked: whether a replay can tell that it gets the same arguments, so that it computes
            the same result: it does not move, and takes no objects other than tensors and plain
            values (a NumPy array, say, may hold other values at the next evaluation).
        kept: whether it may be served (before ``plan`` decides).
        result, leaves: the result and its tensors, for checked operations.
    """

    __slots__ = ("func", "args", "kwargs", "moves", "checked", "kept", "result", "leaves")

    def __init__(self, func, args, kwargs, moves, checked):
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.moves = moves
        self.checked = checked
        self.kept = False
        self.result = None
        self.leaves = None


class Plan:
    """What replays do at each position of the recorded sequence of operations.

    Attributes:
        ops: the ``TracedOp`` of each position; ``served[i]`` says whether it is served.
        steps: per position, ``(func, args, kwargs, served, checked, result, leaves, copy)``
            (``copy``: the served result holds lists, which are copied when served).
        served_tensors: ``{id: tensor}`` of every tensor a replay hands out from the recording.
        versions: ``[(tensor, version)]`` of those at the end of the recording; a replay that
            leaves one changed makes the cache stop (``OperationCache``).
        pending: ``[(made, last_write)]`` positions of memory that served operations make and
            later write in place: a replay that departs from the recording in between cannot
            go on with the served tensor (it would hold the later contents too early).
    """

    def __init__(self, ops, served, pending):
        self.ops = ops
        self.served = served
        self.pending = pending
        self.served_tensors = {}
        for op, serve in zip(ops, served):
            if serve:
                for leaf in op.leaves:
                    self.served_tensors[id(leaf)] = leaf
            else:
                op.result = op.leaves = None
        self.versions = [
            (tensor, arguments.version(tensor)) for tensor in self.served_tensors.values()
        ]
        # What a replay needs at each position, unpacked once: it runs for every operation.
        self.steps = [
            (op.func, op.args, op.kwargs, serve, op.checked, op.result, op.leaves,
             serve and arguments.has_list(op.result))
            for op, serve in zip(ops, served)
        ]

    @property
    def served_count(self):
        return sum(self.served)


class _Memory:
    """What the recorded operations did to one storage made by an operation that does not move."""

    __slots__ = ("events",)

    def __init__(self, position):
        self.events = [(position, WRITE)]


class Recording:
    """Watches one evaluation; ``observe`` runs each operation, ``plan`` decides the reuse.

    Args:
        moving: the tensors whose values change between evaluations.
        budget: bytes of results to keep at most (``ACTIVATION_BUDGET``).
    """

    def __init__(self, moving, *, budget=ACTIVATION_BUDGET):
        self.ops = []
        self.untrackable = None
        self._budget = budget
        self._bytes = 0
        self._moving_objects = {}
        self._moving_memory = set()
        for tensor in moving:
            key = arguments.storage_key(tensor)
            if key is None:
                self.untrackable = "a moving tensor without storage"
            self._moving_memory.add(key)
        # Results of checked operations: id -> (weak reference, position, leaf index).
        self._made = {}
        self._memory = {}

    def observe(self, func, args, kwargs):
        """Runs one operation, records it, and returns ``(result, TracedOp)``."""
        position = len(self.ops)
        leaves = []
        state = {"moves": False, "untracked": False}

        def tensor(value):
            key = arguments.storage_key(value)
            leaves.append((value, key, arguments.version(value)))
            if key is None:
                state["untracked"] = True
                return (arguments.MOVING,)
            moving = self._moving_objects.get(id(value))
            if key in self._moving_memory or (moving is not None and moving() is value):
                state["moves"] = True
                return (arguments.MOVING,)
            made = self._made.get(id(value))
            if made is not None and made[0]() is value:
                return (arguments.FROM_OP, made[1], made[2])
            return (arguments.OUTSIDE, value, leaves[-1][2])

        args_descriptor = arguments.describe(args, tensor)
        kwargs_descriptor = arguments.describe(kwargs, tensor)
        if _holds(args, torch.Generator) or _holds(kwargs, torch.Generator):
            state["moves"] = True
        moves = state["moves"] or state["untracked"]
        random_before = None if moves else _random_states()
        result = func(*args, **kwargs)
        outputs = arguments.tensor_leaves(result)
        if random_before is not None and not _same_random_states(random_before, _random_states()):
            moves = True  # it drew random numbers: another evaluation draws others
        written = []
        for value, key, before in leaves:
            after = arguments.version(value)
            if before is None or after is None:
                self.untrackable = "tensors without version counters (inference mode)"
                moves = True
            elif after != before:
                written.append(key)
        for value in outputs:
            if arguments.storage_key(value) is None or arguments.version(value) is None:
                self.untrackable = self.untrackable or "results without storage or version"
                moves = True
            elif value.requires_grad:
                moves = True  # its graph belongs to this evaluation
        checked = not moves and not (
            arguments.holds_objects(args_descriptor) or arguments.holds_objects(kwargs_descriptor)
        )
        op = TracedOp(func, args_descriptor, kwargs_descriptor, moves, checked)
        self.ops.append(op)
        read = {key for _, key, _ in leaves}
        if moves:
            self._note_moving(position, read, written, outputs)
        else:
            self._note_fixed(op, position, leaves, read, written, result, outputs)
        return result, op

    def _note_moving(self, position, read, written, outputs):
        for key in read:
            memory = self._memory.get(key)
            if memory is not None:
                memory.events.append((position, READ))
        for key in written:
            self._moving_memory.add(key)
            memory = self._memory.get(key)
            if memory is not None:
                memory.events.append((position, WRITE))
        for value in outputs:
            # Weak: the moving part of the evaluation need not stay in memory while recording.
            self._moving_objects[id(value)] = weakref.ref(value)
            key = arguments.storage_key(value)
            if key not in read:
                self._moving_memory.add(key)
                self._memory.pop(key, None)  # the address of a dead result, now reused

    def _note_fixed(self, op, position, leaves, read, written, result, outputs):
        kept = (
            op.checked
            and op.func not in _ALWAYS_RUN
            and getattr(op.func, "__name__", "") != "__set__"
            and (leaves or outputs)
            and arguments.servable(result)
        )
        for key in read:
            memory = self._memory.get(key)
            if memory is not None:
                memory.events.append((position, READ))
        for key in written:
            memory = self._memory.get(key)
            if memory is None:
                kept = False  # it writes into a tensor no recorded operation made
            else:
                memory.events.append((position, WRITE))
        inputs = {id(value) for value, _, _ in leaves}
        for index, value in enumerate(outputs):
            key = arguments.storage_key(value)
            if key in read:
                memory = self._memory.get(key)
                if memory is None:
                    kept = False  # a view of (or the very) tensor it was given from outside
                elif id(value) not in inputs:
                    memory.events.append((position, VIEW))
            else:
                # New memory (its address may be one a dead result had: that record is stale).
                self._memory[key] = _Memory(position)
                self._moving_memory.discard(key)
                if kept:
                    self._bytes += value.untyped_storage().nbytes()
                    kept = self._bytes <= self._budget
            if op.checked:
                # Weak: results that will not be kept need not stay in memory while recording.
                self._made[id(value)] = (weakref.ref(value), position, index)
        op.kept = bool(kept)
        if op.kept:
            op.result = result
            op.leaves = outputs

    def plan(self):
        """Decides which operations replays serve; returns a ``Plan``."""
        served = [op.kept and not op.moves for op in self.ops]
        changed = True
        while changed:
            changed = False
            for memory in self._memory.values():
                if _spoilt(memory.events, served):
                    for position, kind in memory.events:
                        if kind != READ and served[position]:
                            served[position] = False
                            changed = True
        pending = []
        for memory in self._memory.values():
            writes = [p for p, kind in memory.events if kind == WRITE and served[p]]
            if len(writes) > 1:
                pending.append((writes[0], writes[-1]))
        plan = Plan(self.ops, served, pending)
        self._made = {}
        self._memory = {}
        self._moving_objects = {}
        return plan


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
