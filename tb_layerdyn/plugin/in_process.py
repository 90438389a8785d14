"""TensorBoard's real WSGI app over a logdir, served in this process under either of its loaders.

The tests and the route benchmark talk to the plugin through this, as a browser would through
``tensorboard --logdir``: the same flags (with the plugin loader's ``fix_flags`` applied), the same
data provider, the same app; only the HTTP socket is replaced by a ``werkzeug`` test client.
"""

import collections
import contextlib

from tensorboard import program
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.data import server_ingester
from tensorboard.plugins.core import core_plugin
from werkzeug import test as werkzeug_test

from tb_layerdyn.plugin.loader import LayerDynamicsLoader

LOADERS = ("python", "rust")

Served = collections.namedtuple("Served", "client data_provider")


def parse_flags(argv):
    """TensorBoard's flags as its command line parses them, loaders' ``fix_flags`` applied."""
    tb = program.TensorBoard(plugins=[core_plugin.CorePluginLoader, LayerDynamicsLoader])
    tb.configure(argv=["tensorboard"] + list(argv))
    return tb.flags


@contextlib.contextmanager
def serve(logdir, loader, plugin_loader=None, flags=()):
    """Serves ``logdir`` through TensorBoard's WSGI app, with the core plugin and this one.

    The Python loader has read the whole logdir when this yields; the Rust data server loads in the
    background (poll a route until the data is there) and is stopped on exit.

    Args:
        logdir: the directory to serve.
        loader: ``"python"`` (the ``EventMultiplexer``, ``--load_fast=false``) or ``"rust"`` (the
            data server).
        plugin_loader: the ``TBLoader`` of the plugin; ``LayerDynamicsLoader()`` when omitted.
        flags: more command-line flags (``["--samples_per_plugin", "layer_dynamics=0"]``).

    Yields:
        ``Served(client, data_provider)``: a ``werkzeug`` test client of the app, and the data
        provider the plugin reads from.

    Raises:
        ValueError: ``loader`` is not one of ``LOADERS``.
    """
    if loader not in LOADERS:
        raise ValueError(f"loader must be one of {LOADERS}, got {loader!r}")
    flags = parse_flags(
        ["--logdir", logdir, "--reload_interval", "0", "--reload_task", "blocking", *flags]
    )
    if loader == "python":
        ingester = data_ingester.LocalDataIngester(flags)
    else:
        ingester = server_ingester.SubprocessServerDataIngester(
            server_binary=server_ingester.get_server_binary(),
            logdir=logdir,
            reload_interval=0,
            channel_creds_type=flags.grpc_creds_type,
            samples_per_plugin=flags.samples_per_plugin,
        )
    ingester.start()
    plugins = [core_plugin.CorePluginLoader(), plugin_loader or LayerDynamicsLoader()]
    app = application.TensorBoardWSGIApp(flags, plugins, ingester.data_provider)
    try:
        yield Served(werkzeug_test.Client(app), ingester.data_provider)
    finally:
        if loader == "rust":
            # The server exits when its stdin closes (--die-after-stdin); the ingester keeps that pipe.
            ingester._stdin_handle.close()
