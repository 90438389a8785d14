"""What the operation cache remembers about the arguments and results of one torch operation.

A recorded operation's arguments are kept as a *descriptor*: the same nesting of tuples, lists and
dicts, with every leaf replaced by how to recognise it at a later evaluation. Tensors are
recognised by where they came from, never by comparing their values unless nothing else works:

``(FROM_OP, position, leaf)``  the ``leaf``-th tensor returned by the operation at ``position`` of
                               the same evaluation; at a replay it must be the very tensor that
                               operation returned (or was served) this time;
``(OUTSIDE, tensor)``          a tensor no recorded operation made (an input batch, a parameter),
                               or one made from other objects (``torch.as_tensor(array)``);
                               at a replay it must be the same tensor with the recorded version
                               (kept beside, as ``versions``, because a sweep puts moved tensors
                               back), or a tensor of equal shape, dtype and values;
``(VALUE, value)``             a plain value (number, string, dtype, ``None``), compared with ``==``
                               and of the same type;
``(OBJECT, value)``            any other object, compared by identity.

Sequences and dicts become ``(SEQUENCE, type, items)`` and ``(MAPPING, keys, items)``.
"""

import torch

FROM_OP, OUTSIDE, VALUE, OBJECT, SEQUENCE, MAPPING = range(6)

# Values compared by ``==`` (and type): everything else an operation takes is compared by identity.
_PLAIN = (
    type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
    torch.memory_format, torch.Size, type(Ellipsis),
)
# What a served operation may return: tensors and plain values, in tuples and lists.
_SERVABLE = _PLAIN


def describe(value, tensor):
    """The descriptor of ``value``; ``tensor(t)`` gives the descriptor of each tensor leaf."""
    if isinstance(value, torch.Tensor):
        return tensor(value)
    kind = type(value)
    if kind in _PLAIN:
        return (VALUE, value)
    if kind is tuple or kind is list or kind is slice:
        items = (value.start, value.stop, value.step) if kind is slice else value
        return (SEQUENCE, kind, tuple(describe(item, tensor) for item in items))
    if kind is dict:
        return (MAPPING, tuple(value), tuple(describe(item, tensor) for item in value.values()))
    return (OBJECT, value)


def holds_objects(descriptor):
    """Whether a descriptor has an ``OBJECT`` leaf."""
    kind = descriptor[0]
    if kind == OBJECT:
        return True
    if kind in (SEQUENCE, MAPPING):
        return any(holds_objects(item) for item in descriptor[2])
    return False


def matches_call(args_descriptor, kwargs_descriptor, args, kwargs, outputs, versions):
    """``matches`` for a whole call: the positional arguments, then the keyword arguments."""
    items = args_descriptor[2]
    if len(args) != len(items):
        return False
    for item_descriptor, item in zip(items, args):
        item_kind = item_descriptor[0]
        if item_kind == FROM_OP:
            made = outputs[item_descriptor[1]]
            if made is None or made[item_descriptor[2]] is not item:
                return False
        elif item_kind == VALUE:
            recorded = item_descriptor[1]
            if type(item) is not type(recorded) or (item is not recorded and not item == recorded):
                return False
        elif not matches(item_descriptor, item, outputs, versions):
            return False
    if kwargs or kwargs_descriptor[1]:
        return matches(kwargs_descriptor, kwargs, outputs, versions)
    return True


def matches(descriptor, value, outputs, versions):
    """Whether ``value`` is, at a replay, what ``descriptor`` recorded (every leaf checked).

    Args:
        descriptor: from ``describe``.
        value: the argument given at the replay.
        outputs: the tensor leaves each operation of this replay returned, by position, for
            the operations that do not move (``None`` for the others).
        versions: ``{id(tensor): version}`` the outside tensors must have.
    """
    # Written out with loops and the common leaves inline: it runs for every served operation.
    kind = descriptor[0]
    if kind == SEQUENCE or kind == MAPPING:
        if kind == SEQUENCE:
            if type(value) is not descriptor[1]:
                return False
            items = (value.start, value.stop, value.step) if descriptor[1] is slice else value
        else:
            if type(value) is not dict or tuple(value) != descriptor[1]:
                return False
            items = tuple(value.values())
        if len(items) != len(descriptor[2]):
            return False
        for item_descriptor, item in zip(descriptor[2], items):
            item_kind = item_descriptor[0]
            if item_kind == FROM_OP:
                made = outputs[item_descriptor[1]]
                if made is None or made[item_descriptor[2]] is not item:
                    return False
            elif item_kind == VALUE:
                recorded = item_descriptor[1]
                if type(item) is not type(recorded) or (
                    item is not recorded and not item == recorded
                ):
                    return False
            elif not matches(item_descriptor, item, outputs, versions):
                return False
        return True
    if kind == FROM_OP:
        made = outputs[descriptor[1]]
        return made is not None and made[descriptor[2]] is value
    if kind == OUTSIDE:
        return _same_outside(value, descriptor[1], versions.get(id(descriptor[1])))
    if kind == VALUE:
        recorded = descriptor[1]
        return type(value) is type(recorded) and (value is recorded or bool(value == recorded))
    return kind == OBJECT and value is descriptor[1]


def same_sources(descriptor, value, outputs, served, seen):
    """Whether an operation that runs reads, at a replay, the recorded tensors it read then.

    Only the structure and the results of recorded operations that do not move are checked:
    plain values, outside tensors and moving results may differ. A served tensor where none was
    recorded also fails, because its contents are those after the whole recorded evaluation, not
    necessarily those a plain run would have at this point. Served tensors read are appended to
    ``seen``.

    Args:
        descriptor, value: as for ``matches``.
        outputs: as for ``matches``; ``None`` for operations that move (never checked).
        served: ``{id(tensor): tensor}`` of every tensor served by the replay.
        seen: a list collecting the served tensors among the leaves.
    """
    kind = descriptor[0]
    if isinstance(value, torch.Tensor):
        if kind == FROM_OP:
            made = outputs[descriptor[1]]
            # ``None``: the result of an operation that moves, not kept for checks.
            from_served = made is not None
            if from_served and made[descriptor[2]] is not value:
                return False
        elif kind != OUTSIDE:
            return False
        else:
            from_served = False
        if served.get(id(value)) is value:
            if not from_served:
                return False
            seen.append(value)
        return True
    if kind == SEQUENCE:
        if type(value) is not descriptor[1]:
            return False
        items = (value.start, value.stop, value.step) if descriptor[1] is slice else value
    elif kind == MAPPING:
        if type(value) is not dict or tuple(value) != descriptor[1]:
            return False
        items = tuple(value.values())
    else:
        return kind == VALUE or kind == OBJECT
    if len(items) != len(descriptor[2]):
        return False
    for item_descriptor, item in zip(descriptor[2], items):
        if not same_sources(item_descriptor, item, outputs, served, seen):
            return False
    return True


def tensor_leaves(value):
    """The tensors in a result, in order, through tuples and lists."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        leaves = []
        for item in value:
            leaves.extend(tensor_leaves(item))
        return leaves
    return []


def servable(value):
    """Whether a recorded result can be handed out again: plain tensors and plain values only.

    Tensor subclasses, iterators, arrays and other objects may carry state of their own.
    """
    if isinstance(value, torch.Tensor):
        return type(value) is torch.Tensor
    if isinstance(value, (tuple, list)):
        return all(servable(item) for item in value)
    return type(value) in _SERVABLE


def has_list(value):
    """Whether a result holds a list, which a caller may change and so is copied when served."""
    if isinstance(value, list):
        return True
    return isinstance(value, tuple) and any(has_list(item) for item in value)


def fresh_containers(value):
    """A copy of a result's lists (and the tuples around them); tensors and values are shared."""
    if isinstance(value, list):
        return [fresh_containers(item) for item in value]
    if isinstance(value, tuple) and has_list(value):
        return type(value)([fresh_containers(item) for item in value])
    return value


def version(tensor):
    """The tensor's in-place version counter, or ``None`` for tensors without one (inference)."""
    try:
        return tensor._version
    except RuntimeError:
        return None


def storage_key(tensor):
    """An identity of the memory a tensor views (shared by all its views), or ``None``."""
    try:
        return tensor.untyped_storage()._cdata
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _same_outside(new, old, old_version):
    if new is old:
        return version(new) == old_version and old_version is not None
    return (
        type(new) is torch.Tensor
        and type(old) is torch.Tensor
        and old_version is not None
        and version(old) == old_version
        and new.shape == old.shape
        and new.dtype == old.dtype
        and new.device == old.device
        and new.layout == old.layout
        and bool(torch.equal(new, old))
    )
