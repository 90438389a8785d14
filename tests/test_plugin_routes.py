"""The plugin's routes through TensorBoard's real WSGI app, under both of TensorBoard's loaders.

Logdirs are written with ``tb_layerdyn.format.layer_metrics`` (and once with ``log_layer_dynamics``),
served with the Python ``EventMultiplexer`` or the Rust data server started in-process, with flags
parsed by TensorBoard's own ``program.TensorBoard`` (so the loader's ``fix_flags`` applies). The
plugin reads every step from its own store whatever TensorBoard keeps. Expected bodies come from
slow per-value references written below; the exact binning of downsampled answers is checked
against brute force in ``test_store.py``.
"""

import json
import math
import os
import subprocess
import sys
import threading
import time
import urllib.parse

import numpy as np
import pytest
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_ingester
from tensorboard.compat.proto import summary_pb2
from tensorboard.plugins import base_plugin
from tensorboard.util import tensor_util
from werkzeug import test as werkzeug_test

from conftest import make_layout, parse_flags, random_values, write_layer_metrics
from route_helpers import ok_json
from tb_layerdyn.plugin import in_process
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.reading import downsample
from tb_layerdyn.plugin import json_numbers
from tb_layerdyn.plugin.loader import LayerDynamicsLoader
from tb_layerdyn.plugin.plugin import LayerDynamicsPlugin

PREFIX = "/data/plugin/layer_dynamics/"
HOSTILE_RUNS = ("<img src=x onerror=alert(1)>", "..%2F..", "...", "ünïcødé ✓ 层 & x=1#y?")
LONG_STEPS = 1200  # beyond the 1,000 scalars and 100 tensors a stock TensorBoard keeps per tag
GROUPS = [
    {"name": "early", "kind": "user", "members": ["conv1", "conv2"]},
    {"name": "late", "kind": "block", "members": ["fc2", "fc3"]},
]


# ---------------------------------------------------------------- logdir and servers


def _foreign_summary(tag, plugin_name, content, value):
    """A summary of another kind under our plugin name or another plugin, which runs must skip."""
    pb = summary_pb2.Summary()
    entry = pb.value.add(tag=tag, tensor=tensor_util.make_tensor_proto(np.float32(value)))
    entry.metadata.plugin_data.plugin_name = plugin_name
    entry.metadata.plugin_data.content = content
    entry.metadata.data_class = summary_pb2.DATA_CLASS_TENSOR
    return pb


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """Writes the logdir every test reads; returns ``(logdir, {run: [(layout, steps, values)]})``."""
    logdir = str(tmp_path_factory.mktemp("logdir"))
    rng = np.random.default_rng(7)
    written = {}

    def add(run, layout, steps, values, **kwargs):
        run_dir = logdir if run == "." else os.path.join(logdir, run)
        write_layer_metrics(run_dir, layout, steps, values, **kwargs)
        written.setdefault(run, []).append((layout, np.asarray(steps), values))

    lenet = make_layout(["conv1", "conv2", "fc1", "fc2", "fc3"], groups=GROUPS)
    values = random_values(rng, LONG_STEPS, lenet, nan_fraction=0.05)
    values[:, :, 4] = np.nan  # fc3 was never defined in this run
    values[-3:, 0, 1] = np.nan  # conv2's RWC is undefined at the last steps: summary falls back
    add("lenet/seed0", lenet, np.arange(LONG_STEPS) * 10, values)

    small = make_layout(["a", "b"], metrics=["rwc", "weight_norm"], rwc="elementwise")
    for run in HOSTILE_RUNS + (".",):
        add(run, small, [0, 1, 2], random_values(rng, 3, small))

    # A layer appears at step 10: two layouts, merged by name.
    before = make_layout(["a", "c"], metrics=["rwc"])
    after = make_layout(["a", "b", "c"], metrics=["rwc"])
    add("grown", before, range(10), random_values(rng, 10, before))
    add("grown", after, range(10, 15), random_values(rng, 5, after))

    # Neither is layer dynamics: a sweep-kind payload and another plugin's tensor.
    sweep = metadata.summary_metadata(encoding.KIND, encoding.VERSION, {}).plugin_data.content
    foreign_dir = os.path.join(logdir, "foreign")
    write_layer_metrics(
        foreign_dir, small, [], [],
        extra_summaries=[
            (0, _foreign_summary(encoding.TAG_PREFIX + "x", metadata.PLUGIN_NAME, sweep, 1.0)),
            (0, _foreign_summary("loss", "other_plugin", b"", 2.0)),
        ],
    )
    return logdir, written


class _PluginWithStatic(base_plugin.TBLoader):
    """Loads the real plugin with its bundle read from another directory."""

    def __init__(self, static_dir):
        self._static_dir = static_dir

    def load(self, context):
        return LayerDynamicsPlugin(context, static_dir=self._static_dir)


def _wait_for(client, expected_last_steps, timeout=30.0):
    """Polls ``runs`` until the loader has every run at its last step (the Rust server loads in
    the background)."""
    deadline = time.monotonic() + timeout
    while True:
        body = json.loads(client.get(PREFIX + "runs").get_data())
        seen = {entry["run"]: entry["last_step"] for entry in body["runs"]}
        if seen == expected_last_steps or time.monotonic() > deadline:
            return
        time.sleep(0.1)


def _expected_last_steps(written):
    return {run: int(max(int(s.max()) for _, s, _ in parts)) for run, parts in written.items()}


@pytest.fixture(scope="module", params=["python", "rust"])
def served(request, logged, tmp_path_factory):
    """``(client, loader name)`` of a TensorBoard WSGI app over the logdir, per loader."""
    logdir, written = logged
    static_dir = str(tmp_path_factory.mktemp("static"))
    with in_process.serve(logdir, request.param, _PluginWithStatic(static_dir)) as served_app:
        client = served_app.client
        _wait_for(client, _expected_last_steps(written))
        _wait_for_provider(served_app.data_provider, written)
        yield client, static_dir, served_app.data_provider


def provider_context():
    from tensorboard import context

    return context.RequestContext()


def _wait_for_provider(provider, written, timeout=30.0):
    """Waits until TensorBoard's own loader has seen every run (the Rust server loads in the
    background), so that tests of what it keeps see its final state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = provider.list_tensors(
            provider_context(), experiment_id="", plugin_name=metadata.PLUGIN_NAME, run_tag_filter=None
        )
        if set(written) <= set(listing):
            return
        time.sleep(0.1)


def _get(client, route, **query):
    url = PREFIX + route + ("?" + urllib.parse.urlencode(query) if query else "")
    return client.get(url)


_json = ok_json


# ---------------------------------------------------------------- references


def _merged(written, run):
    """Slow reference of a run's merged tables: {metric: {layer: {step: value}}} and groups."""
    by_metric, by_group, steps = {}, {}, set()
    for layout, layout_steps, values in written[run]:
        n = len(layout["layers"])
        for row, step in enumerate(layout_steps.tolist()):
            steps.add(step)
            for m, metric in enumerate(layout["metrics"]):
                for c, name in enumerate(layout["layers"]):
                    value = float(values[row, m, c])
                    if not math.isnan(value):
                        by_metric.setdefault(metric, {}).setdefault(name, {})[step] = value
                for g, group in enumerate(layout["groups"]):
                    value = float(values[row, m, n + g])
                    if not math.isnan(value):
                        by_group.setdefault(metric, {}).setdefault(group["name"], {})[step] = value
    return by_metric, by_group, sorted(steps)


def _reference_series(table, names, steps):
    return [[table.get(name, {}).get(step) for step in steps] for name in names]


def _as_float32(rows):
    return [[None if v is None else float(np.float32(v)) for v in row] for row in rows]


def _close_rows(got, want, rel):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert len(g) == len(w)
        for a, b in zip(g, w):
            assert (a is None) == (b is None), (a, b)
            if a is not None:
                assert a == pytest.approx(b, rel=rel, abs=0)


# ---------------------------------------------------------------- flags and retention


def test_fix_flags_caps_what_tensorboard_keeps_unless_the_user_chose():
    assert parse_flags(["--logdir", "x"]).samples_per_plugin == {metadata.PLUGIN_NAME: 1}
    chosen = parse_flags(["--logdir", "x", "--samples_per_plugin", "layer_dynamics=50,images=3"])
    assert chosen.samples_per_plugin == {metadata.PLUGIN_NAME: 50, "images": 3}
    other = parse_flags(["--logdir", "x", "--samples_per_plugin", "images=3"])
    assert other.samples_per_plugin == {"images": 3, metadata.PLUGIN_NAME: 1}


def test_every_step_is_served_while_tensorboard_keeps_one_per_tag(served, logged):
    client, _, provider = served
    body = _json(_get(client, "series", run="lenet/seed0", metric="rwc"))
    assert body["total_steps"] == LONG_STEPS
    assert body["columns"][0] == (np.arange(LONG_STEPS) * 10).tolist()
    # TensorBoard's own loader holds one sample per tag of this plugin, not the run.
    held = provider.read_tensors(
        provider_context(), experiment_id="", plugin_name=metadata.PLUGIN_NAME,
        downsample=10**6, run_tag_filter=None,
    )
    assert held["lenet/seed0"] and all(len(data) == 1 for data in held["lenet/seed0"].values())


# ---------------------------------------------------------------- exact bodies


def test_runs_lists_layer_dynamics_runs_only(served, logged):
    client = served[0]
    _, written = logged
    body = _json(_get(client, "runs"))
    assert body["loading"] is False
    assert [entry["run"] for entry in body["runs"]] == sorted(written)
    by_run = {entry["run"]: entry for entry in body["runs"]}
    assert by_run["lenet/seed0"] == {
        "run": "lenet/seed0",
        "model": None,  # written without a name
        "layers": ["conv1", "conv2", "fc1", "fc2", "fc3"],
        "param_counts": [10, 20, 30, 40, 50],
        "descriptions": None,  # nor descriptions (the tracker writes both)
        "groups": GROUPS,
        "metrics": list(layer_metrics.METRIC_NAMES),
        "rwc": "l1",
        "granularity": "layer",
        "order": "forward",
        "last_step": (LONG_STEPS - 1) * 10,
        "sweeps": 0,
        "pictures": [],
    }
    assert by_run["grown"]["layers"] == ["a", "b", "c"]
    assert by_run["grown"]["param_counts"] == [10, 20, 30]
    assert by_run["grown"]["last_step"] == 14
    for run in HOSTILE_RUNS + (".",):
        assert by_run[run]["metrics"] == ["rwc", "weight_norm"]
        assert by_run[run]["rwc"] == "elementwise"


@pytest.mark.parametrize("target", ["layers", "groups"])
def test_series_is_every_logged_value_as_columns(served, logged, target):
    client = served[0]
    _, written = logged
    by_metric, by_group, steps = _merged(written, "lenet/seed0")
    for metric in ("rwc", "grad_norm"):
        body = _json(_get(client, "series", run="lenet/seed0", metric=metric, target=target))
        names = [g["name"] for g in GROUPS] if target == "groups" else [
            "conv1", "conv2", "fc1", "fc2", "fc3"]
        table = (by_group if target == "groups" else by_metric)[metric]
        assert body["run"] == "lenet/seed0"
        assert body["metric"] == metric and body["target"] == target
        assert body["names"] == names
        assert body["downsampled"] is False
        assert body["columns"][0] == steps
        # Nine significant digits read back as exactly the float32 that was logged.
        assert _as_float32(body["columns"][1:]) == _reference_series(table, names, steps)


def test_series_beyond_max_points_is_a_min_max_envelope(served, logged):
    """Each series keeps its extremes and only ever shows values it had, within the budget."""
    client = served[0]
    _, written = logged
    by_metric, _, steps = _merged(written, "lenet/seed0")
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    rows = _reference_series(by_metric["update_size"], names, steps)
    for max_points in (2, 7, 100, LONG_STEPS - 1):
        body = _json(
            _get(client, "series", run="lenet/seed0", metric="update_size", max_points=max_points)
        )
        assert body["downsampled"] is True
        assert body["total_steps"] == LONG_STEPS
        got_steps = body["columns"][0]
        assert len(got_steps) <= max_points
        assert got_steps == sorted(got_steps) and got_steps[0] == steps[0]
        assert got_steps[-1] == steps[-1]
        for row, got in zip(rows, _as_float32(body["columns"][1:])):
            logged_values = {v for v in row if v is not None}
            shown = [v for v in got if v is not None]
            assert set(shown) <= logged_values
            if logged_values:
                assert min(shown) == min(logged_values) and max(shown) == max(logged_values)


def test_zoomed_ranges_show_every_logged_step(served, logged):
    client = served[0]
    _, written = logged
    by_metric, _, steps = _merged(written, "lenet/seed0")
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    for start, end, max_points in ((0, 0, 2), (35, 2000, 1000), (4321, 9999, 600), (11990, 12000, 2)):
        inside = [s for s in steps if start <= s <= end]
        body = _json(_get(client, "series", run="lenet/seed0", metric="rwc",
                          start=start, end=end, max_points=max_points))
        if len(inside) > max_points:
            assert body["downsampled"] is True
            continue
        assert body["downsampled"] is False
        assert body["columns"][0] == inside
        assert _as_float32(body["columns"][1:]) == _reference_series(by_metric["rwc"], names, inside)


def test_binary_series_holds_the_json_series(served):
    client = served[0]
    for query in ({}, {"max_points": 50}, {"start": 100, "end": 900, "target": "groups"}):
        as_json = _json(_get(client, "series", run="lenet/seed0", metric="grad_norm", **query))
        response = _get(client, "series", run="lenet/seed0", metric="grad_norm", format="binary", **query)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/octet-stream"
        raw = response.get_data()
        (length,) = np.frombuffer(raw[:4], dtype="<u4")
        header = json.loads(raw[4 : 4 + length])
        points, series = header["points"], len(header["names"])
        assert (4 + length) % 8 == 0
        steps = np.frombuffer(raw, dtype="<f8", count=points, offset=4 + length)
        values = np.frombuffer(raw, dtype="<f4", offset=4 + length + 8 * points).reshape(series, points)
        assert header["names"] == as_json["names"] and header["downsampled"] == as_json["downsampled"]
        assert header["total_steps"] == as_json["total_steps"]
        assert steps.tolist() == as_json["columns"][0]
        want = [[np.nan if v is None else v for v in column] for column in as_json["columns"][1:]]
        np.testing.assert_array_equal(values, np.array(want, dtype=np.float32))


def _batch(client, runs, models=None, **query):
    pairs = [("run", r) for r in runs] + [("model", m) for m in (models or [])] + list(query.items())
    return client.get(PREFIX + "series_batch?" + urllib.parse.urlencode(pairs))


def _split_batch(raw):
    """The parts of a ``series_batch`` body, read plainly."""
    (count,) = np.frombuffer(raw[:4], dtype="<u4")
    parts, offset = [], 4
    for _ in range(int(count)):
        (length,) = np.frombuffer(raw[offset : offset + 4], dtype="<u4")
        parts.append(raw[offset + 4 : offset + 4 + int(length)])
        offset += 4 + int(length)
    assert offset == len(raw)
    return parts


def test_series_batch_holds_each_binary_series_in_order(served):
    client = served[0]
    runs = ["grown", "lenet/seed0", HOSTILE_RUNS[0], "grown"]
    for query in ({"metric": "rwc"}, {"metric": "rwc", "max_points": 50, "start": 3, "end": 400}):
        response = _batch(client, runs, **query)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.headers["Content-Type"] == "application/octet-stream"
        parts = _split_batch(response.get_data())
        singles = [_get(client, "series", run=run, format="binary", **query).get_data() for run in runs]
        assert parts == singles
    # Models given once per run, empty for a tracker without a name: the same answers.
    named = _split_batch(_batch(client, runs[:2], ["", ""], metric="rwc").get_data())
    assert named == [_get(client, "series", run=run, metric="rwc", format="binary").get_data() for run in runs[:2]]


def test_series_batch_refuses_what_series_refuses(served):
    client = served[0]
    unknown = _batch(client, ["grown", "no such run"], metric="rwc")
    assert unknown.status_code == 404 and "no such run" in unknown.get_data(as_text=True)
    missing = _batch(client, ["grown"], metric="grad_norm")
    assert missing.status_code == 404 and "grad_norm" in missing.get_data(as_text=True)
    assert _batch(client, [], metric="rwc").status_code == 400
    assert _batch(client, ["grown", "grown"], [""], metric="rwc").status_code == 400
    assert _batch(client, ["grown"] * 257, metric="rwc").status_code == 400
    assert _batch(client, ["grown"], metric="rwc", max_points=1).status_code == 400


def test_concurrent_requests_compute_a_bounded_number_of_tables_at_once(logged, tmp_path, monkeypatch):
    """TensorBoard serves each request on its own thread: twelve at once (the tab sends ten
    batches) compute at most ``CONCURRENT_TABLES`` curves and as many heatmaps at a time, each
    answer the same as asked alone."""
    from tb_layerdyn.plugin import plugin as plugin_module
    from tb_layerdyn.reading import models

    monkeypatch.setattr(plugin_module, "CONCURRENT_TABLES", 2)
    lock, active, most = threading.Lock(), {"series": 0, "heatmap": 0}, {"series": 0, "heatmap": 0}

    def counted(method, kind):
        def wrapper(*args, **kwargs):
            with lock:
                active[kind] += 1
                most[kind] = max(most[kind], active[kind])
            try:
                time.sleep(0.02)  # long enough for the other threads to pile up
                return method(*args, **kwargs)
            finally:
                with lock:
                    active[kind] -= 1
        return wrapper

    logdir, written = logged
    with in_process.serve(logdir, "python", _PluginWithStatic(str(tmp_path))) as served_app:
        client = served_app.client
        _wait_for(client, _expected_last_steps(written))
        asks = [PREFIX + "series_batch?run=grown&run=lenet%2Fseed0&metric=rwc",
                PREFIX + "series?run=grown&metric=rwc&format=binary",
                PREFIX + "heatmap?run=lenet%2Fseed0&metric=rwc&format=binary"] * 4
        alone = [client.get(url).get_data() for url in asks]
        monkeypatch.setattr(models.ModelTable, "series", counted(models.ModelTable.series, "series"))
        monkeypatch.setattr(models.ModelTable, "heatmap", counted(models.ModelTable.heatmap, "heatmap"))
        answers = [None] * len(asks)

        def ask(i):
            response = client.get(asks[i])
            assert response.status_code == 200, response.get_data(as_text=True)
            answers[i] = response.get_data()

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == alone
    assert most == {"series": 2, "heatmap": 2}


def test_heatmap_bins_are_means_of_defined_values(served, logged):
    client = served[0]
    _, written = logged
    by_metric, _, steps = _merged(written, "lenet/seed0")
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    rows = _reference_series(by_metric["rwc"], names, steps)

    whole = _json(_get(client, "heatmap", run="lenet/seed0", metric="rwc"))
    assert whole["downsampled"] is False and whole["steps"] == steps
    assert whole["names"] == names
    assert _as_float32(whole["values"]) == rows

    for max_steps in (1, 13, 500):
        body = _json(_get(client, "heatmap", run="lenet/seed0", metric="rwc", max_steps=max_steps))
        assert body["downsampled"] is True
        cells = body["steps"]
        assert len(cells) <= max_steps and cells[-1] == steps[-1] and cells == sorted(cells)
        # Each cell is the mean of the defined values of its bin: the steps after the previous
        # cell's step up to its own.
        edges = [-1] + cells
        for row, got in zip(rows, body["values"]):
            for lo, hi, value in zip(edges, edges[1:], got):
                defined = [v for s, v in zip(steps, row) if lo < s <= hi and v is not None]
                if not defined:
                    assert value is None
                else:
                    assert value == pytest.approx(sum(defined) / len(defined), rel=1e-6)
        defined = [v for row in body["values"] for v in row if v is not None]
        assert body["max"] == pytest.approx(max(defined), rel=1e-8)
        assert body["min_positive"] == pytest.approx(min(v for v in defined if v > 0), rel=1e-8)
        assert body["values"][4] == [None] * len(cells)  # fc3 never had a value


def test_summary_takes_the_latest_defined_value(served, logged):
    client = served[0]
    _, written = logged
    by_metric, by_group, steps = _merged(written, "lenet/seed0")
    body = _json(_get(client, "summary", run="lenet/seed0"))
    names = ["conv1", "conv2", "fc1", "fc2", "fc3"]

    def latest(table, name):
        defined = [s for s in steps if s in table.get(name, {})]
        return table[name][defined[-1]] if defined else None

    assert body["run"] == "lenet/seed0" and body["step"] == steps[-1]
    assert body["layers"]["names"] == names
    assert body["layers"]["param_counts"] == [10, 20, 30, 40, 50]
    assert body["groups"]["names"] == ["early", "late"]
    for metric in ("distance_from_init", "relative_distance_from_init", "rwc"):
        assert body["layers"][metric] == [latest(by_metric[metric], n) for n in names]
        assert body["groups"][metric] == [latest(by_group[metric], g) for g in ("early", "late")]
    assert body["layers"]["rwc"][1] is not None  # conv2: undefined at the end, shown from before
    assert body["layers"]["rwc"][4] is None  # fc3: never defined


def test_metrics_not_logged_are_nulls_in_summary(served):
    client = served[0]
    body = _json(_get(client, "summary", run="."))
    assert body["layers"]["distance_from_init"] == [None, None]
    assert body["groups"] == {
        "names": [], "distance_from_init": [], "relative_distance_from_init": [], "rwc": []}


def test_a_run_whose_layers_changed_is_merged_by_name(served, logged):
    client = served[0]
    _, written = logged
    by_metric, _, steps = _merged(written, "grown")
    body = _json(_get(client, "series", run="grown", metric="rwc"))
    assert body["names"] == ["a", "b", "c"]
    assert body["columns"][0] == list(range(15))
    assert _as_float32(body["columns"][1:]) == _reference_series(by_metric["rwc"], ["a", "b", "c"], steps)
    assert body["columns"][2][:10] == [None] * 10  # b did not exist yet


@pytest.mark.parametrize("run", HOSTILE_RUNS + (".",))
def test_hostile_and_unicode_run_names_round_trip_as_text(served, logged, run):
    client = served[0]
    _, written = logged
    by_metric, _, steps = _merged(written, run)
    body = _json(_get(client, "series", run=run, metric="weight_norm"))
    assert body["run"] == run
    assert _as_float32(body["columns"][1:]) == _reference_series(by_metric["weight_norm"], ["a", "b"], steps)
    assert _json(_get(client, "summary", run=run))["run"] == run
    assert _json(_get(client, "heatmap", run=run, metric="rwc"))["run"] == run


def test_unknown_run_names_never_reach_other_runs(served):
    client = served[0]
    for run in ("lenet", "lenet/seed0/..", "../lenet/seed0", "foreign", "LENET/SEED0"):
        response = _get(client, "summary", run=run)
        assert response.status_code == 404, run


# ---------------------------------------------------------------- bad requests

BAD_QUERIES = [
    ("series", {}, 400, "run"),
    ("series", {"run": "lenet/seed0"}, 400, "metric"),
    ("series", {"run": "", "metric": "rwc"}, 400, "run"),
    ("series", {"run": "nope", "metric": "rwc"}, 404, "nope"),
    ("series", {"run": "lenet/seed0", "metric": "loss"}, 404, "loss"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "target": "heads"}, 400, "target"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "abc"}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "-5"}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "1"}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "100001"}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "1e3"}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "9" * 40}, 400, "max_points"),
    ("series", {"run": "lenet/seed0", "metric": "rwc", "max_points": "٣"}, 400, "max_points"),
    ("series", {"run": "\x00", "metric": "rwc"}, 404, "run"),
    ("series", {"run": "x" * 5000, "metric": "rwc"}, 404, "run"),
    ("series", {"run": "foreign", "metric": "rwc"}, 404, "foreign"),
    ("heatmap", {"run": "lenet/seed0"}, 400, "metric"),
    ("heatmap", {"run": "lenet/seed0", "metric": "rwc", "max_steps": "0"}, 400, "max_steps"),
    ("heatmap", {"run": "lenet/seed0", "metric": "rwc", "max_steps": "20001"}, 400, "max_steps"),
    ("heatmap", {"run": ".", "metric": "grad_norm"}, 404, "grad_norm"),
    ("summary", {}, 400, "run"),
    ("summary", {"run": "<script>"}, 404, "<script>"),
]


@pytest.mark.parametrize("route,query,status,named", BAD_QUERIES)
def test_bad_queries_get_a_clear_4xx(served, route, query, status, named):
    client = served[0]
    response = _get(client, route, **query)
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert named in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "raw_query",
    ["run=%ff%fe&metric=rwc", "run=lenet%2Fseed0&metric=%ff", "run&metric", "=&=&", "%", "run=%zz"],
)
def test_malformed_query_strings_never_500(served, raw_query):
    client = served[0]
    for route in ("series", "heatmap", "summary"):
        response = client.get(PREFIX + route + "?" + raw_query)
        # summary ignores ``metric``, so a valid run answers 200 there; nothing answers 500.
        assert response.status_code in (200, 400, 404), (route, raw_query, response.status_code)


# ---------------------------------------------------------------- static files and listing

TRAVERSALS = [
    "../../../../etc/passwd",
    "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "..%2f..%2f..%2fetc%2fpasswd",
    "static/index.js",
    "index.js/../secret.txt",
    "..%2fsecret.txt",
    "/secret.txt",
    "//etc/passwd",
    "index.js%00.css",
    "plugin.py",
    "INDEX.JS",
    "index.html",
    "..\\secret.txt",
]


def test_static_bundle_is_served_with_its_content_type(served):
    client, static_dir = served[0], served[1]
    with open(os.path.join(static_dir, "index.js"), "w", encoding="utf-8") as f:
        f.write("export function render() {}\n")
    with open(os.path.join(static_dir, "index.css"), "w", encoding="utf-8") as f:
        f.write("body { margin: 0 }\n")
    try:
        js = client.get(PREFIX + "index.js")
        assert js.status_code == 200
        assert js.headers["Content-Type"].split(";")[0] == "text/javascript"
        assert js.get_data(as_text=True) == "export function render() {}\n"
        css = client.get(PREFIX + "index.css")
        assert css.status_code == 200
        assert css.headers["Content-Type"].split(";")[0] == "text/css"
    finally:
        os.remove(os.path.join(static_dir, "index.js"))
        os.remove(os.path.join(static_dir, "index.css"))
    missing = client.get(PREFIX + "index.js")
    assert missing.status_code == 404
    assert "not built" in missing.get_data(as_text=True)


@pytest.mark.parametrize("path", TRAVERSALS)
def test_static_paths_outside_the_fixed_set_are_404(served, path):
    client, static_dir = served[0], served[1]
    secret = os.path.join(os.path.dirname(static_dir), "secret.txt")
    with open(secret, "w", encoding="utf-8") as f:
        f.write("SECRET-MARKER")
    response = client.get(PREFIX + path)
    assert response.status_code == 404
    assert b"SECRET-MARKER" not in response.get_data()
    assert b"root:" not in response.get_data()


def test_plugins_listing_points_at_the_module(served):
    client = served[0]
    listing = json.loads(client.get("/data/plugins_listing").get_data())
    entry = listing[metadata.PLUGIN_NAME]
    assert entry["enabled"] is True
    assert entry["tab_name"] == "Layer Dynamics"
    assert entry["loading_mechanism"] == {
        "type": "IFRAME", "module_path": PREFIX + "index.js"}


def test_tab_is_inactive_without_layer_dynamics(tmp_path):
    write_layer_metrics(
        str(tmp_path / "run"), make_layout(["a"]), [], [],
        extra_summaries=[(0, _foreign_summary("loss", "other_plugin", b"", 1.0))],
    )
    flags = parse_flags(
        ["--logdir", str(tmp_path), "--reload_interval", "0", "--reload_task", "blocking"])
    ingester = data_ingester.LocalDataIngester(flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(flags, [LayerDynamicsLoader()], ingester.data_provider)
    client = werkzeug_test.Client(app)
    assert json.loads(client.get("/data/plugins_listing").get_data())[metadata.PLUGIN_NAME][
        "enabled"] is False
    assert _json(_get(client, "runs")) == {"runs": [], "loading": False}


def test_entry_point_names_the_loader():
    from importlib import metadata as importlib_metadata

    found = [ep for ep in importlib_metadata.entry_points(group="tensorboard_plugins")
             if ep.name == metadata.PLUGIN_NAME]
    assert [ep.load() for ep in found] == [LayerDynamicsLoader]


def test_plugin_modules_do_not_import_torch():
    code = (
        "import pkgutil, importlib, sys, tb_layerdyn.plugin as p\n"
        "names = [m.name for m in pkgutil.iter_modules(p.__path__)]\n"
        "for n in names: importlib.import_module('tb_layerdyn.plugin.' + n)\n"
        "assert 'plugin' in names and 'loader' in names, names\n"
        "print('torch' in sys.modules)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- pure pieces


def test_json_numbers_read_back_as_the_float32_they_came_from():
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**31 - 1, 20000, dtype=np.int64).astype(np.uint32).view(np.float32)
    special = np.array([0.0, -0.0, 1.0, 10.0, 1e-45, 3.4028235e38, 9.9999999e-5, -2.5], np.float32)
    values = np.concatenate([bits[np.isfinite(bits)], -bits[np.isfinite(bits)], special])
    grid = np.stack([values, values[::-1]])
    grid[0, :3] = [np.nan, np.inf, -np.inf]
    parsed = json.loads(json_numbers.float_rows(grid))
    assert parsed[0][:3] == [None, None, None]
    for row, want in zip(parsed, grid):
        got = np.array([np.nan if v is None else v for v in row], dtype=np.float64)
        expected = np.where(np.isfinite(want), want, np.nan)
        assert np.array_equal(got.astype(np.float32), expected, equal_nan=True)
    assert json.loads(json_numbers.float_rows(np.zeros((2, 0)))) == [[], []]
    assert json_numbers.float_rows(np.zeros((0, 4))) == "[]"


def test_envelope_keeps_a_one_step_spike_and_the_last_step():
    steps = np.arange(1000)
    values = np.zeros((1000, 1))
    values[537, 0] = 9.0
    values[999, 0] = -1.0
    out_steps, out_values, downsampled = downsample.envelope(steps, values, 10)
    assert downsampled and out_steps[-1] == 999
    assert out_values[:, 0].max() == 9.0 and out_values[-1, 0] == -1.0


# ---------------------------------------------------------------- written by the logging API


def test_routes_serve_what_log_layer_dynamics_wrote(tmp_path):
    torch = pytest.importorskip("torch")
    from tb_layerdyn import log_layer_dynamics

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "run"))
    snapshots = []
    for step in range(6):
        loss = model(torch.randn(16, 4)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        log_layer_dynamics(writer, model, step, histogram_every=None)
        snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})
    writer.close()
    flags = parse_flags(["--logdir", str(tmp_path), "--reload_interval", "0", "--reload_task", "blocking"])
    ingester = data_ingester.LocalDataIngester(flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(flags, [LayerDynamicsLoader()], ingester.data_provider)
    client = werkzeug_test.Client(app)
    _wait_for(client, {"run": 5}, timeout=5.0)
    body = _json(_get(client, "series", run="run", metric="rwc"))
    assert body["names"] == ["0", "2"]
    assert body["columns"][0] == list(range(6))

    def l1_change(layer, t):
        now = sum((snapshots[t][k] - snapshots[t - 1][k]).abs().sum().item()
                  for k in snapshots[t] if k.startswith(layer + "."))
        before = sum(snapshots[t - 1][k].abs().sum().item()
                     for k in snapshots[t] if k.startswith(layer + "."))
        return now / before

    for i, layer in enumerate(["0", "2"]):
        column = body["columns"][i + 1]
        assert column[0] is None
        for t in range(1, 6):
            assert column[t] == pytest.approx(l1_change(layer, t), rel=1e-4)
