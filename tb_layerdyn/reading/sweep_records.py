"""Interpolation sweeps and robustness tables as ``tb_layerdyn.read`` returns them.

``Run.sweeps`` holds one record per logged sweep and scope. The records mirror the objects the
sweep returned when it ran (``SweepResult``, ``RobustnessResult``), with float32 values as logged,
so that code written against a live result reads a logged one the same way. Like the reader, this
module imports neither torch nor the plugin.
"""

import dataclasses
from typing import Dict, List, Mapping, Union

import numpy as np

from tb_layerdyn.format import sweeps as encoding


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class Sweep:
    """One interpolation sweep of one scope, as logged by ``log_interpolation_sweep``.

    Attributes:
        step: the training step the sweep was taken at.
        scope: ``"model"``, ``"layers"`` or ``"parameters"``.
        metrics: the metric names ``eval_fn`` returned.
        alphas: float64 array of the interpolation coefficients.
        curves: curve name -> metric name -> float32 array over ``alphas`` (NaN where the metric
            was NaN). Curve names are ``"model"``, layer names in depth order, or parameter
            scalars (``"fc1.weight[3, 17]"``), in the order logged.
        travel: curve name -> the distance ``|theta1 - theta0|`` over what that curve moves.
        parameters: for the parameter scope, curve name -> ``{"layer", "parameter", "index"}``;
            empty otherwise.
    """

    step: int
    scope: str
    metrics: List[str]
    alphas: np.ndarray
    curves: Mapping[str, Mapping[str, np.ndarray]]
    travel: Mapping[str, float]
    parameters: Mapping[str, dict]


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class RobustnessTable:
    """Per layer, the metrics with that layer re-initialized or re-randomized, as logged.

    Attributes:
        step: the training step the table was computed at.
        scope: always ``"robustness"``.
        layers: layer names in depth order.
        metrics: the metric names.
        end_metrics: metric -> its value for the end model.
        reinitialized: metric -> float32 array over ``layers``, that layer back at its start.
        rerandomized: metric -> float32 array over ``layers``, that layer freshly drawn (NaN where
            it could not be).
        threshold: the labelling threshold the table was logged with.
        label_metric: the metric the labels are based on.
    """

    step: int
    scope: str
    layers: List[str]
    metrics: List[str]
    end_metrics: Mapping[str, float]
    reinitialized: Mapping[str, np.ndarray]
    rerandomized: Mapping[str, np.ndarray]
    threshold: float
    label_metric: str

    def change(self, condition: str) -> Dict[str, np.ndarray]:
        """metric -> its value under ``condition`` (``"reinitialized"`` or ``"rerandomized"``)
        minus its end value, one float64 per layer."""
        tables = {"reinitialized": self.reinitialized, "rerandomized": self.rerandomized}
        if condition not in tables:
            raise ValueError(f"condition must be one of {sorted(tables)}, got {condition!r}")
        return {
            m: tables[condition][m].astype(np.float64) - self.end_metrics[m] for m in self.metrics
        }

    @property
    def labels(self) -> List[str]:
        """Per layer ``"robust"`` (re-initializing it changes ``label_metric`` by more than
        ``threshold``), ``"ambient"`` or ``"undefined"`` (a NaN change), as logged."""
        return self.relabel(self.threshold)

    def relabel(self, threshold: float) -> List[str]:
        """The labels with another threshold (an absolute change of ``label_metric``)."""
        return encoding.labels(self.change("reinitialized")[self.label_metric], float(threshold))


# What one element of ``Run.sweeps`` is.
Record = Union[Sweep, RobustnessTable]


def from_payload(step: int, layout: dict, values: np.ndarray) -> Record:
    """The record of one payload.

    Args:
        step: the event's step.
        layout: a layout from ``encoding.parse_layout``.
        values: the float32 tensor, of ``encoding.expected_shape(layout)``.
    """
    values = np.asarray(values, dtype=np.float32)
    metrics = list(layout["metrics"])
    if layout["scope"] == encoding.ROBUSTNESS_SCOPE:
        return RobustnessTable(
            step=int(step),
            scope=encoding.ROBUSTNESS_SCOPE,
            layers=list(layout["layers"]),
            metrics=metrics,
            end_metrics={m: float(values[0, i, 0]) for i, m in enumerate(metrics)},
            reinitialized={m: values[1, i].copy() for i, m in enumerate(metrics)},
            rerandomized={m: values[2, i].copy() for i, m in enumerate(metrics)},
            threshold=float(layout["threshold"]),
            label_metric=layout["label_metric"],
        )
    curves = list(layout["curves"])
    parameters = layout.get("parameters") or []
    return Sweep(
        step=int(step),
        scope=layout["scope"],
        metrics=metrics,
        alphas=np.asarray(layout["alphas"], dtype=np.float64),
        curves={
            curve: {m: values[i, c].copy() for i, m in enumerate(metrics)}
            for c, curve in enumerate(curves)
        },
        travel={curve: float(values[-1, c, 0]) for c, curve in enumerate(curves)},
        parameters={curve: dict(p) for curve, p in zip(curves, parameters)},
    )
