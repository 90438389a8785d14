"""tb_layerdyn: how each layer of a PyTorch network learns, logged for TensorBoard.

Add one call to a training loop, then run ``tensorboard --logdir runs`` and open the
**Layer Dynamics** tab::

    from tb_layerdyn import log_layer_dynamics
    log_layer_dynamics(writer, model, step)   # writer: a SummaryWriter or a logdir

Public names are imported lazily, so that ``import tb_layerdyn`` (and TensorBoard loading the
plugin) does not import torch.
"""

import importlib

# public name -> module that defines it
_EXPORTS = {
    "log_layer_dynamics": "tb_layerdyn.tracking.tracker",
    "LayerDynamics": "tb_layerdyn.tracking.tracker",
    "read": "tb_layerdyn.reading.reader",
    "interpolation_sweep": "tb_layerdyn.sweeps",
    "log_interpolation_sweep": "tb_layerdyn.sweeps",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tb_layerdyn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
