"""End to end: the Layer Dynamics tab in a real TensorBoard, opened in headless Chromium.

Two short training runs are logged with the project's own API, a real ``tensorboard`` process
serves them, and Debian's Chromium (driven by Playwright, never a downloaded browser) opens the tab.
The test checks what a user would see: every panel drew data, switching metrics and runs redraws,
a run name full of markup stays text, a failed request shows the server's message, and the console
stays clean. Both runs log pictures too: the filmstrip must draw them pixel for pixel as
``tb_layerdyn.read`` draws them, change them while playing and with the scale, and never fetch a
frame twice.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND = os.path.join(REPO, "frontend")
BUNDLE = os.path.join(REPO, "tb_layerdyn", "plugin", "static", "index.js")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
IFRAME = "iframe[src*='plugin_entry.html?name=layer_dynamics']"

# A run name made of markup: shown as text it is harmless; parsed as HTML it would add an <img>
# whose failed load shows up in the console.
HOSTILE_RUN = "mlp <img src=x onerror=alert(1)>"
LENET_RUN = "lenet/seed0"
LENET_LAYERS = ["conv1", "conv2", "fc1", "fc2", "fc3"]
LENET_GROUPS = {"early": ["conv1", "conv2"], "late": ["fc2", "fc3"]}
STEPS = 30
# LeNet is swept twice, so the panel can compare steps; the MLP once, at its last step.
LENET_SWEEP_STEPS = (14, STEPS - 1)
SWEEP_SCOPES = ("model", "layers", "parameters")
PARAMS_PER_LAYER = 2
# Pictures at steps 0, 3, .., 27: ten frames per kind.
PICTURES_EVERY = 3
PICTURE_STEPS = list(range(0, STEPS, PICTURES_EVERY))

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)",
)

# Per canvas: pixels in colour (charts draw data in saturated colours, axes and grids in greys),
# distinct colours, and a hash of all pixels to tell whether a redraw changed anything.
CANVAS_STATS_JS = """
(selector) => [...document.querySelectorAll(selector)].map((canvas) => {
  // Read a copy, so the page's own canvases are never flagged for frequent read-back.
  const copy = document.createElement('canvas');
  copy.width = canvas.width;
  copy.height = canvas.height;
  const ctx = copy.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(canvas, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  let hash = 2166136261;
  const distinct = new Set();
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2], a = data[i + 3];
    if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    distinct.add((r << 16) | (g << 8) | b);
    hash = Math.imul(hash ^ (r + 3 * g + 7 * b + 11 * a), 16777619) >>> 0;
  }
  return {coloured, distinct: distinct.size, hash};
})
"""


def _sources_newer_than(path):
    built = os.path.getmtime(path)
    for folder, _dirs, files in os.walk(os.path.join(FRONTEND, "src")):
        for name in files:
            if os.path.getmtime(os.path.join(folder, name)) > built:
                return True
    return os.path.getmtime(os.path.join(FRONTEND, "build.mjs")) > built


@pytest.fixture(scope="module")
def bundle():
    """The frontend bundle, rebuilt when missing or older than its sources."""
    if os.path.exists(BUNDLE) and not _sources_newer_than(BUNDLE):
        return BUNDLE
    node = shutil.which("node")
    if node is None:
        pytest.fail("the frontend bundle is missing or stale and Node.js is not on PATH to build it")
    if not os.path.isdir(os.path.join(FRONTEND, "node_modules")):
        subprocess.run(
            [shutil.which("npm") or "npm", "ci", "--no-audit", "--no-fund"],
            cwd=FRONTEND, check=True, capture_output=True,
        )
    subprocess.run([node, "build.mjs"], cwd=FRONTEND, check=True, capture_output=True)
    return BUNDLE


def _train(model, inputs, targets, writer_dir, lr, sweep_at=(), **options):
    """Trains ``model`` for ``STEPS`` steps, logging layer dynamics at each step and an
    interpolation sweep of every scope (robustness included) at each step in ``sweep_at``."""
    import copy

    import torch
    from torch.utils.tensorboard import SummaryWriter

    from tb_layerdyn import interpolation_sweep, log_interpolation_sweep, log_layer_dynamics
    from tb_layerdyn.sweeps import make_eval_fn

    start = copy.deepcopy(model.state_dict())
    eval_fn = make_eval_fn(torch.nn.functional.cross_entropy, [(inputs, targets)])
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    with SummaryWriter(writer_dir) as writer:
        for step in range(STEPS):
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            log_layer_dynamics(writer, model, step, **options)
            if step in sweep_at:
                result = interpolation_sweep(
                    model, eval_fn, start, scope=SWEEP_SCOPES, params_per_layer=PARAMS_PER_LAYER,
                    robustness=True,
                )
                log_interpolation_sweep(writer, result, step)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Two runs logged by the project's API: LeNet-5 with groups, and an MLP with a hostile name;
    each with interpolation sweeps of every scope and pictures every few steps (LeNet-5's with a
    probe, so with activations)."""
    import torch

    from demo import models

    root = tmp_path_factory.mktemp("browser_logdir")
    # Models this small on a shared two-core machine: one intra-op thread, because OpenMP's
    # synchronisation costs far more than the work when the other core is busy (a LeNet sweep of
    # every scope took 0.07 s on one thread and 3.4 s on two, side by side under load).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        images = torch.randn(32, 1, 32, 32)
        labels = torch.randint(0, 10, (32,))
        _train(
            models.lenet5(),
            images,
            labels,
            str(root / LENET_RUN),
            lr=0.05,
            sweep_at=LENET_SWEEP_STEPS,
            groups=LENET_GROUPS,
            images_every=PICTURES_EVERY,
            probe=images[:1],
        )
        torch.manual_seed(1)
        _train(
            models.mlp(in_features=64, hidden=(48, 32, 24)),
            torch.randn(32, 64),
            labels,
            str(root / HOSTILE_RUN),
            lr=0.01,
            sweep_at=(STEPS - 1,),
            images_every=PICTURES_EVERY,
        )
    finally:
        torch.set_num_threads(threads)
    return root


# Three seeds of one small MLP: a seed group whose min-to-max and ± sd bands differ.
SEED_RUNS = ("mlp/seed0", "mlp/seed1", "mlp/seed2")


@pytest.fixture(scope="module")
def seeds_logdir(tmp_path_factory):
    """Three seeds of an MLP trained with a learning rate that decays, so that its layers settle."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from demo import models
    from tb_layerdyn import log_layer_dynamics

    root = tmp_path_factory.mktemp("seeds_logdir")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed, run in enumerate(SEED_RUNS):
            torch.manual_seed(seed)
            model = models.mlp(in_features=16, hidden=(12, 10, 8), num_classes=4)
            inputs, targets = torch.randn(64, 16), torch.randint(0, 4, (64,))
            optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
            schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.8 + 0.04 * seed)
            with SummaryWriter(str(root / run)) as writer:
                for step in range(STEPS):
                    loss = torch.nn.functional.cross_entropy(model(inputs), targets)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    log_layer_dynamics(writer, model, step)
    finally:
        torch.set_num_threads(threads)
    return root


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode("utf-8")


@pytest.fixture(scope="module")
def tensorboard(bundle, logdir, tmp_path_factory):
    """A real ``tensorboard`` process serving the logdir; yields its base URL."""
    yield from _serve(logdir, tmp_path_factory, (LENET_RUN, "onerror"))


@pytest.fixture(scope="module")
def seeds_tensorboard(bundle, seeds_logdir, tmp_path_factory):
    """A real ``tensorboard`` process serving ``seeds_logdir``; yields its base URL."""
    yield from _serve(seeds_logdir, tmp_path_factory, SEED_RUNS)


def _serve(logdir, tmp_path_factory, expected):
    """Runs ``tensorboard`` on ``logdir`` until its runs route lists every string of ``expected``;
    yields its base URL, then stops it."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("tensorboard") / "tensorboard.log", "w+")
    # Started outside the repository so a stale egg-info there cannot shadow the installed one; the
    # package itself is this checkout's, whatever checkout the editable install points at.
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=str(logdir), stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 45
    runs = ""
    while time.monotonic() < deadline and process.poll() is None:
        try:
            runs = _get(base + "/data/plugin/layer_dynamics/runs")
            if all(text in runs for text in expected):
                break
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    else:
        process.terminate()
        log.seek(0)
        pytest.fail(f"TensorBoard did not serve {expected} (last answer {runs!r}):\n{log.read()}")
    yield base
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _canvas_stats(frame, selector):
    return frame.evaluate(CANVAS_STATS_JS, selector)


def _wait_for_redraw(frame, selector, before, timeout=10):
    """Waits until the canvases under ``selector`` differ from ``before``; returns the new stats."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame.wait_for_timeout(100)
        stats = _canvas_stats(frame, selector)
        if stats and [s["hash"] for s in stats] != [s["hash"] for s in before]:
            return stats
    pytest.fail(f"{selector} did not redraw within {timeout} s")


def _texts(frame, selector):
    return frame.eval_on_selector_all(selector, "nodes => nodes.map(n => n.textContent)")


CURVES = "[data-panel=layer-curves] .u-wrap canvas"
GROUPS = "[data-panel=group-curves] .u-wrap canvas"
HEATMAP = "[data-panel=heatmap] canvas.ld-heatmap-canvas"
SWEEPS = "[data-panel=sweeps]"
SWEEP_MODEL = f"{SWEEPS} [data-scope=model] .u-wrap canvas"
SWEEP_PARAMETERS = f"{SWEEPS} [data-scope=parameters] .u-wrap canvas"


def _route(base, route, **query):
    return json.loads(_get(f"{base}/data/plugin/layer_dynamics/{route}?{urllib.parse.urlencode(query)}"))


def _number(text):
    """A number as the tab prints it (a true minus sign, an explicit plus)."""
    return float(text.replace("\u2212", "-"))


def _robustness_rows(frame, run):
    """``[layer, label, first change cell]`` per row of a run's robustness table."""
    return frame.eval_on_selector_all(
        f"{SWEEPS} table[data-run='{run}'] tbody tr",
        "rows => rows.map(r => [r.dataset.layer, r.querySelector('[data-label]').dataset.label,"
        " r.querySelector('td').textContent])",
    )


def _check_sweeps(page, frame, base):
    """The sweeps panel drew each run's latest sweep of every scope as the routes serve it, and
    its step, metric and threshold controls redraw or re-query."""
    last = STEPS - 1
    frame.wait_for_selector(f"{SWEEPS} .ld-sweep-table tbody tr", timeout=20000)
    latest = [f"{LENET_RUN} @ step {last}", f"{HOSTILE_RUN} @ step {last}"]

    # Whole model: a chart per metric (loss, accuracy), a line per run.
    model = _canvas_stats(frame, SWEEP_MODEL)
    assert len(model) == 2 and all(c["coloured"] > 300 for c in model)
    assert _texts(frame, f"{SWEEPS} [data-scope=model] [data-legend=runs] .ld-legend-entry") == latest

    # Layers: a chart per metric, layers coloured by depth and named in the legend.
    layers = _canvas_stats(frame, f"{SWEEPS} [data-scope=layers] .u-wrap canvas")
    assert len(layers) == 2 and all(c["coloured"] > 300 and c["distinct"] > 10 for c in layers)
    depth = _texts(frame, f"{SWEEPS} [data-scope=layers] [data-legend=depth] .ld-legend-entry")
    assert depth[: len(LENET_LAYERS)] == LENET_LAYERS

    # Parameters: a small multiple per swept scalar, each drawn and labelled with its travel.
    swept = {
        run: _route(base, "sweep", run=run, step=last, scope="parameters")
        for run in (LENET_RUN, HOSTILE_RUN)
    }
    names = frame.eval_on_selector_all(
        f"{SWEEPS} [data-scope=parameters] [data-curve]", "nodes => nodes.map(n => n.dataset.curve)"
    )
    assert names == swept[LENET_RUN]["curves"] + swept[HOSTILE_RUN]["curves"]
    assert len(names) == PARAMS_PER_LAYER * (len(LENET_LAYERS) + 4)
    multiples = _canvas_stats(frame, SWEEP_PARAMETERS)
    assert len(multiples) == len(names) and all(c["coloured"] > 50 for c in multiples)
    for run, body in swept.items():
        for curve, travel in zip(body["curves"], body["travel"]):
            shown = _texts(frame, f"{SWEEPS} [data-travel='{curve}'] > span > span:last-child")
            label, value = shown[0].rsplit(": ", 1)
            assert label == f"{run} @ step {last}"
            assert _number(value) == pytest.approx(travel, rel=5e-3, abs=1e-12)

    # Robustness: per run a row per layer in depth order, its change and label as served.
    for run in (LENET_RUN, HOSTILE_RUN):
        table = _route(base, "sweep", run=run, step=last, scope="robustness")
        rows = _robustness_rows(frame, run)
        assert [r[:2] for r in rows] == [list(p) for p in zip(table["layers"], table["labels"])]
        end = table["end"][table["metrics"][0]]
        for (_, _, cell), value in zip(rows, table["reinitialized"][table["metrics"][0]]):
            assert _number(cell) == pytest.approx(value - end, rel=5e-3, abs=1e-9)
    assert [r[0] for r in _robustness_rows(frame, LENET_RUN)] == LENET_LAYERS

    # The threshold re-queries the server, which relabels: no change of accuracy exceeds 1.
    with page.expect_request(lambda r: "scope=robustness" in r.url and "threshold=1" in r.url):
        frame.fill(f"{SWEEPS} [data-control=sweep-threshold]", "1")
    frame.wait_for_function(
        "() => [...document.querySelectorAll('.ld-sweep-table [data-label]')]"
        ".every((n) => n.dataset.label === 'ambient')"
    )
    relabelled = _route(base, "sweep", run=LENET_RUN, step=last, scope="robustness", threshold=0)
    frame.fill(f"{SWEEPS} [data-control=sweep-threshold]", "0")
    frame.wait_for_function(
        "([run, labels]) => JSON.stringify([...document.querySelectorAll('.ld-sweep-table')]"
        ".filter((t) => t.dataset.run === run).flatMap((t) => [...t.querySelectorAll('[data-label]')])"
        ".map((n) => n.dataset.label)) === JSON.stringify(labels)",
        arg=[LENET_RUN, relabelled["labels"]],
    )
    frame.fill(f"{SWEEPS} [data-control=sweep-threshold]", "-1")
    message = frame.wait_for_selector(f"{SWEEPS} .ld-sweep-message:not(:empty)")
    assert "-1" in message.text_content() and "Threshold" in message.text_content()
    frame.fill(f"{SWEEPS} [data-control=sweep-threshold]", "")

    # Every step: LeNet's two sweeps and the MLP's one overlaid; one step: only the runs that
    # took a sweep there, and a note for the other.
    frame.select_option(f"{SWEEPS} [data-control=sweep-step]", "every")
    _wait_for_redraw(frame, SWEEP_MODEL, model)
    assert _texts(frame, f"{SWEEPS} [data-scope=model] [data-legend=runs] .ld-legend-entry") == [
        f"{LENET_RUN} @ step {last}", f"{LENET_RUN} @ step {LENET_SWEEP_STEPS[0]}", latest[1],
    ]
    frame.select_option(f"{SWEEPS} [data-control=sweep-step]", str(LENET_SWEEP_STEPS[0]))
    frame.wait_for_function(
        "(step) => document.querySelectorAll('.ld-sweep-table').length === 1"
        " && document.querySelector('.ld-sweep-table').dataset.step === step",
        arg=str(LENET_SWEEP_STEPS[0]),
    )
    notes = _texts(frame, f"{SWEEPS} .ld-state-empty")
    assert any(
        HOSTILE_RUN in note and f"no sweep at step {LENET_SWEEP_STEPS[0]}" in note for note in notes
    )

    # Another metric for the parameter multiples redraws them.
    multiples = _canvas_stats(frame, SWEEP_PARAMETERS)
    frame.select_option(f"{SWEEPS} [data-control=sweep-metric]", "accuracy")
    _wait_for_redraw(frame, SWEEP_PARAMETERS, multiples)
    frame.select_option(f"{SWEEPS} [data-control=sweep-step]", "latest")
    frame.wait_for_function("() => document.querySelectorAll('.ld-sweep-table').length === 2")


def _settling_reference(steps, values, fraction):
    """The settling step by brute force: the first step with a value below ``fraction`` of the
    peak from which every later value is below it too; ``None`` when there is none."""
    finite = [v for v in values if isinstance(v, (int, float)) and v == v and abs(v) != float("inf")]
    threshold = fraction * max(finite)
    for i, v in enumerate(values):
        if v in finite and all(w not in finite or w < threshold for w in values[i:]):
            return steps[i]
    return None


def _check_averaged_and_settling(frame, base, overlaid):
    """Runs averaged over seeds draw a chart per seed group (LeNet's seed cut from its name), and
    the settling table lists each run's layers in depth order with the steps the rule gives."""
    settling = "[data-panel=settling] tbody tr"
    frame.wait_for_selector(settling, timeout=10000)
    rows = frame.eval_on_selector_all(settling, "rows => rows.map(r => r.dataset.layer)")
    mlp_layers = next(r for r in _route(base, "runs")["runs"] if r["run"] == HOSTILE_RUN)["layers"]
    assert rows == LENET_LAYERS + mlp_layers
    # LeNet's runs and the MLP have tables of their own: no cell stands for a layer a run lacks.
    tables = frame.eval_on_selector_all(
        "[data-panel=settling] table",
        "tables => tables.map(t => [t.dataset.set, t.querySelectorAll('thead th[data-column]').length])",
    )
    assert tables == [["0", 1], ["1", 1]]
    assert "—" not in _texts(frame, f"{settling} td")
    series = _route(base, "series", run=LENET_RUN, metric="rwc", target="layers", max_points=2000)
    cells = frame.eval_on_selector_all(
        "[data-panel=settling] table[data-set='0'] tbody tr td:nth-of-type(1) [data-state]",
        "cells => cells.map(c => c.dataset.step ? Number(c.dataset.step) : c.dataset.state)",
    )
    assert len(cells) == len(LENET_LAYERS)
    for name, column, cell in zip(series["names"], series["columns"][1:], cells):
        expected = _settling_reference(series["columns"][0], column, 0.1)
        assert cell == (expected if expected is not None else "not yet"), name

    frame.select_option("[data-control=layout]", "averaged")
    drawn = _wait_for_redraw(frame, CURVES, overlaid)
    assert len(drawn) == 2 and all(c["coloured"] > 300 for c in drawn)
    groups = frame.eval_on_selector_all(
        "[data-panel=layer-curves] [data-seed-group]", "nodes => nodes.map(n => n.dataset.seedGroup)"
    )
    assert groups == [LENET_RUN.split("/")[0], HOSTILE_RUN]
    assert _texts(frame, "[data-panel=layer-curves] [data-legend=spread]")
    assert _canvas_stats(frame, GROUPS)[0]["coloured"] > 100
    frame.wait_for_function(
        "() => document.querySelector('[data-panel=settling] thead th[data-column]')?.dataset.column === 'lenet'"
    )
    frame.select_option("[data-control=layout]", "overlay")
    frame.wait_for_selector("[data-panel=layer-curves] [data-legend=runs]")


def _decode_series(raw):
    """The binary ``series`` answer as (header, steps, values per series) (see http_api.md)."""
    import numpy as np

    (length,) = np.frombuffer(raw[:4], dtype="<u4")
    header = json.loads(raw[4 : 4 + length])
    points = header["points"]
    steps = np.frombuffer(raw, dtype="<f8", count=points, offset=4 + length)
    values = np.frombuffer(raw, dtype="<f4", offset=4 + length + 8 * points)
    return header, steps, values.reshape(len(header["names"]), points)


def _check_zoom(page, frame, box, curves):
    def zoomed(response):
        return "/series?" in response.url and "start=" in response.url and "end=" in response.url

    left, right = box["x"] + box["width"] * 0.25, box["x"] + box["width"] * 0.75
    middle = box["y"] + box["height"] * 0.5
    with page.expect_response(zoomed) as first:
        page.mouse.move(left, middle)
        page.mouse.down()
        page.mouse.move(right, middle, steps=8)
        page.mouse.up()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(first.value.url).query)
    start, end = int(query["start"][0]), int(query["end"][0])
    assert 0 < start < end < STEPS - 1
    assert int(query["max_points"][0]) >= 2 * int(box["width"]) - 2
    header, steps, _ = _decode_series(first.value.body())
    assert header["downsampled"] is False
    assert steps.tolist() == list(range(start, end + 1))
    zoomed_view = _wait_for_redraw(frame, CURVES, curves)
    frame.dblclick("[data-panel=layer-curves] .u-over")
    _wait_for_redraw(frame, CURVES, zoomed_view)


def test_layer_dynamics_tab(tensorboard, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []

    def on_console(message):
        # TensorBoard's own page warns about its bundled libraries; only the tab is ours to judge,
        # but an error from anywhere counts.
        ours = "layer_dynamics" in message.location.get("url", "")
        if message.type == "error" or (message.type == "warning" and ours):
            problems.append(f"{message.type}: {message.text} ({message.location})")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    page.goto(tensorboard + "/#layer_dynamics", wait_until="networkidle")
    frame = page.wait_for_selector(IFRAME, timeout=20000).content_frame()
    frame.wait_for_selector(CURVES, timeout=20000)
    frame.wait_for_selector(HEATMAP, timeout=20000)
    frame.wait_for_selector(GROUPS, timeout=20000)
    frame.wait_for_selector("[data-panel=summary] .ld-summary-bar", timeout=20000)

    # Picker: both runs, the hostile name as literal text, and nothing parsed from it.
    run_names = _texts(frame, "[data-list=runs] .ld-run-row")
    assert run_names == [LENET_RUN, HOSTILE_RUN]
    assert frame.query_selector("img") is None
    assert "conv1" in _texts(frame, "[data-list=layers] .ld-layer-row")

    # Per-layer curves: one chart of both runs, lines in colour, a legend entry per layer.
    curves = _canvas_stats(frame, CURVES)
    assert len(curves) == 1 and curves[0]["coloured"] > 500
    legend = _texts(frame, "[data-panel=layer-curves] [data-legend=depth] .ld-legend-entry")
    for layer in LENET_LAYERS:
        assert layer in legend
    assert _texts(frame, "[data-panel=layer-curves] [data-legend=runs] .ld-legend-entry") == [
        LENET_RUN, HOSTILE_RUN,
    ]

    # Hovering the plot names a layer, a step and a value.
    box = frame.query_selector("[data-panel=layer-curves] .u-over").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
    tooltip = frame.wait_for_selector("[data-panel=layer-curves] .ld-tooltip:not([hidden])")
    runs = json.loads(_get(tensorboard + "/data/plugin/layer_dynamics/runs"))["runs"]
    labels = {f"{layer} · {r['run']}" for r in runs for layer in r["layers"]}
    assert tooltip.query_selector("strong").text_content() in labels
    assert re.fullmatch(r"step \d+ · \S+", tooltip.query_selector("span").text_content())

    # Dragging over the curves zooms, and the zoomed range is fetched again, exactly: here the
    # middle half of the run, at two points per pixel. A double-click zooms out to the whole run.
    _check_zoom(page, frame, box, curves)

    # Heatmap: one canvas per run, many colours, a row label per LeNet layer.
    heatmaps = _canvas_stats(frame, HEATMAP)
    assert len(heatmaps) == 2
    assert all(h["coloured"] > 500 and h["distinct"] > 10 for h in heatmaps)
    lenet_rows = _texts(frame, f"[data-panel=heatmap] [data-run='{LENET_RUN}'] .ld-heatmap-label")
    assert lenet_rows == LENET_LAYERS
    # Every row labelled; the MLP's bare Sequential indices say which module they are.
    mlp = next(r for r in runs if r["run"] == HOSTILE_RUN)
    assert mlp["descriptions"] == ["Linear 64→48", "Linear 48→32", "Linear 32→24", "Linear 24→10"]
    mlp_rows = _texts(frame, f"[data-panel=heatmap] [data-run='{HOSTILE_RUN}'] .ld-heatmap-label")
    assert mlp_rows == [f"{n} · {d}" for n, d in zip(mlp["layers"], mlp["descriptions"])]
    assert "1 · Linear 64→48" in _texts(frame, "[data-list=layers] .ld-layer-row")
    # The two models have different layers: a depth legend each, named by its runs.
    captions = _texts(frame, "[data-panel=layer-curves] [data-legend=depth] .ld-legend-runs")
    assert captions == [LENET_RUN, HOSTILE_RUN]
    assert _texts(frame, "[data-legend=colour-scale] .ld-heatmap-axis span")

    # Summary: a row per layer in depth order, a bar per metric from the run that has the layer
    # (the two models share no layer name), some of them long.
    rows = frame.eval_on_selector_all(
        "[data-panel=summary] [aria-label=Layer] .ld-summary-row[data-name]",
        "rows => rows.map(r => r.dataset.name)",
    )
    assert rows[: len(LENET_LAYERS)] == LENET_LAYERS
    widths = frame.eval_on_selector_all(
        "[data-panel=summary] [aria-label=Layer] .ld-summary-bar",
        "bars => bars.map(b => b.getBoundingClientRect().width)",
    )
    assert len(widths) == len(rows) * 3
    assert max(widths) > 50

    # Groups: LeNet's groups drawn and named.
    assert _canvas_stats(frame, GROUPS)[0]["coloured"] > 100
    group_legend = _texts(frame, "[data-panel=group-curves] [data-legend=depth] .ld-legend-entry")
    assert set(group_legend) >= set(LENET_GROUPS)
    # The MLP has no groups: one line says so, its hostile name as plain text.
    notes = _texts(frame, "[data-panel=group-curves] .ld-state-empty")
    assert notes == [f"Run {HOSTILE_RUN} has no groups to show."]

    # Interpolation sweeps: every scope drawn as the routes serve it; nothing parsed from names.
    _check_sweeps(page, frame, tensorboard)
    assert frame.query_selector("img") is None

    _check_averaged_and_settling(frame, tensorboard, curves)

    # Another metric redraws the curves and the heatmap.
    frame.select_option("[data-control=metric]", "distance_from_init")
    _wait_for_redraw(frame, CURVES, curves)
    _wait_for_redraw(frame, HEATMAP, heatmaps)

    # Dropping a run redraws with the other one only.
    curves = _canvas_stats(frame, CURVES)
    frame.click(f"[data-list=runs] [data-run='{HOSTILE_RUN}'] input")
    _wait_for_redraw(frame, CURVES, curves)
    frame.wait_for_function("document.querySelectorAll('canvas.ld-heatmap-canvas').length === 1")

    assert problems == []

    # A request the server refuses: its message reaches the panel. The request is sent for real,
    # with its metric misspelt on the way, so the message is the server's own.
    page.route(
        "**/data/plugin/layer_dynamics/series?*",
        lambda route: route.continue_(url=route.request.url.replace("metric=", "metric=no_such_")),
    )
    frame.select_option("[data-control=metric]", "update_size")
    error = frame.wait_for_selector("[data-panel=layer-curves] .ld-state-error", timeout=10000)
    query = urllib.parse.urlencode({"run": LENET_RUN, "metric": "no_such_update_size"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{tensorboard}/data/plugin/layer_dynamics/series?{query}")
    expected = refused.value.read().decode("utf-8").strip()
    assert expected and expected in error.text_content()
    assert str(refused.value.code) in error.text_content()
    page.close()


def test_seed_bands_and_the_settling_correlation(seeds_tensorboard, seeds_logdir, browser):
    """Averaged over seeds, the band toggle redraws the spread; the settling panel's rank
    correlation, per run and per seed group, is the reader's."""
    import tb_layerdyn

    runs = tb_layerdyn.read(str(seeds_logdir), metrics=["rwc"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(seeds_tensorboard + "/#layer_dynamics", wait_until="networkidle")
    frame = page.wait_for_selector(IFRAME, timeout=20000).content_frame()
    correlation = "[data-panel=settling] tfoot td"
    frame.wait_for_selector(correlation, timeout=20000)

    # One column per run, each with the run's own rho as the reader computes it.
    cells = frame.eval_on_selector_all(
        correlation, "cells => cells.map(c => [c.dataset.column, c.dataset.correlation ?? null])"
    )
    assert [c[0] for c in cells] == list(SEED_RUNS)
    for run, shown in cells:
        expected = runs[run].settling().correlation
        assert expected == expected, f"{run}: the reader's correlation is undefined"
        assert float(shown) == pytest.approx(expected, abs=1e-9), run

    # Averaged: one group, its mean rho over the seeds and the spread the reader gives.
    frame.select_option("[data-control=layout]", "averaged")
    frame.wait_for_function(
        "() => document.querySelector('[data-panel=settling] tfoot td')?.dataset.column === 'mlp'"
    )
    group = runs.settling()["mlp"].correlation
    shown = frame.eval_on_selector(correlation, "c => ({...c.dataset, text: c.textContent})")
    for key, value in (("correlation", group.mean), ("sd", group.std), ("low", group.low), ("high", group.high)):
        assert float(shown[key]) == pytest.approx(value, abs=1e-9), key
    assert shown["count"] == "3" and "3 of 3 runs" in shown["text"]

    # The band: min to max, then mean +- one sd (other pixels, said in the legend), then back.
    frame.wait_for_selector("[data-panel=layer-curves] [data-legend=spread][data-band=minmax]")
    frame.wait_for_selector(CURVES)
    minmax = _canvas_stats(frame, CURVES)
    assert len(minmax) == 1 and minmax[0]["coloured"] > 300
    frame.select_option("[data-control=band]", "std")
    frame.wait_for_selector("[data-panel=layer-curves] [data-legend=spread][data-band=std]")
    _wait_for_redraw(frame, CURVES, minmax)
    frame.select_option("[data-control=band]", "minmax")
    deadline = time.monotonic() + 10
    while _canvas_stats(frame, CURVES) != minmax:
        assert time.monotonic() < deadline, "the min-to-max band did not come back as it was"
        frame.wait_for_timeout(100)


# ---------------------------------------------------------------- the filmstrip

FILMSTRIP = "[data-panel=filmstrip]"
# Every canvas of a strip as its backing store holds it (one canvas pixel per picture pixel), row
# by row, RGB; ``null`` for a canvas that is hidden (no picture at that step).
STRIP_PIXELS_JS = """
(selector) => [...document.querySelectorAll(selector + ' figure[data-layer]')].map((figure) => {
  const canvas = figure.querySelector('canvas');
  if (canvas.hidden) return [figure.dataset.layer, null];
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const rgb = [];
  for (let i = 0; i < data.length; i += 4) rgb.push(data[i], data[i + 1], data[i + 2]);
  return [figure.dataset.layer, [canvas.height, canvas.width, rgb]];
})
"""


def _strip(run):
    return f"{FILMSTRIP} [data-run='{run}']"


def _strip_pixels(frame, run):
    """``{layer: uint8 (H, W, 3) or None}`` as the strip of ``run`` draws it now."""
    import numpy as np

    found = {}
    for layer, drawn in frame.evaluate(STRIP_PIXELS_JS, _strip(run)):
        found[layer] = None if drawn is None else np.array(drawn[2], dtype=np.uint8).reshape(drawn[0], drawn[1], 3)
    return found


def _shown_step(frame, run):
    return frame.eval_on_selector(_strip(run), "s => s.dataset.step")


def _wait_for_step(frame, run, step, timeout=10000):
    frame.wait_for_function(
        "([selector, step]) => document.querySelector(selector)?.dataset.step === step"
        " && !document.querySelector(selector).hasAttribute('aria-busy')",
        arg=[_strip(run), str(step)], timeout=timeout,
    )


def _assert_drawn_as_read(frame, run, images, kind, step, per_frame=False):
    """Every layer's canvas in the strip of ``run`` holds the pixels ``read()`` draws."""
    import numpy as np

    drawn = _strip_pixels(frame, run)
    assert list(drawn) == list(images[kind]), (run, kind)
    for layer, series in images[kind].items():
        i = series.steps.tolist().index(step)
        expected = series.rgb(i, per_frame=per_frame)
        assert drawn[layer] is not None, (run, kind, layer)
        np.testing.assert_array_equal(drawn[layer], expected, err_msg=f"{run} {kind} {layer} step {step}")


def test_filmstrip(tensorboard, browser, logdir):
    import numpy as np

    import tb_layerdyn

    runs = tb_layerdyn.read(str(logdir))
    lenet, mlp = runs[LENET_RUN].images, runs[HOSTILE_RUN].images
    assert lenet["weights"]["conv1"].steps.tolist() == PICTURE_STEPS

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems, frames_fetched = [], []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("request", lambda r: frames_fetched.append(r.url) if "/layer_dynamics/frame?" in r.url else None)
    page.goto(tensorboard + "/#layer_dynamics", wait_until="networkidle")
    frame = page.wait_for_selector(IFRAME, timeout=20000).content_frame()
    frame.wait_for_selector(f"{_strip(LENET_RUN)} canvas.ld-film-canvas:not([hidden])", timeout=20000)
    frame.query_selector(FILMSTRIP).scroll_into_view_if_needed()

    # Both runs logged pictures, the hostile name as text; LeNet's five kinds, weights first.
    options = "select => [...select.options].map(o => o.value)"
    assert frame.eval_on_selector(f"{FILMSTRIP} [data-control=filmstrip-run]", options) == [LENET_RUN, HOSTILE_RUN]
    assert frame.eval_on_selector(f"{FILMSTRIP} [data-control=filmstrip-kind]", options) == [
        "weights", "gradients", "updates", "travel", "activations"]

    # Every layer side by side in depth order, at the first step, as read() draws it (fixed scale).
    _wait_for_step(frame, LENET_RUN, 0)
    _assert_drawn_as_read(frame, LENET_RUN, lenet, "weights", 0)
    first = _strip_pixels(frame, LENET_RUN)
    assert all(np.ptp(picture.reshape(-1, 3), axis=0).max() > 60 for picture in first.values())  # coloured

    # Playing changes the frame; pausing keeps it, drawn as read() draws that step.
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-speed]", "20")
    frame.click(f"{FILMSTRIP} [data-control=filmstrip-play]")
    frame.wait_for_function(
        "(selector) => Number(document.querySelector(selector).dataset.step) >= 9", arg=_strip(LENET_RUN))
    frame.click(f"{FILMSTRIP} [data-control=filmstrip-play]")
    step = int(_shown_step(frame, LENET_RUN))
    _wait_for_step(frame, LENET_RUN, step)
    playing = _strip_pixels(frame, LENET_RUN)
    assert any(not np.array_equal(playing[layer], first[layer]) for layer in first)
    _assert_drawn_as_read(frame, LENET_RUN, lenet, "weights", step)

    # Gradients at one step: the scale toggle changes the pixels, to the frame's own scale.
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-kind]", "gradients")
    frame.fill(f"{FILMSTRIP} [data-control=filmstrip-step]", "2")
    _wait_for_step(frame, LENET_RUN, PICTURE_STEPS[2])
    _assert_drawn_as_read(frame, LENET_RUN, lenet, "gradients", PICTURE_STEPS[2])
    fixed = _strip_pixels(frame, LENET_RUN)
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-scale]", "frame")
    _assert_drawn_as_read(frame, LENET_RUN, lenet, "gradients", PICTURE_STEPS[2], per_frame=True)
    assert any(not np.array_equal(fixed[layer], picture) for layer, picture in _strip_pixels(frame, LENET_RUN).items())

    # The MLP beside it, at the same step; updates start at the second picture step.
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-beside]", HOSTILE_RUN)
    _wait_for_step(frame, HOSTILE_RUN, PICTURE_STEPS[2])
    _assert_drawn_as_read(frame, HOSTILE_RUN, mlp, "gradients", PICTURE_STEPS[2], per_frame=True)
    assert frame.query_selector("img") is None
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-scale]", "fixed")
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-kind]", "updates")
    frame.fill(f"{FILMSTRIP} [data-control=filmstrip-step]", "0")
    _wait_for_step(frame, LENET_RUN, PICTURE_STEPS[1])
    _wait_for_step(frame, HOSTILE_RUN, PICTURE_STEPS[1])
    _assert_drawn_as_read(frame, LENET_RUN, lenet, "updates", PICTURE_STEPS[1])
    _assert_drawn_as_read(frame, HOSTILE_RUN, mlp, "updates", PICTURE_STEPS[1])

    # A click enlarges a layer; the readout gives the value logged under the cursor.
    frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-kind]", "weights")
    _wait_for_step(frame, LENET_RUN, PICTURE_STEPS[1])
    frame.click(f"{_strip(LENET_RUN)} [data-layer=fc1]")
    canvas = frame.wait_for_selector(f"{FILMSTRIP} [data-enlarged=fc1] canvas:not([hidden])")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    values = lenet["weights"]["fc1"].values(1)
    row, column = values.shape[0] // 2, values.shape[1] // 3
    page.mouse.move(box["x"] + (column + 0.5) * box["width"] / values.shape[1],
                    box["y"] + (row + 0.5) * box["height"] / values.shape[0])
    readout = frame.wait_for_function(
        "() => document.querySelector('.ld-film-readout').textContent.startsWith('value')").json_value()
    text = frame.text_content(f"{FILMSTRIP} .ld-film-readout")
    match = re.fullmatch(r"value (\S+) · row (\d+), column (\d+) \(tile 0, 0\)", text)
    assert match and readout, text
    assert (int(match.group(2)), int(match.group(3))) == (row, column)
    assert _number(match.group(1)) == pytest.approx(values[row, column], rel=1e-3, abs=1e-12)

    # Two loops through every step at full speed, then back: no frame is fetched twice.
    frame.click(f"{FILMSTRIP} [data-control=filmstrip-play]")
    seen = set()
    deadline = time.monotonic() + 20
    while len(seen) < len(PICTURE_STEPS) and time.monotonic() < deadline:
        seen.add(_shown_step(frame, LENET_RUN))
        frame.wait_for_timeout(20)
    frame.click(f"{FILMSTRIP} [data-control=filmstrip-play]")
    assert len(seen) == len(PICTURE_STEPS)
    for kind in ("gradients", "updates", "weights"):
        frame.select_option(f"{FILMSTRIP} [data-control=filmstrip-kind]", kind)
        frame.fill(f"{FILMSTRIP} [data-control=filmstrip-step]", "3")
        _wait_for_step(frame, LENET_RUN, lenet[kind]["conv1"].steps[3])
    assert frames_fetched and len(frames_fetched) == len(set(frames_fetched)), sorted(frames_fetched)
    assert problems == []
    page.close()


# ---------------------------------------------------------------- a population of runs

POPULATION_MODELS = 300
POPULATION_STEPS = 12
POPULATION_MATRIX = "[data-panel=population] canvas.ld-pop-canvas"
POPULATION_PATHS = "[data-panel=population] [data-figure=trajectories] .u-wrap canvas"
# Rows a virtualized list may hold: what 38% of a 1000-pixel viewport shows, and the overscan.
ROWS_BOUND = 60


@pytest.fixture(scope="module")
def population_logdir(tmp_path_factory):
    """Hundreds of runs of one 3-layer architecture in ten configurations, with weight sketches:
    the benchmark's population (``benchmarks.logdirs.write_population``) at a test's size."""
    from benchmarks import logdirs

    root = tmp_path_factory.mktemp("population_logdir")
    names = logdirs.write_population(str(root), models=POPULATION_MODELS, steps=POPULATION_STEPS)
    return root, names


@pytest.fixture(scope="module")
def population_tensorboard(bundle, population_logdir, tmp_path_factory):
    root, names = population_logdir
    served = _serve(root, tmp_path_factory, (names[-1],))
    base = next(served)
    try:
        # The first pass may still be reading: wait for every run and for the sketches.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            runs = _route(base, "runs")
            pops = _route(base, "sketches")["populations"]
            if not runs["loading"] and len(runs["runs"]) == len(names) and pops and len(pops[0]["runs"]) == len(names):
                break
            time.sleep(0.3)
        else:
            pytest.fail("TensorBoard did not finish reading the population")
        yield base
    finally:
        # Runs the rest of _serve, which stops TensorBoard.
        next(served, None)


# Per colour given, how many pixels of the canvases under a selector have exactly that colour.
COLOUR_COUNTS_JS = """
([selector, colours]) => [...document.querySelectorAll(selector)].map((canvas) => {
  const copy = document.createElement('canvas');
  copy.width = canvas.width;
  copy.height = canvas.height;
  const ctx = copy.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(canvas, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const counts = colours.map(() => 0);
  const index = new Map(colours.map(([r, g, b], k) => [(r << 16) | (g << 8) | b, k]));
  for (let i = 0; i < data.length; i += 4) {
    const k = index.get((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
    if (k !== undefined && data[i + 3] === 255) counts[k]++;
  }
  return counts;
})
"""


def _legend_colours(frame):
    """The depth legend's colours as ``[r, g, b]``, from its chips' ``rgb(...)`` backgrounds."""
    styles = frame.eval_on_selector_all(
        "[data-panel=layer-curves] [data-legend=depth] .ld-chip", "chips => chips.map(c => c.style.background)")
    return [[int(v) for v in re.findall(r"\d+", style)[:3]] for style in styles]


def _check_population_curves(page, frame, runs):
    """Hundreds of runs' curves in one chart: painted pixel by pixel, so every layer's colour is
    there exactly (no blend), and a zoom fetches the range in a few batches and redraws; zooming
    out again draws the very picture it started from."""
    colours = _legend_colours(frame)
    assert len(colours) == 3
    before = _canvas_stats(frame, CURVES)
    counts = frame.evaluate(COLOUR_COUNTS_JS, [CURVES, colours])
    assert len(counts) == 1 and all(n > 300 for n in counts[0]), counts
    assert before[0]["coloured"] > 3000
    box = frame.query_selector("[data-panel=layer-curves] .u-over").bounding_box()
    # Hovering names the line nearest the cursor, its step and value, as with stroked lines.
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    tooltip = frame.wait_for_selector("[data-panel=layer-curves] .ld-tooltip:not([hidden])")
    layer, run = tooltip.query_selector("strong").text_content().split(" · ")
    assert layer in {"fc1", "fc2", "fc3"} and run.startswith("cfg"), (layer, run)
    assert re.fullmatch(r"step \d+ · \S+", tooltip.query_selector("span").text_content())
    zooms = []
    page.on("request", lambda r: zooms.append(r.url) if "start=" in r.url else None)
    with page.expect_response(lambda r: "/series_batch?" in r.url and "start=" in r.url) as first:
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.5)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.5, steps=8)
        page.mouse.up()
    query = urllib.parse.parse_qs(urllib.parse.urlparse(first.value.url).query)
    start, end = int(query["start"][0]), int(query["end"][0])
    assert 0 < start < end < POPULATION_STEPS - 1
    zoomed = _wait_for_redraw(frame, CURVES, before)
    assert all("/series_batch?" in url for url in zooms) and len(zooms) <= -(-runs // 100)
    counts = frame.evaluate(COLOUR_COUNTS_JS, [CURVES, colours])
    assert all(n > 300 for n in counts[0]), counts
    frame.dblclick("[data-panel=layer-curves] .u-over")
    _wait_for_redraw(frame, CURVES, zoomed)
    assert _canvas_stats(frame, CURVES)[0]["hash"] == before[0]["hash"]


def _run_rows(frame):
    return frame.eval_on_selector_all("[data-list=runs] [data-run]", "rows => rows.map(r => r.dataset.run)")


def _scroll_list(frame, top):
    """Scrolls the run list and waits for the frame that renders its rows there."""
    frame.eval_on_selector("[data-list=runs]", "(list, top) => { list.scrollTop = top; }", top)
    frame.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def test_population_tab(population_tensorboard, population_logdir, browser):
    """Hundreds of runs: the run list keeps a bounded number of rows in the DOM while it filters
    and scrolls, keeps ticks and colours, and the population panel draws the distance matrix in
    the server's clustering order and the trajectories, redrawn when the step changes."""
    base = population_tensorboard
    _, names = population_logdir
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems = []
    page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    series_requests = []
    page.on("request", lambda r: series_requests.append(r.url) if "/layer_dynamics/series" in r.url else None)
    page.goto(base + "/#layer_dynamics", wait_until="networkidle")
    frame = page.wait_for_selector(IFRAME, timeout=20000).content_frame()
    frame.wait_for_selector("[data-list=runs] [data-run]", timeout=20000)
    frame.wait_for_function(
        "(n) => document.querySelector('[data-panel=layer-curves] [data-legend=runs]')?.dataset.runs === n",
        arg=str(len(names)), timeout=30000)
    # Every run's curves came in a few batches, not one request a run.
    assert series_requests and all("/series_batch?" in url for url in series_requests)
    assert len(series_requests) <= 2 * -(-len(names) // 100), len(series_requests)
    _check_population_curves(page, frame, len(names))

    # Every run listed, few rendered: the first ones, in the list's order.
    assert frame.text_content("[data-panel=picker] .ld-count") == f"{len(names)} of {len(names)}"
    assert frame.eval_on_selector("[data-list=runs]", "l => l.dataset.count") == str(len(names))
    shown = _run_rows(frame)
    assert 10 <= len(shown) <= ROWS_BOUND
    assert shown == names[: len(shown)]
    height = frame.eval_on_selector("[data-list=runs]", "l => l.scrollHeight")
    assert height >= len(names) * 22

    # A row far down: scrolled to, it is rendered with its colour; the first rows are gone.
    _scroll_list(frame, 150 * 22)
    shown = _run_rows(frame)
    assert names[150] in shown and names[0] not in shown and len(shown) <= ROWS_BOUND
    colour = frame.eval_on_selector(f"[data-list=runs] [data-run='{names[150]}'] .ld-chip", "c => c.style.background")
    _scroll_list(frame, height)
    shown = _run_rows(frame)
    assert shown[-1] == names[-1] and len(shown) <= ROWS_BOUND

    # Unticking the last run: the count says so, and the tick survives scrolling away and back.
    frame.click(f"[data-list=runs] [data-run='{names[-1]}'] input")
    assert frame.text_content("[data-panel=picker] .ld-count") == f"{len(names) - 1} of {len(names)}"
    _scroll_list(frame, 0)
    assert names[-1] not in _run_rows(frame)
    _scroll_list(frame, height)
    assert frame.eval_on_selector(f"[data-list=runs] [data-run='{names[-1]}'] input", "b => b.checked") is False

    # Filtering: only matches listed, from the top, each keeping its colour.
    frame.fill("[data-panel=picker] input[type=search]", "cfg5/seed00")
    frame.wait_for_function("() => document.querySelector('[data-list=runs]').dataset.count === '10'")
    expected = [n for n in names if "cfg5/seed00" in n]
    assert _run_rows(frame) == expected
    assert frame.text_content("[data-panel=picker] .ld-count") == f"10 of {len(names)}"
    assert colour == frame.eval_on_selector(
        f"[data-list=runs] [data-run='{names[150]}'] .ld-chip", "c => c.style.background")
    frame.fill("[data-panel=picker] input[type=search]", "")
    frame.wait_for_function(
        "(n) => document.querySelector('[data-list=runs]').dataset.count === n", arg=str(len(names)))
    assert len(_run_rows(frame)) <= ROWS_BOUND

    # The population panel: the ticked runs' matrix at the last step, and their paths.
    matrix = frame.wait_for_selector(f"{POPULATION_MATRIX}[data-runs='{len(names) - 1}']", timeout=30000)
    frame.query_selector("[data-panel=population]").scroll_into_view_if_needed()
    last = _canvas_stats(frame, POPULATION_MATRIX)
    assert len(last) == 1 and last[0]["coloured"] > 5000 and last[0]["distinct"] > 50
    assert matrix.get_attribute("data-step") == str(POPULATION_STEPS - 1)
    frame.wait_for_selector(POPULATION_PATHS, timeout=30000)
    paths = _canvas_stats(frame, POPULATION_PATHS)
    assert len(paths) == 1 and paths[0]["coloured"] > 1000

    # Hovering a cell names its two runs and the distance the route gives, in clustering order.
    query = urllib.parse.urlencode({"step": POPULATION_STEPS - 1, "run": names[:-1]}, doseq=True)
    answer = json.loads(_get(f"{base}/data/plugin/layer_dynamics/distances?{query}"))
    box = matrix.bounding_box()
    n = len(answer["runs"])
    a, b = int(n * 0.3), int(n * 0.7)
    page.mouse.move(box["x"] + (b + 0.5) * box["width"] / n, box["y"] + (a + 0.5) * box["height"] / n)
    readout = frame.wait_for_selector("[data-readout=matrix][data-row]")
    row, column = answer["runs"][answer["order"][a]], answer["runs"][answer["order"][b]]
    assert (readout.get_attribute("data-row"), readout.get_attribute("data-column")) == (row, column)
    expected_distance = answer["matrix"][answer["order"][a]][answer["order"][b]]
    assert float(readout.get_attribute("data-distance")) == pytest.approx(expected_distance, rel=1e-5)
    assert f"{row} × {column}" in readout.text_content()

    # The first step: another matrix and the dots elsewhere on the paths.
    frame.eval_on_selector(
        "[data-control=population-step]",
        "s => { s.value = '0'; s.dispatchEvent(new Event('input', {bubbles: true})); }",
    )
    frame.wait_for_selector(f"{POPULATION_MATRIX}[data-step='0']", timeout=20000)
    first = _canvas_stats(frame, POPULATION_MATRIX)
    assert first[0]["coloured"] > 5000 and first[0]["hash"] != last[0]["hash"]
    assert _canvas_stats(frame, POPULATION_PATHS)[0]["hash"] != paths[0]["hash"]

    # One layer: its own matrix.
    frame.select_option("[data-control=population-layer]", "fc1")
    _wait_for_redraw(frame, POPULATION_MATRIX, first)
    assert problems == []
    page.close()
