"""Callbacks for training frameworks; each module imports its framework only when imported.

- ``tb_layerdyn.integrations.transformers.LayerDynamicsCallback``: Hugging Face ``Trainer``.
- ``tb_layerdyn.integrations.lightning.LayerDynamicsCallback``: Lightning ``Trainer``.

Both attach a ``LayerDynamics`` tracker to the framework's optimizer (``LayerDynamics.attach``), so
they log once per optimizer step with the gradients that step used, at the framework's global step.
"""
