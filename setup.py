"""Packaging for tb_layerdyn: the logging API and the Layer Dynamics TensorBoard plugin.

Building the package also builds the plugin's frontend bundle from ``frontend/`` with npm and
esbuild (``frontend/build.mjs``), so a source checkout needs no manual build step; the bundle is
written to ``tb_layerdyn/plugin/static/`` and never committed.
"""

import os
import shutil
import subprocess

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
FRONTEND = os.path.join(HERE, "frontend")


def build_frontend():
    """Installs the locked npm packages and bundles the frontend into the Python package."""
    if not os.path.exists(os.path.join(FRONTEND, "build.mjs")):
        return
    npm = shutil.which("npm")
    node = shutil.which("node")
    if npm is None or node is None:
        raise RuntimeError(
            "Building tb_layerdyn's frontend needs Node.js 18+ and npm on PATH "
            "(Debian: apt-get install nodejs npm)."
        )
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules")):
        subprocess.check_call([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND)
    subprocess.check_call([node, "build.mjs"], cwd=FRONTEND)


class BuildPyWithFrontend(build_py):
    def run(self):
        build_frontend()
        super().run()


setup(
    name="tb_layerdyn",
    version="0.1.0",
    description="Per-layer training dynamics for PyTorch, with a TensorBoard plugin to see them",
    long_description=open(os.path.join(HERE, "README.md"), encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["tb_layerdyn", "tb_layerdyn.*"]),
    package_data={"tb_layerdyn.plugin": ["static/*"]},
    include_package_data=True,
    install_requires=[
        "torch>=2.2",
        "tensorboard>=2.16",
        "numpy>=1.24",
        "protobuf>=3.20",
        "werkzeug>=2.0",
    ],
    extras_require={
        "test": ["pytest>=7", "playwright>=1.40", "pandas>=2", "pyarrow>=14"],
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
    cmdclass={"build_py": BuildPyWithFrontend},
)
