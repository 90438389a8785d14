"""Recomputes an operation from a reference call when only a few channels can have changed.

When one scalar of a layer moves, its layer's output changes in one channel, and channel-local
operations after it (activations, pooling, batch normalization with running statistics) keep the
change in that channel. Recomputing whole tensors for it is most of the cost of a per-parameter
sweep (on LeNet-5 the first max-pooling alone is a third of a forward pass). Given a reference call
at the end point (input ``x0``, output ``y0``, other tensor arguments ``w0``), a later call of the
same operation is rebuilt:

- channel-local operations: ``y = y0`` except the changed channels, computed from ``x`` alone;
- ``linear`` and ``conv2d`` (bilinear in input and weight):
  ``y = y0 + op(x - x0, w) + op(x0, w - w0) + (b - b0)``, where ``x - x0`` is restricted to the
  changed input channels and ``w - w0`` to its non-zero rows and columns.

Both are the same function as the operation itself (the second in exact arithmetic; in floating
point it differs by rounding). Calls are recognised by function, so a module's forward and a
functional call in a model's own forward are the same to it. A call falls back to the operation
itself whenever a rebuild would not be cheaper or cannot be trusted: most channels changed, a
non-finite value, an input of another shape, a function or setting not listed here.

The changed channels of an input are known without comparing when the input is the output of the
call just rebuilt (``Provenance``); otherwise they are found by comparing with ``x0``.
"""

import weakref

import torch
import torch.nn.functional as F

from tb_layerdyn.sweeps.op_arguments import version

# Element-wise functions, with the position of their ``inplace`` argument where they have one.
_ELEMENTWISE = {
    F.relu: 1, F.relu6: 1, F.silu: 1, F.selu: 1, F.mish: 1, F.hardswish: 1,
    F.elu: 2, F.celu: 2, F.leaky_relu: 2, F.hardtanh: 3, F.gelu: None,
    torch.relu: None, torch.Tensor.relu: None, torch.tanh: None, torch.Tensor.tanh: None,
    torch.sigmoid: None, torch.Tensor.sigmoid: None,
}
# Pooling over the trailing dimensions of (batch, channels, ...) inputs, with that input rank.
_POOLING = {
    F.max_pool2d: 4, F.avg_pool2d: 4, F.adaptive_avg_pool2d: 4, F.adaptive_max_pool2d: 4,
    F.max_pool1d: 3, F.avg_pool1d: 3, F.adaptive_avg_pool1d: 3,
}
_CONV2D = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
_CONV2D_DEFAULTS = {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
_LINEAR = ("input", "weight", "bias")
_BATCH_NORM = (
    "input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"
)
_BATCH_NORM_DEFAULTS = {
    "weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5
}
# A rebuild pays only while few channels changed; above this share the operation itself runs.
_MAX_CHANGED_SHARE = 0.5

LOCAL, BATCH_NORM, LINEAR, CONV2D = range(4)


class Call:
    """One call of a function that can be rebuilt, its arguments sorted out.

    Attributes:
        func: the function.
        kind: ``LOCAL`` (element-wise or pooling), ``BATCH_NORM``, ``LINEAR`` or ``CONV2D``.
        x: the input tensor.
        tensors: the other tensor arguments (weight and bias; batch norm's statistics first).
        rest, kwargs: for ``LOCAL``, the arguments after the input, passed again as they are.
        conv: for ``CONV2D``, ``(stride, padding, dilation)``; for ``BATCH_NORM``, ``eps``.
        dim: the channel dimension of ``x``.
    """

    __slots__ = ("func", "kind", "x", "tensors", "rest", "kwargs", "conv", "dim")

    def __init__(self, func, kind, x, tensors=(), rest=(), kwargs=None, conv=None):
        self.func = func
        self.kind = kind
        self.x = x
        self.tensors = tuple(tensors)
        self.rest = rest
        self.kwargs = kwargs or {}
        self.conv = conv
        self.dim = x.dim() - 1 if kind == LINEAR else 1


def parse(func, args, kwargs):
    """A ``Call`` when ``func(*args, **kwargs)`` can be rebuilt from a reference, else ``None``."""
    if func is torch.conv2d:
        bound = _bind(args, kwargs, _CONV2D, _CONV2D_DEFAULTS)
        if bound is None or bound["groups"] != 1 or not _plain(bound["input"], rank=4):
            return None
        if not isinstance(bound["weight"], torch.Tensor) or bound["weight"].dim() != 4:
            return None
        conv = tuple(_pair(bound[name]) for name in ("stride", "padding", "dilation"))
        return Call(func, CONV2D, bound["input"], (bound["weight"], bound["bias"]), conv=conv)
    if func is F.linear:
        bound = _bind(args, kwargs, _LINEAR, {"bias": None})
        if bound is None or not _plain(bound["input"]):
            return None
        if not isinstance(bound["weight"], torch.Tensor) or bound["weight"].dim() != 2:
            return None
        return Call(func, LINEAR, bound["input"], (bound["weight"], bound["bias"]))
    if func is F.batch_norm:
        bound = _bind(args, kwargs, _BATCH_NORM, _BATCH_NORM_DEFAULTS)
        if bound is None or bound["training"] or not _plain(bound["input"]):
            return None
        stats = (bound["running_mean"], bound["running_var"])
        if any(not isinstance(t, torch.Tensor) for t in stats):
            return None
        tensors = stats + (bound["weight"], bound["bias"])
        return Call(func, BATCH_NORM, bound["input"], tensors, conv=float(bound["eps"]))
    if func in _ELEMENTWISE or func in _POOLING:
        if not args or "input" in kwargs or not _plain(args[0], rank=_POOLING.get(func)):
            return None
        rest = args[1:]
        if any(isinstance(v, torch.Tensor) for v in rest + tuple(kwargs.values())):
            return None
        inplace = _ELEMENTWISE.get(func)
        if kwargs.get("inplace") or (inplace is not None and len(args) > inplace and args[inplace]):
            return None
        return Call(func, LOCAL, args[0], rest=rest, kwargs=kwargs)
    return None


class CallRef:
    """One call at the reference point: its input, output and other tensor arguments."""

    __slots__ = (
        "func", "x0", "y0", "tensors0", "source", "original", "version", "nbytes", "dense"
    )

    def __init__(self, call, y, x0=None):
        self.func = call.func
        self.x0 = call.x.detach().clone() if x0 is None else x0
        self.y0 = y.detach().clone()
        # The tensors as given (to see cheaply that they did not change) and their values.
        self.tensors0 = [
            None if t is None else (t, version(t), t.detach().clone()) for t in call.tensors
        ]
        self.source = None
        # A weak reference: keeping the record pass's intermediates alive would double memory.
        self.original = weakref.ref(call.x)
        self.version = version(call.x)
        # Set once most channels were found changed: the same scalar moves the same channels
        # at every alpha, so later calls skip the comparison and run the operation itself.
        self.dense = False
        self.nbytes = (self.x0.numel() + self.y0.numel()) * self.x0.element_size() + sum(
            entry[2].numel() * entry[2].element_size() for entry in self.tensors0 if entry
        )


def record(call, output, x0=None):
    """A ``CallRef`` for this call, or ``None`` when it cannot serve later rebuilds.

    ``x0``, if given, is a copy of the input already kept (the previous reference's output).
    """
    x = call.x
    if type(output) is not torch.Tensor or output.dtype != x.dtype:
        return None
    if output.dim() != x.dim() or output.shape[call.dim] != _out_channels(call):
        return None
    if any(t is not None and not _ordinary(t) for t in call.tensors):
        return None
    if not (_finite(x) and _finite(output)):
        return None
    return CallRef(call, output, x0)


class Provenance:
    """Which channels of the tensors returned by rebuilt calls may differ from their references.

    Reset at each evaluation. ``note`` is called with every rebuilt output, ``changed`` asks about
    an input: it answers only when the input is such an output, unmodified since, and the
    reference call's input was the reference output of the same operation.
    """

    def __init__(self):
        self._outputs = {}

    def reset(self):
        self._outputs = {}

    def note(self, position, output, channels, dim):
        self._outputs[id(output)] = (output, output._version, position, channels, dim)

    def changed(self, ref, x, dim):
        entry = self._outputs.get(id(x))
        if entry is None:
            return None
        tensor, recorded_version, position, channels, out_dim = entry
        if (
            tensor is not x
            or x._version != recorded_version
            or position != ref.source
            or out_dim != dim
        ):
            return None
        return channels


def rebuild(ref, call, provenance):
    """The result of the call, rebuilt from the reference call.

    Args:
        ref: the operation's ``CallRef``.
        call: this call, from ``parse``.
        provenance: the ``Provenance`` of this evaluation, which may know the changed channels
            of the input.

    Returns:
        ``(output, changed output channels, channel dim)``, or ``None`` to run the operation.
    """
    x = call.x
    if ref.dense or ref.func is not call.func or type(x) is not torch.Tensor:
        return None
    if x.shape != ref.x0.shape or x.dtype != ref.x0.dtype:
        return None
    deltas = _deltas(ref, call)
    if deltas is None:
        return None
    dim = call.dim
    known = provenance.changed(ref, x, dim)
    if known is not None:
        changed = known
    elif x is ref.original() and version(x) == ref.version:
        changed = []
    else:
        changed = _changed_channels(x, ref.x0, dim)
    if len(changed) > _MAX_CHANGED_SHARE * x.shape[dim]:
        ref.dense = True
        return None
    if call.kind in (LINEAR, CONV2D):
        return _rebuild_bilinear(ref, call, changed, deltas)
    return _rebuild_channel_local(ref, call, changed, deltas)


def _deltas(ref, call):
    """``t - t0`` for each tensor argument that changed (``None`` where it did not)."""
    if len(call.tensors) != len(ref.tensors0):
        return None
    deltas = []
    for tensor, entry in zip(call.tensors, ref.tensors0):
        if (tensor is None) != (entry is None):
            return None
        if tensor is None or (tensor is entry[0] and version(tensor) == entry[1]):
            deltas.append(None)
            continue
        if tensor.shape != entry[2].shape or tensor.dtype != entry[2].dtype:
            return None
        moved = tensor - entry[2]
        if not _finite(moved):
            return None
        deltas.append(moved)
    return deltas


def _rebuild_channel_local(ref, call, changed, deltas):
    x, dim = call.x, call.dim
    moved = set(changed)
    for delta in deltas:
        if delta is not None:
            moved.update(_nonzero_rows(delta))
    channels = sorted(moved)
    if len(channels) > _MAX_CHANGED_SHARE * x.shape[dim]:
        return None
    output = ref.y0.clone()
    if not channels:
        return output, [], dim
    index = torch.tensor(channels, dtype=torch.long, device=x.device)
    # Non-finite inputs need no care here: the slice goes through the operation itself.
    part = x.index_select(dim, index)
    if call.kind == BATCH_NORM:
        mean, var, weight, bias = (None if t is None else t[index] for t in call.tensors)
        values = F.batch_norm(part, mean, var, weight, bias, False, 0.0, call.conv)
    else:
        values = call.func(part, *call.rest, **call.kwargs)
    if type(values) is not torch.Tensor or values.shape[dim] != len(channels):
        return None
    output.index_copy_(dim, index, values)
    return output, channels, dim


def _rebuild_bilinear(ref, call, changed, deltas):
    x, dim = call.x, call.dim
    weight = call.tensors[0]
    weight_delta, bias_delta = deltas
    out_channels = set()
    if changed:
        index = torch.tensor(changed, dtype=torch.long, device=x.device)
        delta = x.index_select(dim, index) - ref.x0.index_select(dim, index)
        if not _finite(delta):
            return None
        output = ref.y0 + _apply(call, delta, weight.index_select(1, index))
        out_channels.update(range(output.shape[dim]))
    else:
        output = ref.y0.clone()
    if weight_delta is not None:
        rows = _nonzero_rows(weight_delta)
        if rows:
            columns = _nonzero_rows(weight_delta.transpose(0, 1))
            share = len(rows) * len(columns) / (weight_delta.shape[0] * weight_delta.shape[1])
            if share > _MAX_CHANGED_SHARE:
                return None
            row_index = torch.tensor(rows, dtype=torch.long, device=x.device)
            column_index = torch.tensor(columns, dtype=torch.long, device=x.device)
            block = weight_delta.index_select(0, row_index).index_select(1, column_index)
            inputs = ref.x0.index_select(dim, column_index)
            part = _shifted_sum(call, inputs, block)
            if part is None:
                part = _apply(call, inputs, block)
            output.index_add_(dim, row_index, part)
            out_channels.update(rows)
    if bias_delta is not None:
        rows = _nonzero_rows(bias_delta)
        if rows:
            shape = [1] * output.dim()
            shape[dim] = -1
            output += bias_delta.view(shape)
            out_channels.update(rows)
    return output, sorted(out_channels), dim


def _apply(call, x, weight):
    """The call's operation with another weight and no bias."""
    if call.kind == LINEAR:
        return F.linear(x, weight)
    stride, padding, dilation = call.conv
    return F.conv2d(x, weight, None, stride, padding, dilation)


def _shifted_sum(call, x, block):
    """``conv2d(x, block)`` for a kernel block with very few non-zero entries, else ``None``.

    Each non-zero entry ``block[o, i, p, q]`` adds a strided window of input channel ``i``, scaled,
    to output channel ``o``. Small convolutions take a slow path on CPU (a 1x1-channel 5x5
    convolution of 256 images costs as much as a whole 6-channel one); a few slices do not.
    """
    if call.kind != CONV2D or isinstance(call.conv[1], str):
        return None
    entries = block.nonzero().tolist()
    if len(entries) > 4:
        return None
    (sh, sw), (ph, pw), (dh, dw) = call.conv
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
    kh, kw = block.shape[2:]
    height = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    width = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    output = x.new_zeros((x.shape[0], block.shape[0], height, width))
    for o, i, p, q in entries:
        window = x[:, i, p * dh : p * dh + sh * (height - 1) + 1 : sh,
                   q * dw : q * dw + sw * (width - 1) + 1 : sw]
        output[:, o].add_(window, alpha=float(block[o, i, p, q]))
    return output


def _out_channels(call):
    if call.kind in (LINEAR, CONV2D):
        return call.tensors[0].shape[0]
    return call.x.shape[call.dim]


def _bind(args, kwargs, names, defaults):
    """The arguments by name, or ``None`` for a call that does not fit ``names``."""
    if len(args) > len(names) or any(name not in names for name in kwargs):
        return None
    if any(name in kwargs for name in names[: len(args)]):
        return None
    bound = dict(defaults)
    bound.update(zip(names, args))
    bound.update(kwargs)
    if any(name not in bound for name in names):
        return None
    weight = bound.get("weight")
    if weight is not None and not _ordinary(weight):
        return None
    return bound


def _ordinary(tensor):
    """A tensor or parameter, no other subclass (which may compute differently)."""
    return type(tensor) is torch.Tensor or type(tensor) is torch.nn.Parameter


def _plain(x, rank=None):
    """Whether ``x`` is a plain floating-point tensor with a channel dimension (and the rank)."""
    return (
        type(x) is torch.Tensor
        and x.is_floating_point()
        and x.dim() >= 2
        and (rank is None or x.dim() == rank)
    )


def _pair(value):
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return (value, value)
    return tuple(int(v) for v in value)


def _finite(tensor):
    """Whether every value is finite; one reduction (a sum that overflows answers False)."""
    return bool(torch.isfinite(tensor.sum()))


def _changed_channels(x, x0, dim):
    differs = torch.ne(x, x0).transpose(0, dim).reshape(x.shape[dim], -1).any(dim=1)
    return differs.nonzero().view(-1).tolist()


def _nonzero_rows(tensor):
    if tensor.dim() == 0:
        return []
    return tensor.ne(0).reshape(tensor.shape[0], -1).any(dim=1).nonzero().view(-1).tolist()
