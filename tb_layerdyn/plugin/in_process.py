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
from tensorboard.util import grpc_util
from werkzeug import test as werkzeug_test

from tb_layerdyn.plugin.loader import LayerDynamicsLoader

LOADERS = ("python", "rust")

Served = collections.namedtuple("Served", "client data_provider")


@contextlib.contextmanager
def data_server(logdir, samples_per_plugin=None, channel_creds_type=None):
    """TensorBoard's Rust data server over ``logdir``, started as ``tensorboard`` starts it.

    It loads in the background: poll the provider until the data is there. On exit the server is
    stopped (it exits when its stdin closes, ``--die-after-stdin``; the ingester keeps that pipe
    open for the life of the process otherwise).

    Args:
        logdir: the directory to serve.
        samples_per_plugin: ``{plugin_name: samples}``, 0 to keep every sample.
        channel_creds_type: gRPC channel credentials; local ones when omitted.

    Yields:
        The data provider.
    """
    ingester = server_ingester.SubprocessServerDataIngester(
        server_binary=server_ingester.get_server_binary(),
        logdir=str(logdir),
        reload_interval=0,
        channel_creds_type=channel_creds_type or grpc_util.ChannelCredsType.LOCAL,
        samples_per_plugin=samples_per_plugin or {},
    )
    ingester.start()
    try:
        yield ingester.data_provider
    finally:
        ingester._stdin_handle.close()


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
    plugins = [core_plugin.CorePluginLoader(), plugin_loader or LayerDynamicsLoader()]
    with contextlib.ExitStack() as stack:
        if loader == "python":
            ingester = data_ingester.LocalDataIngester(flags)
            ingester.start()
            provider = ingester.data_provider
        else:
            provider = stack.enter_context(
                data_server(logdir, flags.samples_per_plugin, flags.grpc_creds_type)
            )
        app = application.TensorBoardWSGIApp(flags, plugins, provider)
        yield Served(werkzeug_test.Client(app), provider)
