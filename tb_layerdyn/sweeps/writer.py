"""Writes sweep results as TensorBoard events (see ``encoding`` for the payload).

Events go through the project's ``EventSink``, so a logdir path shares the event file (and the
``SummaryWriter``) that ``log_layer_dynamics`` uses for that directory.
"""

import numpy as np

from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.sweeps.interpolation import SweepResult
from tb_layerdyn.sweeps.robustness import RobustnessResult
from tb_layerdyn.tracking.sink import EventSink


def sweep_summaries(result):
    """The ``Summary`` protos of a result: one per scope, one for a robustness table if any."""
    summaries = []
    if isinstance(result, SweepResult):
        for scope, curves in result.scopes.items():
            parameters = [result.parameters[c] for c in curves] if scope == "parameters" else None
            layout = encoding.sweep_layout(
                scope, result.metrics, curves, result.alphas, parameters=parameters
            )
            values = np.empty(encoding.expected_shape(layout), dtype=np.float32)
            for c, curve in enumerate(curves):
                for i, metric in enumerate(result.metrics):
                    values[i, c] = result.curves[curve][metric]
                values[-1, c] = result.travel[curve]
            summaries.append(encoding.sweep_pb(values, layout))
        robustness = result.robustness
    else:
        robustness = result
    if robustness is not None:
        layout = encoding.robustness_layout(
            robustness.metrics, robustness.layers, robustness.threshold, robustness.label_metric
        )
        values = np.empty(encoding.expected_shape(layout), dtype=np.float32)
        for i, metric in enumerate(robustness.metrics):
            values[0, i] = robustness.end_metrics[metric]
            values[1, i] = robustness.reinitialized[metric]
            values[2, i] = robustness.rerandomized[metric]
        summaries.append(encoding.sweep_pb(values, layout))
    return summaries


def log_interpolation_sweep(writer, result, step, *, walltime=None):
    """Writes a sweep (and its robustness table, if any) at a training step.

    One tensor summary per scope, at ``step``; alpha is inside the payload, so sweeps taken at
    several steps sit side by side in one run and both TensorBoard loaders keep each of them.

    Example::

        result = interpolation_sweep(model, eval_fn, initial_state)
        log_interpolation_sweep(writer, result, step=global_step)

    Args:
        writer: a ``torch.utils.tensorboard.SummaryWriter`` or a logdir path; flushed after.
        result: a ``SweepResult`` from ``interpolation_sweep``, or a ``RobustnessResult``.
        step: the training step at which the sweep was taken (a non-negative int).
        walltime: event time in seconds since the epoch; ``None`` for now.

    Raises:
        TypeError: ``result`` or ``writer`` is of the wrong kind; nothing is written then.
        ValueError: ``step`` is not a non-negative integer, or the writer is closed.
    """
    if not isinstance(result, (SweepResult, RobustnessResult)):
        raise TypeError(
            f"result must be a SweepResult (from interpolation_sweep) or a RobustnessResult, got "
            f"{type(result).__name__}"
        )
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative int (the training step), got {step!r}")
    summaries = sweep_summaries(result)
    sink = writer if isinstance(writer, EventSink) else EventSink(writer)
    for summary in summaries:
        sink.write_summary(summary, int(step), walltime)
    sink.flush()
