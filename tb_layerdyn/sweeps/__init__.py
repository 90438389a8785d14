"""Interpolation sweeps and layer robustness (Goodfellow & Vinyals; Zhang, Bengio & Singer).

Public names::

    interpolation_sweep(model, eval_fn, start, end=None, ...) -> SweepResult
    layer_robustness(model, eval_fn, start, end=None, ...)    -> RobustnessResult
    log_interpolation_sweep(writer, result, step)
    make_eval_fn(loss_fn, batches)                             -> eval_fn

Modules: ``interpolation`` (the three scopes), ``robustness`` (re-initialization and
re-randomization), ``op_cache`` (serving the operations the swept tensors cannot affect, with
``op_trace`` deciding which and ``op_arguments`` recognising them), ``channel_delta`` (rebuilding
operations in the channels a moved scalar reaches), ``session`` (endpoints, evaluation,
restoration), ``evaluation`` (``make_eval_fn``) and ``writer``; the event payload is
``tb_layerdyn.format.sweeps`` (torch-free).

Names are imported lazily so that ``tb_layerdyn.format.sweeps`` stays usable without torch.
"""

import importlib

_EXPORTS = {
    "interpolation_sweep": "tb_layerdyn.sweeps.interpolation",
    "SweepResult": "tb_layerdyn.sweeps.interpolation",
    "DEFAULT_ALPHAS": "tb_layerdyn.sweeps.interpolation",
    "layer_robustness": "tb_layerdyn.sweeps.robustness",
    "RobustnessResult": "tb_layerdyn.sweeps.robustness",
    "log_interpolation_sweep": "tb_layerdyn.sweeps.writer",
    "make_eval_fn": "tb_layerdyn.sweeps.evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tb_layerdyn.sweeps' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
