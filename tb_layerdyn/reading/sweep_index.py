"""The sweeps of a run as readers see them: one per step and scope, decoded on demand.

Sweeps are small and rare, so the store keeps only where their records lie (``store.INDEX_ENTRY``)
and reads a record again when it is asked for. When one scope was logged more than once at a step
(for example again with other alphas, which is another tag), the one written last (the latest wall
time, then the later record) is the one kept, as TensorBoard keeps the last value of a repeated
step. ``read()`` and the plugin both list sweeps through ``logged_sweeps``.
"""

import dataclasses
from typing import List, Optional

import numpy as np

from tb_layerdyn.format import envelope
from tb_layerdyn.format import sweeps as sweep_format

# The order of scopes at one step.
SCOPES = sweep_format.INTERPOLATION_SCOPES + (sweep_format.ROBUSTNESS_SCOPE,)


@dataclasses.dataclass(frozen=True)
class LoggedSweep:
    """One sweep of one scope: where it lies and its checked layout.

    Attributes:
        step: the training step it was taken at.
        scope: ``"model"``, ``"layers"``, ``"parameters"`` or ``"robustness"``.
        layout: the layout (``format.sweeps.parse_layout``).
        entry: its ``store.INDEX_ENTRY`` record.
    """

    step: int
    scope: str
    layout: dict
    entry: np.void


def logged_sweeps(run, model=None, *, any_model=False) -> List[LoggedSweep]:
    """The sweeps of a ``store.RunData``, one per step and scope, sorted by step then scope.

    Args:
        run: the run.
        model: only the sweeps of this model (``None``: those written without a model name).
        any_model: every sweep, whatever its model.
    """
    latest = {}
    for position, entry in enumerate(run.index()):
        state = run.tags[int(entry["tag"])]
        if state.kind != sweep_format.KIND or state.error is not None:
            continue
        layout = state.layout
        if not any_model and layout.get("model") != model:
            continue
        key = (int(entry["step"]), layout["scope"], layout.get("model") if any_model else None)
        order = (float(entry["wall_time"]), position)
        if key not in latest or order >= latest[key][0]:
            latest[key] = (order, LoggedSweep(key[0], key[1], layout, entry))
    found = [sweep for _, sweep in latest.values()]
    return sorted(found, key=lambda s: (s.step, SCOPES.index(s.scope), s.layout.get("model") or ""))


def values(run, sweep: LoggedSweep) -> Optional[np.ndarray]:
    """The float32 payload of a sweep, read again from its event file (``None`` if gone)."""
    value = run.read_value(sweep.entry)
    if value is None:
        return None
    try:
        return sweep_format.decode_tensor(sweep.layout, value)
    except envelope.FormatError:
        return None


def models_with_sweeps(run) -> List[Optional[str]]:
    """The model names that have sweeps in a run (``None`` for those without a name)."""
    names = set()
    for entry in run.index():
        state = run.tags[int(entry["tag"])]
        if state.kind == sweep_format.KIND and state.error is None:
            names.add(state.layout.get("model"))
    return sorted(names, key=lambda m: (m is not None, m or ""))
