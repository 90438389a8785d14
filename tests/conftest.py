"""Shared test helpers: writing logdirs of layer dynamics without torch, and serving them through
TensorBoard's real WSGI app under either of its loaders.

Fixtures here stay generic so any test file can build the event files it reads back.
"""

import contextlib
import os
import time

import numpy as np
import pytest
from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.compat.proto import event_pb2
from tensorboard.data import server_ingester
from tensorboard.plugins.core import core_plugin
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from werkzeug import test as werkzeug_test

from tb_layerdyn import metadata
from tb_layerdyn import summary
from tb_layerdyn.plugin.loader import LayerDynamicsLoader

LOADERS = ("python", "rust")


def make_layout(layers, metrics=metadata.METRIC_NAMES, groups=(), param_counts=None, **options):
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
    return summary.layer_metrics_layout(
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
        pb = summary.layer_metrics_pb(value, layout, with_metadata=(i == 0))
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


@pytest.fixture
def layer_metrics_writer():
    """``write_layer_metrics`` as a fixture, for tests that prefer injection to imports."""
    return write_layer_metrics


def parse_flags(argv):
    """TensorBoard's flags as its command line parses them, loaders' ``fix_flags`` applied."""
    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader, LayerDynamicsLoader])
    tb.configure(argv=["tensorboard"] + list(argv))
    return tb.flags


@contextlib.contextmanager
def tensorboard_client(logdir, loader, plugin_loader=None):
    """A ``werkzeug`` client of TensorBoard's WSGI app over a logdir, as ``tensorboard`` serves it.

    Flags come from ``parse_flags``, so what the plugin's loader puts in ``fix_flags`` (keeping
    every step) is in force. The Rust data server loads in the background: poll a route until
    the data is there.

    Args:
        logdir: the directory to serve.
        loader: ``"python"`` (the ``EventMultiplexer``, ``--load_fast=false``) or ``"rust"`` (the
            data server, started in-process and stopped on exit).
        plugin_loader: the ``TBLoader`` of the plugin; ``LayerDynamicsLoader()`` when omitted.

    Yields:
        The client.
    """
    flags = parse_flags(["--logdir", logdir, "--reload_interval", "0", "--reload_task", "blocking"])
    stop = None
    if loader == "python":
        ingester = data_ingester.LocalDataIngester(flags)
    elif loader == "rust":
        ingester = server_ingester.SubprocessServerDataIngester(
            server_binary=server_ingester.get_server_binary(),
            logdir=logdir,
            reload_interval=0,
            channel_creds_type=flags.grpc_creds_type,
            samples_per_plugin=flags.samples_per_plugin,
        )
    else:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    ingester.start()
    if loader == "rust":
        # The server exits when its stdin closes (--die-after-stdin); the ingester keeps that pipe.
        stop = ingester._stdin_handle.close
    plugins = [core_plugin.CorePluginLoader(), plugin_loader or LayerDynamicsLoader()]
    app = application.TensorBoardWSGIApp(flags, plugins, ingester.data_provider)
    try:
        yield werkzeug_test.Client(app)
    finally:
        if stop is not None:
            stop()
