"""Recomputes a module call from a reference call when only a few channels can have changed.

When one scalar of a layer moves, its layer's output changes in one channel, and channel-local
modules after it (activations, pooling, BatchNorm in eval mode) keep the change in that channel.
Recomputing whole tensors for it is most of the cost of a per-parameter sweep (on LeNet-5 the first
max-pooling alone is half of a forward pass). Given a reference call at the end point
(input ``x0``, output ``y0``, parameters ``w0``), a later call of the same module is rebuilt:

- channel-local modules: ``y = y0`` except the changed channels, computed from ``x`` alone;
- ``Linear`` and ``Conv2d`` (bilinear in input and weight):
  ``y = y0 + op(x - x0, w) + op(x0, w - w0) + (b - b0)``, where ``x - x0`` is restricted to the
  changed input channels and ``w - w0`` to its non-zero rows and columns.

Both are the same function as the module's own forward (the second in exact arithmetic; in floating
point it differs by rounding). A call falls back to the module's own forward whenever a rebuild would
not be cheaper or cannot be trusted: most channels changed, a non-finite value, an input of another
shape, a module type or setting not listed here.

The changed channels of an input are known without comparing when the input is the output of the
call just rebuilt (``Provenance``); otherwise they are found by comparing with ``x0``.
"""

import weakref

import torch
import torch.nn.functional as F
from torch import nn

# Modules whose output channel c depends only on input channel c, with their input ranks.
_CHANNEL_LOCAL = {
    nn.ReLU: None, nn.LeakyReLU: None, nn.GELU: None, nn.SiLU: None, nn.Tanh: None,
    nn.Sigmoid: None, nn.ELU: None, nn.Hardtanh: None, nn.Identity: None,
    nn.MaxPool2d: 4, nn.AvgPool2d: 4, nn.AdaptiveAvgPool2d: 4, nn.AdaptiveMaxPool2d: 4,
    nn.MaxPool1d: 3, nn.AvgPool1d: 3,
    nn.BatchNorm1d: None, nn.BatchNorm2d: 4,
}
# A rebuild pays only while few channels changed; above this share the plain forward runs.
_MAX_CHANGED_SHARE = 0.5


def supports(module):
    """Whether calls of ``module`` can be rebuilt from a reference call.

    Only the modules' own forwards qualify (no subclass override, no instance-level ``forward``),
    in settings whose output channels are computed independently.
    """
    kind = type(module)
    if kind in (nn.Linear, nn.Conv2d):
        if kind is nn.Conv2d and (module.groups != 1 or module.padding_mode != "zeros"):
            return False
        return True
    if kind not in _CHANNEL_LOCAL:
        return False
    if getattr(module, "inplace", False) or getattr(module, "return_indices", False):
        return False
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        # Eval mode with running statistics: a per-channel affine map. In train mode (or without
        # running statistics) a channel's output depends on the whole batch, but not on other
        # channels either; still, keep to the simple case.
        return not module.training and module.running_mean is not None
    return True


class CallRef:
    """One call of a supported module at the end point: its input, output and parameters."""

    __slots__ = (
        "module", "x0", "y0", "params0", "source", "original", "version", "nbytes", "dense"
    )

    def __init__(self, module, x, y, swept):
        self.module = module
        self.x0 = x.detach().clone()
        self.y0 = y.detach().clone()
        # Only swept tensors change between evaluations; the module's other tensors stay fixed.
        self.params0 = {
            name: tensor.detach().clone()
            for name, tensor in _tensors(module).items()
            if id(tensor) in swept
        }
        self.source = None
        # A weak reference: keeping the record pass's intermediates alive would double memory.
        self.original = weakref.ref(x)
        self.version = x._version
        # Set once most channels were found changed: the same scalar moves the same channels
        # at every alpha, so later calls skip the comparison and run the plain forward.
        self.dense = False
        self.nbytes = (self.x0.numel() + self.y0.numel()) * self.x0.element_size()


def record(module, args, kwargs, output, swept):
    """A ``CallRef`` for this call, or ``None`` when it cannot serve later rebuilds."""
    if kwargs or len(args) != 1 or not isinstance(args[0], torch.Tensor):
        return None
    x = args[0]
    if not isinstance(output, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        return None
    if type(output) is not torch.Tensor or type(x) is not torch.Tensor:
        return None
    rank = _rank(module)
    if rank is not None and x.dim() != rank:
        return None
    if not (_finite(x) and _finite(output)):
        return None
    return CallRef(module, x, output, swept)


class Provenance:
    """Which channels of the tensors returned by rebuilt calls may differ from their references.

    Reset at each top-level call. ``note`` is called with every rebuilt output, ``changed`` asks
    about an input: it answers only when the input is such an output, unmodified since, and the
    reference call's input was the reference output of the same call.
    """

    def __init__(self):
        self._outputs = {}

    def reset(self):
        self._outputs = {}

    def note(self, cid, output, channels, dim):
        self._outputs[id(output)] = (output, output._version, cid, channels, dim)

    def changed(self, ref, x, dim):
        entry = self._outputs.get(id(x))
        if entry is None:
            return None
        tensor, version, cid, channels, out_dim = entry
        if tensor is not x or x._version != version or cid != ref.source or out_dim != dim:
            return None
        return channels


def rebuild(ref, x, provenance):
    """The output of ``ref.module(x)``, rebuilt from the reference call.

    Args:
        ref: the module's ``CallRef``.
        x: the input of this call.
        provenance: the ``Provenance`` of this top-level call, which may know the changed
            channels of ``x``.

    Returns:
        ``(output, changed output channels, channel dim)``, or ``None`` to run the plain forward.
    """
    if ref.dense or type(x) is not torch.Tensor or x.shape != ref.x0.shape or x.dtype != ref.x0.dtype:
        return None
    module = ref.module
    dim = x.dim() - 1 if isinstance(module, nn.Linear) else 1
    known = provenance.changed(ref, x, dim)
    if known is not None:
        changed = known
    elif x is ref.original() and x._version == ref.version:
        changed = []
    else:
        changed = _changed_channels(x, ref.x0, dim)
    if len(changed) > _MAX_CHANGED_SHARE * x.shape[dim]:
        ref.dense = True
        return None
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        return _rebuild_bilinear(ref, x, changed, dim)
    return _rebuild_channel_local(ref, x, changed, dim)


def _rebuild_channel_local(ref, x, changed, dim):
    module = ref.module
    moved = {}
    for name, start in ref.params0.items():
        current = getattr(module, name)
        moved.update(dict.fromkeys(_nonzero_rows(current - start)))
    channels = sorted(set(changed) | set(moved))
    if len(channels) > _MAX_CHANGED_SHARE * x.shape[dim]:
        return None
    output = ref.y0.clone()
    if not channels:
        return output, [], dim
    index = torch.tensor(channels, dtype=torch.long)
    # Non-finite inputs need no care here: the slice goes through the module's own operation.
    part = x.index_select(dim, index)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        weight = None if module.weight is None else module.weight[index]
        bias = None if module.bias is None else module.bias[index]
        values = F.batch_norm(
            part, module.running_mean[index], module.running_var[index], weight, bias,
            False, 0.0, module.eps,
        )
    else:
        # The class's forward, not module(): hooks must not see the slice, and the sweep's
        # wrapped forward must not count it as a call.
        values = type(module).forward(module, part)
    output.index_copy_(dim, index, values)
    return output, channels, dim


def _rebuild_bilinear(ref, x, changed, dim):
    module = ref.module
    weight = module.weight
    output = ref.y0.clone()
    out_channels = set()
    if changed:
        index = torch.tensor(changed, dtype=torch.long)
        delta = x.index_select(dim, index) - ref.x0.index_select(dim, index)
        if not _finite(delta):
            return None
        output += _apply(module, delta, weight.index_select(1, index))
        out_channels.update(range(output.shape[dim]))
    if "weight" in ref.params0:
        moved = weight - ref.params0["weight"]
        if not _finite(moved):
            return None
        rows = _nonzero_rows(moved)
        if rows:
            columns = _nonzero_rows(moved.transpose(0, 1))
            if len(rows) * len(columns) > _MAX_CHANGED_SHARE * moved.shape[0] * moved.shape[1]:
                return None
            row_index = torch.tensor(rows, dtype=torch.long)
            column_index = torch.tensor(columns, dtype=torch.long)
            block = moved.index_select(0, row_index).index_select(1, column_index)
            inputs = ref.x0.index_select(dim, column_index)
            part = _shifted_sum(module, inputs, block)
            if part is None:
                part = _apply(module, inputs, block)
            output.index_add_(dim, row_index, part)
            out_channels.update(rows)
    if "bias" in ref.params0 and module.bias is not None:
        moved = module.bias - ref.params0["bias"]
        if not _finite(moved):
            return None
        rows = _nonzero_rows(moved)
        if rows:
            shape = [1] * output.dim()
            shape[dim] = -1
            output += moved.view(shape)
            out_channels.update(rows)
    return output, sorted(out_channels), dim


def _apply(module, x, weight):
    """The module's operation with another weight and no bias."""
    if isinstance(module, nn.Linear):
        return F.linear(x, weight)
    return F.conv2d(x, weight, None, module.stride, module.padding, module.dilation)


def _shifted_sum(module, x, block):
    """``conv2d(x, block)`` for a kernel block with very few non-zero entries, else ``None``.

    Each non-zero entry ``block[o, i, p, q]`` adds a strided window of input channel ``i``, scaled,
    to output channel ``o``. Small convolutions take a slow path on CPU (a 1x1-channel 5x5
    convolution of 256 images costs as much as a whole 6-channel one); a few slices do not.
    """
    if not isinstance(module, nn.Conv2d) or isinstance(module.padding, str):
        return None
    entries = block.nonzero().tolist()
    if len(entries) > 4:
        return None
    (sh, sw), (dh, dw), (ph, pw) = module.stride, module.dilation, module.padding
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


def _tensors(module):
    tensors = dict(module.named_parameters(recurse=False))
    tensors.update(module.named_buffers(recurse=False))
    return tensors


def _rank(module):
    if isinstance(module, (nn.Linear,)):
        return None
    if isinstance(module, nn.Conv2d):
        return 4
    return _CHANNEL_LOCAL[type(module)]
