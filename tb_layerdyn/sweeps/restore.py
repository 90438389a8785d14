"""Puts a model back exactly as it was before a sweep touched it.

A sweep writes interpolated values into the model's own parameter tensors (so that optimizers and
hooks that hold references keep working) and switches it to eval mode; this snapshot is what makes
that safe: every value, flag and mode comes back bitwise, even when the evaluation raises.
"""

import torch


class ModelSnapshot:
    """A copy of everything a sweep may change on a model.

    Holds a clone of every parameter and buffer, each module's ``training`` flag, each parameter's
    ``requires_grad`` flag and the global grad mode. The clones double as the sweep's end point when
    the caller sweeps towards the model's current weights, so no second copy is made.

    Args:
        model: the ``torch.nn.Module`` to snapshot.
    """

    def __init__(self, model):
        self.params = {
            name: (tensor, tensor.detach().clone())
            for name, tensor in model.named_parameters(remove_duplicate=True)
        }
        self.buffers = {
            name: (tensor, tensor.detach().clone())
            for name, tensor in model.named_buffers(remove_duplicate=True)
        }
        self._modes = [(module, module.training) for module in model.modules()]
        self._requires_grad = [(tensor, tensor.requires_grad) for tensor, _ in self.params.values()]
        self._grad_enabled = torch.is_grad_enabled()

    def values(self):
        """The saved values by name: parameters, then buffers."""
        saved = {name: copy for name, (_, copy) in self.params.items()}
        saved.update({name: copy for name, (_, copy) in self.buffers.items()})
        return saved

    def restore_buffers(self):
        """Copies the saved buffer values back (an evaluation in train mode may update them)."""
        with torch.no_grad():
            for tensor, copy in self.buffers.values():
                tensor.copy_(copy)

    def restore(self):
        """Copies every saved value and flag back into the same tensors and modules."""
        with torch.no_grad():
            for tensor, copy in self.params.values():
                tensor.copy_(copy)
        self.restore_buffers()
        for module, training in self._modes:
            # Set the flag itself: ``module.train()`` would also recurse into children.
            module.training = training
        for tensor, flag in self._requires_grad:
            tensor.requires_grad_(flag)
        torch.set_grad_enabled(self._grad_enabled)
