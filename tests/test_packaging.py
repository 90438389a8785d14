"""The package as a user installs it: ``python -m build`` makes a wheel that carries the built tab,
the wheel installs into a fresh venv with no Node.js on PATH, and the TensorBoard from that venv
serves the tab. Version requirements agree between setup.py, scripts/setup.sh and README."""

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLE = os.path.join(REPO, "tb_layerdyn", "plugin", "static", "index.js")


def _read(*parts):
    with open(os.path.join(REPO, *parts), encoding="utf-8") as f:
        return f.read()


def test_python_version_requirements_agree():
    required = re.search(r'PYTHON_REQUIRES = ">=(\d+\.\d+)"', _read("setup.py")).group(1)
    assert re.search(r"PYTHON_MIN=(\d+\.\d+)", _read("scripts", "setup.sh")).group(1) == required
    assert f"Python {required}+" in _read("scripts", "setup.sh")
    readme = _read("README.md")
    assert f"Python {required}+" in readme
    assert set(re.findall(r"Python (\d+\.\d+)", readme)) == {required}


def _without_node_path():
    """PATH with every directory that holds ``node`` or ``npm`` left out."""
    keep = [
        d for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, tool)) for tool in ("node", "npm", "nodejs"))
    ]
    return os.pathsep.join(keep)


def _checkout_copy(target):
    """The tracked files of this checkout plus its built bundle, as a fresh clone would have them
    after one frontend build."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True
    ).stdout.decode().split("\0")
    for name in filter(None, files):
        source = os.path.join(REPO, name)
        if os.path.isfile(source):
            os.makedirs(os.path.join(target, os.path.dirname(name)), exist_ok=True)
            shutil.copy2(source, os.path.join(target, name))
    static = os.path.join(target, "tb_layerdyn", "plugin", "static")
    shutil.copytree(os.path.dirname(BUNDLE), static)
    # Newer than every source, as after a build (copy2 kept the sources' times).
    now = time.time()
    for name in os.listdir(static):
        os.utime(os.path.join(static, name), (now, now))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    if not os.path.exists(BUNDLE):
        node = shutil.which("node")
        if node is None:
            pytest.fail("the frontend bundle is missing and Node.js is not on PATH to build it")
        subprocess.run([node, "build.mjs"], cwd=os.path.join(REPO, "frontend"), check=True, capture_output=True)
    root = tmp_path_factory.mktemp("package")
    source = root / "source"
    _checkout_copy(str(source))
    env = dict(os.environ, PATH=_without_node_path())
    # No isolation: the build uses this machine's setuptools instead of downloading one.
    done = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(root / "dist"), str(source)],
        env=env, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (wheel,) = (root / "dist").glob("*.whl")
    (sdist,) = (root / "dist").glob("*.tar.gz")
    return root, wheel, sdist


def test_the_wheel_carries_the_built_tab(wheel):
    _, wheel_path, _ = wheel
    with zipfile.ZipFile(wheel_path) as archive:
        names = set(archive.namelist())
        assert {"tb_layerdyn/plugin/static/index.js", "tb_layerdyn/plugin/static/index.css"} <= names
        built = archive.read("tb_layerdyn/plugin/static/index.js")
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert b"layer_dynamics = tb_layerdyn.plugin.loader:LayerDynamicsLoader" in archive.read(entry_points)
    with open(BUNDLE, "rb") as f:
        assert built == f.read()
    assert not any(n.startswith("frontend/") for n in names)


def test_the_wheel_installs_and_serves_the_tab_without_node(wheel, tmp_path):
    root, wheel_path, _ = wheel
    venv = root / "venv"
    # The venv sees this machine's torch and tensorboard; the package itself comes from the wheel.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = dict(os.environ, PATH=os.pathsep.join([str(venv / "bin"), _without_node_path()]))
    env.pop("PYTHONPATH", None)
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel_path)],
        env=env, check=True, capture_output=True, cwd=str(tmp_path),
    )
    where = subprocess.run(
        [python, "-c", "import tb_layerdyn; print(tb_layerdyn.__file__)"],
        env=env, check=True, capture_output=True, text=True, cwd=str(tmp_path),
    ).stdout.strip()
    assert where.startswith(str(venv))
    logdir = tmp_path / "logs"
    logdir.mkdir()
    port = _free_port()
    log = open(tmp_path / "tensorboard.log", "w+")
    process = subprocess.Popen(
        [python, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/layer_dynamics/index.js"
                with urllib.request.urlopen(url, timeout=5) as response:
                    assert response.headers["Content-Type"].startswith("text/javascript")
                    body = response.read()
                break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        log.seek(0)
        assert body is not None, log.read()
        with open(BUNDLE, "rb") as f:
            assert body == f.read()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
