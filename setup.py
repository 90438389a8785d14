"""Packaging for tb_layerdyn: the logging API and the Layer Dynamics TensorBoard plugin.

The plugin's frontend is bundled from ``frontend/`` by esbuild (``frontend/build.mjs``) into
``tb_layerdyn/plugin/static/``, which is never committed. Only a source checkout needs Node.js: its
build builds the bundle when it is missing or older than its sources. An sdist carries the built
bundle and no frontend sources, so ``python -m build`` (sdist, then a wheel from it) makes a wheel
with the tab, and installing the sdist or the wheel needs no Node.
"""

import os
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
FRONTEND = os.path.join(HERE, "frontend")
BUNDLE = os.path.join(HERE, "tb_layerdyn", "plugin", "static", "index.js")

# The Python versions this package supports; scripts/setup.sh and README say the same.
PYTHON_REQUIRES = ">=3.11"


def _bundle_is_stale():
    if not os.path.exists(BUNDLE):
        return True
    built = os.path.getmtime(BUNDLE)
    sources = [os.path.join(FRONTEND, "build.mjs"), os.path.join(FRONTEND, "package-lock.json")]
    for folder, _dirs, files in os.walk(os.path.join(FRONTEND, "src")):
        sources.extend(os.path.join(folder, name) for name in files)
    return any(os.path.getmtime(path) > built for path in sources if os.path.exists(path))


def build_frontend():
    """Bundles the frontend into the Python package when a checkout's bundle is missing or stale.

    Without ``frontend/`` (an sdist) the bundle it carries is used as it is.
    """
    if not os.path.exists(os.path.join(FRONTEND, "build.mjs")) or not _bundle_is_stale():
        return
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        if os.path.exists(BUNDLE):
            print("warning: the frontend bundle is older than frontend/src; Node.js is not on PATH to rebuild it")
            return
        raise RuntimeError(
            "Building tb_layerdyn from a source checkout needs Node.js 18+ and npm on PATH once, "
            "to bundle the TensorBoard tab (Debian: apt-get install nodejs npm); an sdist or a "
            "wheel (python -m build) installs without them."
        )
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules")):
        subprocess.check_call([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND)
    subprocess.check_call([node, "build.mjs"], cwd=FRONTEND)


class BuildPyWithFrontend(build_py):
    def run(self):
        build_frontend()
        super().run()


class SdistWithFrontend(sdist):
    """An sdist that carries the built bundle (and no frontend sources, see MANIFEST.in)."""

    def run(self):
        build_frontend()
        if not os.path.exists(BUNDLE):
            raise RuntimeError("the frontend bundle is missing; an sdist without it would have no tab")
        super().run()


setup(
    name="tb_layerdyn",
    version="0.1.0",
    description="Per-layer training dynamics for PyTorch, with a TensorBoard plugin to see them",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=PYTHON_REQUIRES,
    packages=find_packages(include=["tb_layerdyn", "tb_layerdyn.*"]),
    # sums.cpp: the native kernels' source, compiled after install by
    # `python -m tb_layerdyn.tracking.native` (scripts/setup.sh runs it; optional).
    package_data={"tb_layerdyn.plugin": ["static/*"], "tb_layerdyn.tracking.native": ["sums.cpp"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.2",
        "tensorboard>=2.16",
        "numpy>=1.24",
        "protobuf>=3.20",
        "werkzeug>=2.0",
    ],
    extras_require={
        "test": [
            "pytest>=7", "playwright>=1.40", "pandas>=2", "pyarrow>=14", "build>=1", "ruff>=0.6",
            "transformers>=4.40", "accelerate>=0.26", "lightning>=2.2",
        ],
        # `tb-layerdyn export --format parquet`; CSV needs nothing more.
        "parquet": ["pyarrow>=14"],
    },
    entry_points={
        "tensorboard_plugins": [
            "layer_dynamics = tb_layerdyn.plugin.loader:LayerDynamicsLoader",
        ],
        "console_scripts": [
            "tb-layerdyn = tb_layerdyn.cli:main",
        ],
    },
    cmdclass={"build_py": BuildPyWithFrontend, "sdist": SdistWithFrontend},
)
