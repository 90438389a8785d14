"""Turns the ``start`` and ``end`` arguments of a sweep into tensors matched to the model.

Accepted forms: a state dict (name -> tensor or array), a module of the same architecture, or any
object with an ``initial_state_dict()`` method, such as the tracker that recorded the initial
weights during training. ``end=None`` means the model's current values.
"""

from collections.abc import Mapping

import torch
from torch import nn


def resolve_endpoint(value, model, *, argument, current, need_buffers):
    """Matches one endpoint of a sweep to the model's parameters and buffers.

    Args:
        value: the endpoint as passed by the caller (see the module docstring), or ``None``.
        model: the model being swept.
        argument: the caller's argument name (``"start"`` or ``"end"``), used in error messages.
        current: the model's current values by name; returned for ``None``.
        need_buffers: whether floating-point buffers must be present (buffer interpolation on).

    Returns:
        A dict from parameter (and, when present, buffer) name to a tensor with the device and
        dtype of the model's own tensor. Names follow ``model.named_parameters()``.

    Raises:
        TypeError: ``value`` is of none of the accepted forms.
        ValueError: a trainable parameter is missing, a name is unknown or a shape differs.
    """
    if value is None:
        return current
    state = _as_mapping(value, argument)
    aliases = _aliases(model)
    unknown = sorted(str(key) for key in state if key not in aliases)
    if unknown:
        raise ValueError(
            f"{argument} has entries the model does not have: {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''}; pass a state dict of this model"
        )
    resolved = {}
    for key, raw in state.items():
        name, target = aliases[key]
        tensor = torch.as_tensor(raw)
        if tuple(tensor.shape) != tuple(target.shape):
            raise ValueError(
                f"{argument}[{key!r}] has shape {tuple(tensor.shape)} but the model's tensor has "
                f"shape {tuple(target.shape)}; pass a state dict of this model"
            )
        resolved[name] = tensor.detach().to(device=target.device, dtype=target.dtype).clone()
    for name, param in model.named_parameters():
        # A frozen parameter cannot have trained, so its current value is its value at either
        # end (the tracker does not record layers it was told to skip as frozen).
        if name not in resolved and not param.requires_grad:
            resolved[name] = current[name]
    missing = [name for name, _ in model.named_parameters() if name not in resolved]
    if missing:
        raise ValueError(
            f"{argument} lacks parameters {missing[:5]}{' ...' if len(missing) > 5 else ''}; "
            "pass a full state dict (model.state_dict()) or the tracker that recorded the weights"
        )
    if need_buffers:
        lacking = [
            name
            for name, buffer in model.named_buffers()
            if buffer.is_floating_point() and name not in resolved
        ]
        if lacking:
            raise ValueError(
                f"{argument} lacks buffers {lacking[:5]}{' ...' if len(lacking) > 5 else ''}, "
                "which interpolate_buffers=True needs; pass a full model.state_dict() or leave "
                "interpolate_buffers off"
            )
    return resolved


def _as_mapping(value, argument):
    if isinstance(value, Mapping):
        return value
    if isinstance(value, nn.Module):
        return value.state_dict()
    getter = getattr(value, "initial_state_dict", None)
    if callable(getter):
        return getter()
    raise TypeError(
        f"{argument} must be a state dict, a module of the same architecture or an object with "
        f"initial_state_dict() (such as LayerDynamics); got {type(value).__name__}"
    )


def _aliases(model):
    """Every name a state dict may use for a tensor -> (canonical name, tensor).

    Tied tensors have several names; the canonical one is the first, as ``named_parameters()``
    reports it.
    """
    canonical = {}
    for name, tensor in model.named_parameters():
        canonical[id(tensor)] = name
    for name, tensor in model.named_buffers():
        canonical.setdefault(id(tensor), name)
    aliases = {}
    for name, tensor in model.named_parameters(remove_duplicate=False):
        aliases[name] = (canonical[id(tensor)], tensor)
    for name, tensor in model.named_buffers(remove_duplicate=False):
        aliases[name] = (canonical[id(tensor)], tensor)
    return aliases
