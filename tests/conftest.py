"""Shared test helpers: writing logdirs of layer dynamics without torch, and serving them through
TensorBoard's real WSGI app under either of its loaders.

Fixtures here stay generic so any test file can build the event files it reads back.
"""

import contextlib
import os
import time

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.plugin import in_process
from tb_layerdyn.plugin.in_process import LOADERS, parse_flags  # noqa: F401 (used by test modules)


def make_layout(layers, metrics=layer_metrics.METRIC_NAMES, groups=(), param_counts=None, **options):
    """A layout dict for ``summary.layer_metrics_pb`` with sensible defaults.

    Args:
        layers: layer names in depth order.
        metrics: metric names, one per tensor row.
        groups: ``{"name", "kind", "members"}`` dicts.
        param_counts: per layer; ``10 * (i + 1)`` for layer ``i`` when omitted.
        **options: ``order``, ``granularity`` or ``rwc`` to override their defaults.
    """
    if param_counts is None:
        param_counts = [10 * (i + 1) for i in range(len(layers))]
    return layer_metrics.layout(
        metrics=metrics,
        layers=layers,
        param_counts=param_counts,
        order=options.get("order", "forward"),
        granularity=options.get("granularity", "layer"),
        rwc=options.get("rwc", "l1"),
        groups=list(groups),
    )


def write_layer_metrics(run_dir, layout, steps, values, extra_summaries=()):
    """Writes one event file of per-layer metrics, as the tracker would.

    Args:
        run_dir: the run's directory (created if needed).
        layout: a layout dict from ``make_layout``.
        steps: the logged steps, in the order they are written.
        values: array ``(len(steps), metrics, layers + groups)``.
        extra_summaries: ``(step, Summary)`` pairs written after the metrics, e.g. another tag.

    Returns:
        The path of the event file.
    """
    os.makedirs(run_dir, exist_ok=True)
    writer = EventFileWriter(run_dir)
    wall_time = time.time()
    for i, (step, value) in enumerate(zip(steps, values)):
        pb = layer_metrics.summary(value, layout, with_metadata=(i == 0))
        writer.add_event(event_pb2.Event(step=int(step), wall_time=wall_time + i, summary=pb))
    for step, pb in extra_summaries:
        writer.add_event(event_pb2.Event(step=int(step), wall_time=wall_time, summary=pb))
    writer.close()
    return _newest_event_file(run_dir)


def _newest_event_file(run_dir):
    names = [n for n in os.listdir(run_dir) if n.startswith("events.out.tfevents")]
    return os.path.join(run_dir, max(names, key=lambda n: os.path.getmtime(os.path.join(run_dir, n))))


def random_values(rng, num_steps, layout, nan_fraction=0.0):
    """Positive float32 values for ``num_steps`` calls of ``layout``, some NaN if asked."""
    shape = (num_steps, len(layout["metrics"]), len(layout["layers"]) + len(layout["groups"]))
    values = rng.uniform(1e-4, 2.0, size=shape).astype(np.float32)
    if nan_fraction:
        values[rng.random(shape) < nan_fraction] = np.nan
    return values


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Every test reads through a store cache of its own session, never the user's."""
    previous = os.environ.get("TB_LAYERDYN_CACHE")
    os.environ["TB_LAYERDYN_CACHE"] = str(tmp_path_factory.mktemp("tb_layerdyn_cache"))
    yield
    if previous is None:
        os.environ.pop("TB_LAYERDYN_CACHE", None)
    else:
        os.environ["TB_LAYERDYN_CACHE"] = previous


@pytest.fixture
def layer_metrics_writer():
    """``write_layer_metrics`` as a fixture, for tests that prefer injection to imports."""
    return write_layer_metrics


@contextlib.contextmanager
def tensorboard_client(logdir, loader, plugin_loader=None):
    """A ``werkzeug`` client of TensorBoard's WSGI app over a logdir, as ``tensorboard`` serves it
    (see ``tb_layerdyn.plugin.in_process.serve``; the Rust data server loads in the background:
    poll a route until the data is there)."""
    with in_process.serve(logdir, loader, plugin_loader) as served:
        yield served.client

