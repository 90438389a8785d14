"""Activations of chosen modules for one probe input, captured without disturbing training.

One forward pass of the model on the probe, with forward hooks on the chosen modules that copy the
first element of each output. Around that pass:

- the hooks are removed afterwards, whatever happens;
- it runs under ``torch.no_grad()``: no graph is built and no gradient is touched;
- every module is in eval mode during the pass (dropout off, batch norm reads its running
  statistics instead of updating them) and gets its own ``training`` flag back afterwards; the
  flags are set directly, as ``Module.train`` does, so overridden ``train`` methods are not run;
- the CPU random number generator's state, and the CUDA one of the probe's device, are restored
  bit for bit, so the training run draws the same numbers with or without pictures.

The model's own forward hooks still see the probe's pass, as they would see any forward.
"""

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn


def first_tensor(output) -> Optional[torch.Tensor]:
    """The tensor a module's output stands for: itself, or the first tensor of a tuple, list or
    dict (an LSTM's output, a transformer's ``(hidden, attention)``); ``None`` when it holds none."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        for item in output:
            found = first_tensor(item)
            if found is not None:
                return found
    return None


def capture(model: nn.Module, probe, names: Sequence[str]) -> List[Tuple[str, torch.Tensor]]:
    """The first element of each named module's output for one forward pass of ``probe``.

    Args:
        model: the (unwrapped) model.
        probe: its input: a tensor, or a tuple of tensors passed as positional arguments.
        names: qualified module names (``dict(model.named_modules())`` keys).

    Returns:
        ``(name, tensor)`` for the modules that ran, in the order they first ran, each tensor a
        copy of ``output[0]`` (the output itself when it is a scalar) on its own device. A module
        called twice is captured at its first call; one that did not run, or whose output holds no
        floating tensor, is left out.

    Raises:
        ValueError: the model's forward raised on the probe (the message says what it raised).
    """
    modules = dict(model.named_modules())
    captured = {}

    def hook_for(name):
        def hook(module, args, output):
            if name in captured:
                return
            tensor = first_tensor(output)
            if tensor is None or not tensor.is_floating_point():
                captured[name] = None
                return
            captured[name] = (tensor[0] if tensor.ndim else tensor).detach().clone()

        return hook

    args = probe if isinstance(probe, tuple) else (probe,)
    device = next((p.device for p in model.parameters()), args[0].device)
    args = tuple(a.to(device) for a in args)
    handles = [modules[name].register_forward_hook(hook_for(name)) for name in names]
    flags = [(module, module.training) for module in model.modules()]
    cpu_state = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        for module, _ in flags:
            module.training = False
        with torch.no_grad():
            model(*args)
    except Exception as error:  # the user's forward: say which input failed, keep its error
        raise ValueError(
            f"probe: the model's forward raised {type(error).__name__} ({error}); pass a probe "
            "input the model accepts, batch dimension first"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        for module, training in flags:
            module.training = training
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)
    return [(name, tensor) for name, tensor in captured.items() if tensor is not None]
