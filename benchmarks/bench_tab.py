"""The Layer Dynamics tab on a large logdir: TensorBoard's memory, reading speed, time to the screen.

Each plan is a logdir of copies of one run (``logdirs``: 200 layers in 4 blocks, all 7 metrics,
logged every step), served by a plain ``tensorboard --logdir`` (the default Rust data server, the
plugin's own store in a cache of this benchmark), and opened in headless Chromium. Two plans that
differ only in the number of steps run side by side, so that memory can be compared across lengths.

``checkout``         which code served and drew the tab: ``this`` checkout, or the git revision
                     named by ``BENCH_TAB_AGAINST`` (see below);
``runs``, ``steps``, ``event GB``  the logdir (every copy counted);
``cold read s``      from TensorBoard's start to ``runs`` answering every run with ``loading: false``
                     (an empty cache: the plugin reads every event file once; TensorBoard's data
                     server reads them too, at the same time);
``cold MB/s``        ``event GB`` over ``cold read s``, both readers sharing the machine;
``warm start s``     the same after a restart, the cache warm: nothing is parsed again;
``settled s``        then, until TensorBoard's process tree has been idle (under a tenth of a core
                     for a second): its data server reads every event file again at each start,
                     whatever the plugin's cache (about 2 CPU seconds for 11.6 GB here), and the
                     tab is opened after that, as a user does who opens it some seconds after
                     starting TensorBoard; 0 with ``BENCH_TAB_AT_ONCE=1``, which opens it at once,
                     beside that read;
``first chart s``    with the cache warm, from opening the tab's URL to the per-layer curves drawn
                     for every ticked run (all of them) (target: 2); drawn means painted: the
                     second animation frame after the chart's canvas appears;
``plugin part s``    the same from the plugin's frame starting: TensorBoard's own page takes the
                     rest;
``metric switch s``  from choosing another metric to the curves redrawn for every run (target: 1);
``zoom s``           from a drag over the curves to the zoomed chart redrawn with the range's data;
``peak tree MB``     the largest resident memory of TensorBoard's process tree (TensorBoard and its
                     data server) over the whole plan, the tab in use (target: 1,500, and the same
                     for 10,000 and 100,000 steps);
``peak tree anon MB`` the same for its anonymous memory alone: the rest is file pages mapped in
                     (the plugin's cache arrays, the libraries), which the kernel may drop and read
                     back;
``cold peak tree MB`` the same during the first read alone;
``... ratio``        with ``BENCH_TAB_AGAINST``, the median over rounds of this checkout's time over
                     the revision's, each round timing both one after the other;
``load avg``         the range of the 1-minute load average while the rounds ran.

``BENCH_TAB_RUNS=<n>`` serves ``n`` copies of the run instead of 20.

With ``BENCH_TAB_AGAINST=<git revision>`` (for example ``main``), that revision's tree is exported
and its bundle built, and each plan opens the tab ``ROUNDS`` times with each checkout in turn, the
order rotating, on the same logdir and warm cache; the figures are medians over the rounds. Without
it, this checkout is timed once.

Needs Debian's Chromium and Playwright's Python driver (``bash scripts/setup.sh --test``). Run alone
with ``python -m benchmarks tab [--quick]``.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchmarks import logdirs

CHROMIUM = "/usr/bin/chromium"
# Open the tab as soon as ``runs`` answers, while TensorBoard's data server may still be reading
# the event files (``BENCH_TAB_AT_ONCE=1``), instead of once TensorBoard has settled.
AT_ONCE = os.environ.get("BENCH_TAB_AT_ONCE", "") not in ("", "0")
TARGET_FIRST_CHART_S = 2.0
TARGET_SWITCH_S = 1.0
TARGET_TREE_MB = 1500.0
LAYERS = 200
# Copies of the run in the logdir, every one ticked in the tab (issue 9's stretch: 100).
RUNS = int(os.environ.get("BENCH_TAB_RUNS", "20"))
PLANS = {False: [10_000, 100_000], True: [1_000, 10_000]}
# Rounds per checkout when two are compared (``BENCH_TAB_AGAINST``).
ROUNDS = {False: 3, True: 3}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IFRAME = "iframe[src*='plugin_entry.html?name=layer_dynamics']"
CURVES = "[data-panel=layer-curves] .u-wrap canvas"

# Runs in every frame: notes when the per-layer curves' chart is (re)created and drawn, and how
# many runs its legend names, so times come from the page's own clock, not from polling a busy page.
# A chart counts as drawn at the second animation frame after its canvas appears: the first frame
# runs once the task that built the chart (and drew it, uPlot draws in a microtask) is over, the
# second once the browser has rasterised and painted that frame. Timing the canvas's arrival
# alone would miss the painting, which is most of the cost of thousands of curves.
_WATCH_CURVES = """
(() => {
  window.__ldFrameStart = Date.now();
  window.__ldCurves = [];
  const seen = new WeakSet();
  const look = () => {
    const canvas = document.querySelector('[data-panel=layer-curves] .u-wrap canvas');
    if (!canvas || seen.has(canvas)) return;
    seen.add(canvas);
    // The legend names its first runs and counts them all in data-runs.
    const legend = Number(document.querySelector(
      '[data-panel=layer-curves] [data-legend=runs]')?.dataset.runs || 0);
    const created = Date.now();
    requestAnimationFrame(() => requestAnimationFrame(() => {
      window.__ldCurves.push({created, time: Date.now(), legend});
    }));
  };
  const start = () => new MutationObserver(look).observe(document.body, {childList: true, subtree: true});
  if (document.body) start(); else document.addEventListener('DOMContentLoaded', start);
})();
"""

_CANVAS_HASH = """
(selector) => [...document.querySelectorAll(selector)].map((canvas) => {
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const ctx = copy.getContext('2d', {willReadFrequently: true});
  ctx.drawImage(canvas, 0, 0);
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0, hash = 2166136261;
  for (let i = 0; i < data.length; i += 4) {
    const r = data[i], g = data[i + 1], b = data[i + 2];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 60) coloured++;
    hash = Math.imul(hash ^ (r + 3 * g + 7 * b), 16777619) >>> 0;
  }
  return {coloured, hash};
})
"""


def _tree_pids(root_pid):
    """A process and all its descendants."""
    parents = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            parents[int(name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    return tree


def _tree_cpu_s(root_pid):
    """CPU seconds (user and system) used so far by a process and all its descendants."""
    ticks = 0
    for pid in _tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def _wait_idle(root_pid, window=1.0, busy=0.1, timeout=300):
    """Seconds until a process tree has used under ``busy`` of a core over ``window`` seconds:
    TensorBoard's data server reads every event file at each start, after the plugin's ``runs``
    already answers from its warm cache (measured: 2 CPU seconds for 11.6 GB of events)."""
    started = time.monotonic()
    before = _tree_cpu_s(root_pid)
    while time.monotonic() - started < timeout:
        time.sleep(window)
        now = _tree_cpu_s(root_pid)
        if now - before < busy * window:
            return time.monotonic() - started
        before = now
    return time.monotonic() - started


def _tree_rss_mb(root_pid):
    """Resident memory of a process and all its descendants, in MB: ``(all, anonymous)``. The
    rest is file pages mapped in (the plugin's cache arrays among them), which the kernel may drop
    and read back under pressure."""
    total = anon = 0
    for pid in _tree_pids(root_pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                    elif line.startswith("RssAnon:"):
                        anon += int(line.split()[1])
        except OSError:
            continue
    return total / 1024, anon / 1024


class _Sampler:
    """Samples a process tree's memory in a thread; ``peak`` is the largest sample so far, and
    ``peak_anon`` the largest of its anonymous part."""

    def __init__(self, pid):
        self.pid, self.peak, self.peak_anon, self._stop = pid, 0.0, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            total, anon = _tree_rss_mb(self.pid)
            self.peak, self.peak_anon = max(self.peak, total), max(self.peak_anon, anon)
            time.sleep(0.2)

    def reset(self):
        self.peak = self.peak_anon = 0.0

    def stop(self):
        self._stop.set()
        self._thread.join()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_tensorboard(logdir, cache, root=ROOT):
    """A plain ``tensorboard --logdir`` that imports ``tb_layerdyn`` from the checkout ``root``."""
    port = _free_port()
    # That checkout's package, whatever checkout an editable install points at.
    env = dict(os.environ, TB_LAYERDYN_CACHE=cache)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    process = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
         "--port", str(port)],
        cwd=tempfile.gettempdir(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


def _wait_for_runs(base, count, timeout=1800):
    """Seconds until ``runs`` lists ``count`` runs and has finished its first pass."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(base + "/data/plugin/layer_dynamics/runs", timeout=30) as r:
                body = json.loads(r.read())
            if len(body["runs"]) == count and not body["loading"]:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"TensorBoard at {base} did not list {count} runs in {timeout} s")


def _stop(process):
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait_for_curves(frame, runs, before=None, timeout=120):
    """Seconds until the curves chart is drawn for every run (and differs from ``before``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        stats = frame.evaluate(_CANVAS_HASH, CURVES)
        legend = frame.eval_on_selector_all(
            "[data-panel=layer-curves] [data-legend=runs]", "n => n.length ? Number(n[0].dataset.runs) : 0")
        drawn = stats and stats[0]["coloured"] > 500 and (runs == 1 or legend == runs)
        if drawn and (before is None or stats[0]["hash"] != before):
            return time.monotonic() - started, stats[0]["hash"]
        frame.wait_for_timeout(50)
    raise TimeoutError("the curves were not drawn")


def _chart_after(frame, since_ms, runs, timeout=120):
    """The first curves chart whose canvas appeared after ``since_ms`` (the page's clock, ms since
    the epoch) with every run in its legend: ``{created, time, legend}``, ``time`` when drawn."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mark in frame.evaluate("() => window.__ldCurves || []"):
            if mark["created"] >= since_ms and (runs == 1 or mark["legend"] == runs):
                return mark
        frame.wait_for_timeout(100)
    raise TimeoutError("the curves were not drawn")


def _use_the_tab(browser, base):
    """Opens the tab, switches the metric and zooms; returns the times in seconds: ``first`` from
    opening the tab's URL, ``plugin`` from the plugin's frame starting, both to the first chart
    drawn; ``switch`` and ``zoom``."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.add_init_script(_WATCH_CURVES)
    opened = page.evaluate("() => Date.now()")
    page.goto(base + "/#layer_dynamics")
    frame = page.wait_for_selector(IFRAME, timeout=60000).content_frame()
    frame.wait_for_selector(CURVES, timeout=60000)
    drawn = _chart_after(frame, opened, RUNS)["time"]
    frame_start = frame.evaluate("() => window.__ldFrameStart")
    _, first_hash = _wait_for_curves(frame, RUNS)
    switched = frame.evaluate("() => Date.now()")
    frame.select_option("[data-control=metric]", "grad_norm")
    switch = (_chart_after(frame, switched + 1, RUNS)["time"] - switched) / 1000
    _, switched_hash = _wait_for_curves(frame, RUNS, before=first_hash)
    box = frame.query_selector("[data-panel=layer-curves] .u-over").bounding_box()
    zoomed = time.monotonic()
    with page.expect_response(lambda r: "start=" in r.url, timeout=60000):
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
    _wait_for_curves(frame, RUNS, before=switched_hash)
    zoom = time.monotonic() - zoomed
    page.close()
    return {"first": (drawn - opened) / 1000, "plugin": (drawn - frame_start) / 1000,
            "switch": switch, "zoom": zoom}


def _checkout(revision, into):
    """The tree of a git ``revision`` of this repository under ``into``, its bundle built with this
    checkout's ``frontend/node_modules`` (``npm ci`` there first)."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", revision], check=True, capture_output=True).stdout
    os.makedirs(into)
    subprocess.run(["tar", "-x", "-C", into], input=archive, check=True)
    os.symlink(os.path.join(ROOT, "frontend", "node_modules"), os.path.join(into, "frontend", "node_modules"))
    subprocess.run(["node", "build.mjs"], cwd=os.path.join(into, "frontend"), check=True, capture_output=True)
    return into


def _load():
    return os.getloadavg()[0]


def run(quick):
    from playwright.sync_api import sync_playwright

    rows = []
    content = logdirs.layout(LAYERS)
    against = os.environ.get("BENCH_TAB_AGAINST")
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="bench_tab_") as top:
        # The checkouts to time: this one, and the revision to compare with, side by side.
        roots = {"this": ROOT}
        if against:
            roots = {against: _checkout(against, os.path.join(top, "against")), "this": ROOT}
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        for steps in PLANS[quick]:
            with tempfile.TemporaryDirectory(prefix="bench_tab_") as tmp:
                source = logdirs.write_run(os.path.join(tmp, "source"), content, steps)
                logdir = os.path.join(tmp, "logdir")
                logdirs.population(logdir, RUNS, source)
                cache = os.path.join(tmp, "cache")
                event_gb = RUNS * os.path.getsize(source) / 1e9

                process, base = _start_tensorboard(logdir, cache)
                sampler = _Sampler(process.pid)
                try:
                    cold = _wait_for_runs(base, RUNS)
                    cold_peak, cold_anon = sampler.peak, sampler.peak_anon
                finally:
                    _stop(process)
                    sampler.stop()

                # Each checkout in turn, the order rotating, on the same logdir and warm cache.
                names = list(roots)
                times = {name: [] for name in names}
                peaks = {name: 0.0 for name in names}
                anons = {name: 0.0 for name in names}
                warms = {name: [] for name in names}
                settles = {name: [] for name in names}
                loads = []
                for rep in range(ROUNDS[quick] if against else 1):
                    shift = rep % len(names)
                    for name in names[shift:] + names[:shift]:
                        loads.append(_load())
                        process, base = _start_tensorboard(logdir, cache, roots[name])
                        sampler = _Sampler(process.pid)
                        try:
                            warms[name].append(_wait_for_runs(base, RUNS))
                            settles[name].append(0.0 if AT_ONCE else _wait_idle(process.pid))
                            times[name].append(_use_the_tab(browser, base))
                            peaks[name] = max(peaks[name], sampler.peak, cold_peak)
                            anons[name] = max(anons[name], sampler.peak_anon, cold_anon)
                        finally:
                            _stop(process)
                            sampler.stop()
                        loads.append(_load())
                for name in names:
                    got = {key: statistics.median(t[key] for t in times[name]) for key in times[name][0]}
                    row = {
                        "checkout": name,
                        "runs": RUNS,
                        "steps": steps,
                        "event GB": event_gb,
                        "cold read s": cold,
                        "cold MB/s": event_gb * 1000 / cold,
                        "warm start s": statistics.median(warms[name]),
                        "settled s": statistics.median(settles[name]),
                        "first chart s": got["first"],
                        "plugin part s": got["plugin"],
                        "metric switch s": got["switch"],
                        "zoom s": got["zoom"],
                        "peak tree MB": peaks[name],
                        "peak tree anon MB": anons[name],
                        "cold peak tree MB": cold_peak,
                        "targets met": got["first"] <= TARGET_FIRST_CHART_S
                        and got["switch"] <= TARGET_SWITCH_S
                        and peaks[name] <= TARGET_TREE_MB,
                    }
                    if against and name == "this":
                        # Ratios of paired rounds (this over the revision, taken one after the other).
                        for key, column in (("first", "first chart"), ("plugin", "plugin part"),
                                            ("switch", "metric switch"), ("zoom", "zoom")):
                            pairs = zip(times["this"], times[against])
                            row[f"{column} ratio"] = statistics.median(a[key] / b[key] for a, b in pairs)
                        row["load avg"] = f"{min(loads):.1f}-{max(loads):.1f}"
                    rows.append(row)
        browser.close()
    return rows


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run("--quick" in sys.argv)))
