"""Serves the frontend bundle: a fixed set of files that the frontend build writes to ``static/``.

Only the names in ``FILES`` can ever be read, each from a path fixed at import time: nothing from
the request goes into a file path, so no request can reach another file.
"""

import os

from tensorboard import errors
from tensorboard.backend import http_util
from werkzeug import wrappers

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

# file name -> content type; browsers refuse an ES module served as anything but JavaScript.
FILES = {
    "index.js": "text/javascript",
    "index.css": "text/css",
}


def _serve(name, content_type, static_dir):
    path = os.path.join(static_dir, name)

    @wrappers.Request.application
    def app(request):
        try:
            with open(path, "rb") as f:
                content = f.read()
        except FileNotFoundError:
            raise errors.NotFoundError(
                f"{name} of the Layer Dynamics frontend was not built: reinstall tb_layerdyn "
                "(pip install .) or run `node frontend/build.mjs` in a source checkout"
            ) from None
        return http_util.Respond(request, content, content_type)

    return app


def static_apps(static_dir=STATIC_DIR):
    """Routes for the bundle's files, to merge into ``get_plugin_apps``.

    Args:
        static_dir: where the bundle lies; the package's ``static/`` unless a test says otherwise.

    Returns:
        route (``"/index.js"``) -> WSGI app.
    """
    return {"/" + name: _serve(name, content_type, static_dir) for name, content_type in FILES.items()}
