"""tb_layerdyn: how each layer of a PyTorch network learns, logged for TensorBoard.

Public API (everything else is private)::

    from tb_layerdyn import log_layer_dynamics
    log_layer_dynamics(writer, model, step)
"""

__all__ = []
