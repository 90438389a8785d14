"""What the sweep tests check against: the obvious loop, and a count of the operations that ran.

The loop is deliberately plain: a deep copy of the model, a hand-built state dict per alpha,
``load_state_dict``, evaluate.
"""

import copy

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode


def batches(shape, classes, count=2, size=8, seed=1):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn((size,) + shape, generator=generator),
         torch.randint(0, classes, (size,), generator=generator))
        for _ in range(count)
    ]


def reference(model, eval_fn, states):
    """The obvious loop: load each state dict into a copy, evaluate in eval mode, no gradients."""
    clone = copy.deepcopy(model).eval()
    rows = []
    with torch.no_grad():
        for state in states:
            clone.load_state_dict(state)
            rows.append(eval_fn(clone))
    return {m: np.array([row[m] for row in rows]) for m in rows[0]}


def lerp_state(start, end, alpha, names):
    state = {k: v.clone() for k, v in end.items()}
    for name in names:
        state[name] = torch.lerp(start[name], end[name], alpha)
    return state


def own_params(model, layer):
    module = model if layer == "(root)" else model.get_submodule(layer)
    prefix = "" if layer == "(root)" else layer + "."
    return [prefix + n for n, _ in module.named_parameters(recurse=False)]


def assert_curves(got, want):
    for metric, values in want.items():
        np.testing.assert_allclose(got[metric], values, rtol=1e-6, atol=1e-7, err_msg=metric)


def scalar_states(start, end, name, index, alphas):
    states = []
    for alpha in alphas:
        state = {k: v.clone() for k, v in end.items()}
        state[name][index] = torch.lerp(start[name][index], end[name][index], alpha)
        states.append(state)
    return states


class AtenCount(TorchDispatchMode):
    """Counts the ATen operations that actually run (a served operation runs none)."""

    def __init__(self):
        super().__init__()
        self.ops = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in ("t", "view", "detach", "alias"):  # free metadata operations
            self.ops[name] = self.ops.get(name, 0) + 1
        return func(*args, **(kwargs or {}))
