"""A population in the tab: the slides' 1,000 models x 30 iterations x 3 layers (003); the
reading side of the same shape is ``bench_population.py``.

The logdir is written at run time (``logdirs.write_population``: simulated weights, the tracker's
metrics computed from them, and their sketches where the format package has them), served by a
plain ``tensorboard --logdir`` and opened in headless Chromium. Every figure is from one page
session, the times taken by the page's own clock where the work is the page's.

``runs``, ``steps``, ``layers``   the logdir (``write s``: seconds to write it);
``runs ready s``     from TensorBoard's start to ``runs`` listing every run, ``loading: false``;
``run list s``       from opening the tab's URL to the run list's first rows in the DOM;
``first chart s``    from opening the tab's URL to the per-layer curves drawn with every run;
``filter ms``        median over a few regexes typed into the run filter (each 1.5 s after the
                     last, the panels done redrawing), from the input event to
                     the start of the frame that paints the filtered list (every panel's
                     synchronous work included, and whatever tasks of theirs ran before it);
``filter handler ms`` the same, the input event's handlers alone (the picker and every panel);
``scroll frame ms``  the median frame while scrolling the run list from top to bottom, a screen
                     per frame (``longest frame ms``: the longest);
``rows in DOM``      the most run rows in the DOM at any point of the scroll (of ``runs``);
``series one by one s``  every run's curves fetched by the page one ``series`` request a run,
                     six in flight (as the tab did before ``series_batch``);
``series_batch s``   the same in ``series_batch`` requests of 100 runs, six in flight (as the tab
                     does), the two alternated (three times each in a full run);
``batch speed-up``   the median of the paired ratios of the two;
``averaged s``       from choosing "averaged over seeds" to a chart per seed group drawn;
``settling s``       from the same moment to the settling table with a column per seed group;
``matrix s``         from opening the tab's URL to the population panel's matrix drawn
                     (``n/a``: this checkout has no distances route);
``matrix step s``    median from moving the step slider to the matrix of that step drawn.

Needs Debian's Chromium and Playwright's Python driver (``bash scripts/setup.sh --test``). Run
alone with ``python -m benchmarks population_tab [--quick]``.
"""

import os
import re
import statistics
import sys
import tempfile
import time

from benchmarks import logdirs
from benchmarks.bench_tab import CHROMIUM, IFRAME, _Sampler, _start_tensorboard, _stop, _wait_for_runs

MODELS, STEPS = 1000, 30
CONFIGS = 10
FILTERS = {False: ["cfg3", "seed0[0-4]$", "cfg[12]/seed00", "7$", ""], True: ["cfg3", "seed0[0-4]$", ""]}
CURVES = "[data-panel=layer-curves] .u-wrap canvas"
MATRIX = "[data-panel=population] canvas.ld-pop-canvas"

# Types a regex into the run filter and resolves, two frames later, with the milliseconds from
# the input event to the frame after the list was redrawn, and the list's row count.
_FILTER_JS = """
async (text) => {
  const input = document.querySelector('[data-panel=picker] input[type=search]');
  const list = document.querySelector('[data-list=runs]');
  const started = performance.now();
  input.value = text;
  input.dispatchEvent(new Event('input', {bubbles: true}));
  const handled = performance.now();
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return {ms: performance.now() - started, handler: handled - started, count: Number(list.dataset.count || 0)};
}
"""

# Fetches every run's curves as the tab did before batching (one ``series`` request a run, six in
# flight) or as it does now (``series_batch``, 100 runs a request, six in flight); resolves with
# the seconds taken. ``tag`` keeps the browser's cache out of it.
_FETCH_JS = """
async ([runs, batched, tag]) => {
  const started = performance.now();
  const urls = [];
  const q = `metric=grad_norm&target=layers&max_points=2000&_=${tag}`;
  if (batched) {
    for (let i = 0; i < runs.length; i += 100) {
      const chosen = runs.slice(i, i + 100).map((r) => 'run=' + encodeURIComponent(r));
      urls.push('./series_batch?' + chosen.join('&') + '&' + q);
    }
  } else {
    for (const r of runs) urls.push('./series?run=' + encodeURIComponent(r) + '&format=binary&' + q);
  }
  let next = 0;
  const worker = async () => {
    while (next < urls.length) {
      const response = await fetch(urls[next++]);
      if (!response.ok) throw new Error(`${response.status} ${response.url}`);
      await response.arrayBuffer();
    }
  };
  await Promise.all(Array.from({length: 6}, worker));
  return (performance.now() - started) / 1000;
}
"""

# Scrolls the run list a screen per frame to its end; the longest frame and the most rows seen.
_SCROLL_JS = """
async () => {
  const list = document.querySelector('[data-list=runs]');
  list.scrollTop = 0;
  await new Promise((r) => requestAnimationFrame(r));
  let longest = 0, rows = 0, last = performance.now(), steps = 0;
  const frames = [];
  while (list.scrollTop + list.clientHeight < list.scrollHeight - 1 && steps < 1000) {
    list.scrollTop += list.clientHeight;
    await new Promise((r) => requestAnimationFrame(r));
    const now = performance.now();
    longest = Math.max(longest, now - last);
    frames.push(now - last);
    last = now;
    rows = Math.max(rows, list.querySelectorAll('[data-run]').length);
    steps++;
  }
  const bottom = [...list.querySelectorAll('[data-run]')].map((n) => n.dataset.run).pop();
  frames.sort((a, b) => a - b);
  return {longest, median: frames[Math.floor(frames.length / 2)], rows, steps, bottom};
}
"""


def _seconds_until(frame, condition, arg=None, timeout=180):
    started = time.monotonic()
    frame.wait_for_function(condition, arg=arg, timeout=timeout * 1000, polling=50)
    return time.monotonic() - started


def _use_the_tab(browser, base, names, quick):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    opened = time.monotonic()
    page.goto(base + "/#layer_dynamics")
    frame = page.wait_for_selector(IFRAME, timeout=60000).content_frame()
    frame.wait_for_selector("[data-list=runs] [data-run]", timeout=120000)
    run_list = time.monotonic() - opened
    frame.wait_for_function(
        "(n) => document.querySelector('[data-panel=layer-curves] [data-legend=runs]')?.dataset.runs === String(n)"
        " && document.querySelector('[data-panel=layer-curves] .u-wrap canvas')",
        arg=len(names), timeout=180000, polling=50,
    )
    first_chart = time.monotonic() - opened
    has_matrix = frame.evaluate("() => !!document.querySelector('[data-panel=population]')")
    matrix = None
    if has_matrix:
        # The matrix, or a message saying why there is none (no sketches route in this checkout).
        frame.wait_for_function(
            "(sel) => document.querySelector(sel)"
            " || document.querySelector('[data-panel=population] :is(.ld-state-error, .ld-state-empty)')",
            arg=MATRIX, timeout=180000, polling=50,
        )
        if frame.query_selector(MATRIX):
            matrix = time.monotonic() - opened

    filters, handlers = [], []
    for text in FILTERS[quick]:
        # Each filter typed into a quiet page: the panels done with the one before.
        frame.wait_for_timeout(1500)
        got = frame.evaluate(_FILTER_JS, text)
        expected = sum(1 for n in names if not text or re.search(text, n, re.I))
        if got["count"] != expected:
            raise AssertionError(f"filter {text!r} listed {got['count']} runs, expected {expected}")
        filters.append(got["ms"])
        handlers.append(got["handler"])
    # Let the panels settle from the filters before scrolling.
    frame.wait_for_function(
        "(n) => document.querySelector('[data-panel=layer-curves] [data-legend=runs]')?.dataset.runs === String(n)",
        arg=len(names), timeout=180000, polling=100,
    )
    frame.wait_for_timeout(1000)
    scroll = frame.evaluate(_SCROLL_JS)
    if scroll["bottom"] != names[-1]:
        raise AssertionError(f"the list scrolled to {scroll['bottom']!r}, not the last run {names[-1]!r}")

    # Every run's curves, one request a run beside 100 runs a request, in alternation.
    singles, batches = [], []
    for rep in range(1 if quick else 3):
        singles.append(frame.evaluate(_FETCH_JS, [names, False, f"s{rep}"]))
        batches.append(frame.evaluate(_FETCH_JS, [names, True, f"b{rep}"]))
    ratios = [a / b for a, b in zip(singles, batches)]

    groups = len({n.split("/")[0] for n in names})
    started = time.monotonic()
    frame.select_option("[data-control=layout]", "averaged")
    averaged = _seconds_until(
        frame,
        "(n) => document.querySelectorAll('[data-panel=layer-curves] [data-seed-group] .u-wrap canvas').length === n",
        groups,
    )
    _seconds_until(
        frame, "(n) => document.querySelectorAll('[data-panel=settling] thead th[data-column]').length === n", groups,
    )
    settling = time.monotonic() - started
    frame.select_option("[data-control=layout]", "overlay")

    step_times = []
    if matrix is not None:
        for index in ([0, 15, 29] if not quick else [0, 29]):
            before = frame.eval_on_selector(MATRIX, "c => c.dataset.step")
            started = time.monotonic()
            frame.eval_on_selector(
                "[data-control=population-step]",
                "(s, i) => { s.value = String(i); s.dispatchEvent(new Event('input', {bubbles: true})); }",
                index,
            )
            frame.wait_for_function(
                "([sel, before]) => { const c = document.querySelector(sel); return c && c.dataset.step !== before; }",
                arg=[MATRIX, before], timeout=60000, polling=20,
            )
            step_times.append(time.monotonic() - started)
    page.close()
    return {
        "run list s": run_list,
        "first chart s": first_chart,
        "filter ms": statistics.median(filters),
        "filter handler ms": statistics.median(handlers),
        "scroll frame ms": scroll["median"],
        "longest frame ms": scroll["longest"],
        "rows in DOM": scroll["rows"],
        "series one by one s": statistics.median(singles),
        "series_batch s": statistics.median(batches),
        "batch speed-up": statistics.median(ratios),
        "averaged s": averaged,
        "settling s": settling,
        "matrix s": matrix if matrix is not None else "n/a",
        "matrix step s": statistics.median(step_times) if step_times else "n/a",
        "console errors": len(errors),
    }


def run(quick):
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench_population_") as tmp:
        logdir = os.path.join(tmp, "logdir")
        started = time.perf_counter()
        names = logdirs.write_population(logdir, MODELS, STEPS, configs=CONFIGS)
        written = time.perf_counter() - started
        process, base = _start_tensorboard(logdir, os.path.join(tmp, "cache"))
        sampler = _Sampler(process.pid)
        try:
            ready = _wait_for_runs(base, len(names))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM,
                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--disable-component-update", "--disable-sync", "--no-first-run"],
                )
                try:
                    figures = _use_the_tab(browser, base, sorted(names), quick)
                finally:
                    browser.close()
            peak = sampler.peak
        finally:
            _stop(process)
            sampler.stop()
    return [
        {
            "runs": len(names),
            "steps": STEPS,
            "layers": len(logdirs.POPULATION_LAYERS),
            "write s": written,
            "runs ready s": ready,
            **figures,
            "peak tree MB": peak,
        }
    ]


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run("--quick" in sys.argv)))
