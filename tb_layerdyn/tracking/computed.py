"""Weights that a module computes from parametrizations, measured as the module uses them.

With ``torch.nn.utils.parametrizations.weight_norm`` (or ``spectral_norm``, or any
``torch.nn.utils.parametrize`` parametrization) ``fc1.weight`` is no parameter: the module computes
it from originals (``g`` and ``v``) on each access. The tracker measures that weight. Each computed
tensor gets a *shadow*, allocated once, that holds its current value; it is refreshed before every
pass, and the reducer treats it as one more parameter, so RWC, distances and norms are those of the
weight the forward uses. The computed weight holds no gradient: a layer's ``grad_norm`` adds the
gradients of its originals, which are what the optimizer updates.

Computing a weight never changes the model: parametrizations run in eval mode for it, so
``spectral_norm`` does no power iteration (its ``u`` and ``v`` stay as training left them).
"""

import dataclasses
from typing import List

import numpy as np
import torch

from tb_layerdyn.tracking import metrics


def _compute(module, tensor: str) -> torch.Tensor:
    """The value of a computed tensor now, without touching the module's state."""
    for hook in module._forward_pre_hooks.values():
        if getattr(hook, "name", None) != tensor:
            continue
        kind = type(hook).__name__
        if kind == "WeightNorm":
            return hook.compute_weight(module)
        if kind == "SpectralNorm":
            return hook.compute_weight(module, do_power_iteration=False)
    plist = module.parametrizations[tensor]
    modes = [(m, m.training) for m in plist.modules()]
    for m, _ in modes:
        m.training = False
    try:
        return getattr(module, tensor)
    finally:
        for m, training in modes:
            m.training = training


@dataclasses.dataclass
class _Entry:
    row: int
    module: torch.nn.Module
    tensor: str
    shadow: torch.Tensor
    originals: List[torch.nn.Parameter]


class ComputedWeights:
    """The shadows of a tracker's computed weights, and their layers' gradient sums."""

    def __init__(self):
        self._shadows = {}
        self._entries: List[_Entry] = []
        self._grads = None

    def measured(self, model, layers):
        """The layers as the reducer measures them: each computed tensor's originals replaced by
        its shadow, named like the tensor (``fc1.weight``)."""
        self._entries = []
        if not any(lay.computed for lay in layers):
            self._shadows = {}
            return list(layers)
        modules = dict(model.named_modules())
        kept = {}
        out = []
        with torch.no_grad():
            for row, lay in enumerate(layers):
                if not lay.computed:
                    out.append(lay)
                    continue
                module = modules[lay.module]
                by_name = dict(lay.params)
                originals = {n for _, names in lay.computed for n in names}
                params = [(n, p) for n, p in lay.params if n not in originals]
                for tensor, names in lay.computed:
                    value = _compute(module, tensor).detach()
                    key = (id(module), tensor)
                    shadow = self._shadows.get(key)
                    if (
                        shadow is None
                        or shadow.shape != value.shape
                        or shadow.dtype != value.dtype
                        or shadow.device != value.device
                    ):
                        shadow = torch.empty(value.shape, dtype=value.dtype, device=value.device)
                    shadow.copy_(value)
                    kept[key] = shadow
                    params.append((f"{lay.module}.{tensor}" if lay.module else tensor, shadow))
                    self._entries.append(_Entry(row, module, tensor, shadow, [by_name[n] for n in names]))
                out.append(dataclasses.replace(lay, params=tuple(params), computed=()))
        self._shadows = kept
        return out

    def __bool__(self):
        return bool(self._entries)

    def refresh(self) -> None:
        """Copies each computed tensor's current value into its shadow."""
        with torch.no_grad():
            for entry in self._entries:
                entry.shadow.copy_(_compute(entry.module, entry.tensor))

    def read_grads(self) -> None:
        """Reads the originals' gradients now (squared norms per layer row, in float64)."""
        grads = {}
        for entry in self._entries:
            total, present = grads.get(entry.row, (0.0, False))
            for p in entry.originals:
                if p.grad is not None:
                    norm = float(torch.linalg.vector_norm(p.grad.detach(), dtype=torch.float64))
                    total += norm * norm
                    present = True
            grads[entry.row] = (total, present)
        self._grads = grads

    def add_grads(self, layer_sums: np.ndarray, has_grad: np.ndarray) -> np.ndarray:
        """Adds the gradients read last into the layers' sums; returns ``has_grad`` updated."""
        if not self._grads:
            return has_grad
        has_grad = np.array(has_grad, dtype=bool)
        for row, (total, present) in self._grads.items():
            layer_sums[row, metrics.SUM_SQ_GRAD] += total
            has_grad[row] |= present
        self._grads = None
        return has_grad
