"""The one reading path: the collector's rules, the on-disk store, its pyramid and its range queries.

Everything is checked against brute force over the rows as written: every pyramid node at every
level, envelopes and bin means of random ranges, the latest defined values. Appended data must be
read from where the last read stopped; TensorBoard's own Rust data server is the reference for
what a run holds when steps go back or two files overlap.
"""

import json
import logging
import os
import time
import warnings

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import picture_logdir
import tb_layerdyn
from conftest import make_layout, random_values, write_layer_metrics
from tb_layerdyn.format import envelope, layer_metrics, pictures
from tb_layerdyn.plugin import in_process
from tb_layerdyn.reading import collector, columns, models, pyramid
from tb_layerdyn.reading import store as store_module
from tb_layerdyn.reading.store import Store


def _store(logdir, tmp_path):
    store = Store(str(logdir), str(tmp_path / "cache"))
    store.refresh()
    return store


def _events(run_dir, layout, steps, values, *, metadata=True, start_wall=1000.0):
    """Appends one event file with the given calls (``values`` per call), as the tracker writes."""
    os.makedirs(run_dir, exist_ok=True)
    writer = EventFileWriter(str(run_dir))
    for i, (step, value) in enumerate(zip(steps, values)):
        pb = layer_metrics.summary(value, layout, with_metadata=metadata and i == 0)
        writer.add_event(event_pb2.Event(step=int(step), wall_time=start_wall + i, summary=pb))
    writer.close()


# ---------------------------------------------------------------- the pyramid


def _brute_node(rows):
    """min, max, mean, count and min-first of one node's rows of one series."""
    defined = [(i, v) for i, v in enumerate(rows) if not np.isnan(v)]
    if not defined:
        return np.nan, np.nan, np.nan, 0, None
    low = min(defined, key=lambda iv: (iv[1], iv[0]))
    high = max(defined, key=lambda iv: (iv[1], -iv[0]))
    mean = sum(v for _, v in defined) / len(defined)
    return low[1], high[1], mean, len(defined), low[0] <= high[0]


def test_every_node_of_every_level_is_its_rows_brute_force(tmp_path):
    rng = np.random.default_rng(0)
    layout = make_layout(["a", "b", "c"], metrics=["rwc", "grad_norm"])
    num = 16 * 37 + 11  # a partial node at the end of every level
    values = random_values(rng, num, layout, nan_fraction=0.3)
    values[:, 0, 2] = np.round(values[:, 0, 2] * 2) / 2  # many ties: the first extreme decides
    values[40:200, :, 1] = np.nan  # whole nodes without a defined value
    values[200:420, 1, 0] = 0.5  # nodes of one value: minimum and maximum are one row
    # Written in uneven pieces, so nodes are completed across refreshes.
    cuts = [0, 5, 16, 300, 301, 590, num]
    store = Store(str(tmp_path / "logdir"), str(tmp_path / "cache"))
    for lo, hi in zip(cuts, cuts[1:]):
        _events(tmp_path / "logdir" / "run", layout, range(lo, hi), values[lo:hi], metadata=lo == 0)
        store.refresh()
    run = store.run("run")
    [tag_id] = run.metric_tags()
    files = run.tag_files(tag_id)
    assert run.rows[tag_id] == num
    for m in range(2):
        for level in range(columns.levels_for(num)):
            size = pyramid.node_size(level)
            nodes = columns.read_nodes(files.level(m, level), 3, 0, num // size + 5)
            assert len(nodes) == num // size
            for j in range(len(nodes)):
                for c in range(3):
                    low, high, mean, count, min_first = _brute_node(values[j * size : (j + 1) * size, m, c])
                    node = nodes[j, c]
                    assert node["count"] == count
                    if count == 0:
                        assert np.isnan(node["min"]) and np.isnan(node["max"]) and np.isnan(node["mean"])
                        continue
                    assert (node["min"], node["max"]) == (low, high)
                    assert bool(node["min_first"]) == min_first, (level, j, c)
                    assert node["mean"] == pytest.approx(mean, rel=1e-6)


# ---------------------------------------------------------------- range queries


def _written_table(parts):
    """``(steps, {metric: steps x layers}, layers)`` of a run written as ``[(layout, steps,
    values)]`` parts that follow one another, merged by layer name (newest order)."""
    layers = models.merge_order([p[0]["layers"] for p in parts])
    steps = np.concatenate([np.asarray(p[1]) for p in parts])
    tables = {}
    row = 0
    for layout, part_steps, values in parts:
        for m, metric in enumerate(layout["metrics"]):
            table = tables.setdefault(metric, np.full((len(steps), len(layers)), np.nan, np.float32))
            for c, name in enumerate(layout["layers"]):
                table[row : row + len(part_steps), layers.index(name)] = values[:, m, c]
        row += len(part_steps)
    return steps, tables, layers


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    """A run of 20,000 steps over two layouts (the registration order at step 0, then the forward
    order), logged every other step, with NaN gaps; and its store."""
    tmp_path = tmp_path_factory.mktemp("long")
    rng = np.random.default_rng(1)
    first = make_layout(["x", "y", "z"], metrics=["rwc", "weight_norm"], order="registration")
    later = make_layout(["z", "y", "x", "w"], metrics=["rwc", "weight_norm"])
    parts = [
        (first, np.array([0]), random_values(rng, 1, first)),
        (later, np.arange(1, 20000) * 2, random_values(rng, 19999, later, nan_fraction=0.05)),
    ]
    parts[1][2][5000:5200, :, 1] = np.nan
    for layout, steps, values in parts:
        write_layer_metrics(str(tmp_path / "logdir" / "run"), layout, steps, values)
    store = _store(tmp_path / "logdir", tmp_path)
    table = models.model_tables(store.run("run"))[None]
    return table, _written_table(parts)


def _check_bins(found, steps, rows):
    """Every bin of a downsampled answer holds exactly its rows' extremes; a point that stands
    for itself is the logged value at its step."""
    for lo, hi in np.unique(found.bounds, axis=0):
        inside = (steps >= lo) & (steps <= hi)
        points = (found.bounds[:, 0] == lo) & (found.bounds[:, 1] == hi)
        assert inside.any()
        for c in range(rows.shape[1]):
            defined = rows[inside, c][~np.isnan(rows[inside, c])]
            shown = found.values[points, c]
            if defined.size == 0:
                assert np.isnan(shown).all()
            else:
                assert np.nanmin(shown) == defined.min() and np.nanmax(shown) == defined.max()
                if len(shown) == 2 and defined.min() != defined.max():
                    # The two points in the order the extremes first occurred.
                    column = rows[inside, c]
                    low_first = np.flatnonzero(column == defined.min())[0] < np.flatnonzero(column == defined.max())[0]
                    assert shown[0] == (defined.min() if low_first else defined.max())


def test_random_ranges_are_exact_rows_or_exact_envelopes(long_run):
    table, (steps, written, layers) = long_run
    assert table.layers == layers == ["z", "y", "x", "w"]
    rng = np.random.default_rng(2)
    ranges = [(None, None, 1000), (None, None, 7), (0, 0, 5), (3, 3, 5), (39000, None, 3000)]
    for _ in range(40):
        lo, hi = sorted(rng.integers(0, 40000, size=2).tolist())
        ranges.append((lo, hi, int(rng.integers(1, 1500))))
    for lo, hi, bins in ranges:
        found = table.series("rwc", "layers", bins, lo, hi)
        mask = (steps >= (lo if lo is not None else -1)) & (steps <= (hi if hi is not None else 10**9))
        rows = written["rwc"][mask]
        if mask.sum() <= 2 * bins:
            assert not found.downsampled
            np.testing.assert_array_equal(found.steps, steps[mask])
            np.testing.assert_array_equal(found.values, rows)
            continue
        assert found.downsampled
        assert len(found.steps) <= 2 * bins
        assert found.steps[0] == steps[mask][0] and found.steps[-1] == steps[mask][-1]
        assert np.all(np.diff(found.steps) >= 0)
        _check_bins(found, steps[mask], rows)


def test_an_envelope_read_in_chunks_is_the_envelope_read_at_once(long_run, monkeypatch):
    # Ranges of 2 to 8 times the bins in rows are summarised from the rows themselves, read a
    # chunk of bins at a time; any chunk size gives the points of the whole range at once.
    table, _ = long_run
    rng = np.random.default_rng(12)
    ranges = []
    for _ in range(25):
        bins = int(rng.integers(3, 120))
        rows = int(rng.integers(2 * bins + 1, pyramid.BASE * bins // 2 + 1))
        lo = int(rng.integers(0, 40000 - 2 * rows)) // 2 * 2
        ranges.append((lo, lo + 2 * (rows - 1), bins))
    ranges.append((None, 3998, 400))  # across the two layouts: one chunked envelope per segment
    answers = {}
    for chunk_bytes in (1 << 40, 1, 100, 4096):
        monkeypatch.setattr(models, "_ENVELOPE_CHUNK_BYTES", chunk_bytes)
        answers[chunk_bytes] = [table.series("rwc", "layers", bins, lo, hi) for lo, hi, bins in ranges]
    whole = answers.pop(1 << 40)
    for found in whole:
        assert found.downsampled
    for chunked in answers.values():
        for a, b in zip(whole, chunked):
            np.testing.assert_array_equal(a.steps, b.steps)
            np.testing.assert_array_equal(a.values, b.values)
            np.testing.assert_array_equal(a.bounds, b.bounds)
    # And the whole range at once is downsample.envelope of the rows, point for point.
    tag = table._tags[-1]
    m = tag.layout.metrics.index("rwc")
    src, _ = models._columns(tag.layout, table.names("layers"), "layers")
    for lo, hi, bins in ranges[:-1]:
        first, stop = int(tag.steps.searchsorted(lo)), int(tag.steps.searchsorted(hi, side="right"))
        want = models._envelope_rows(tag.steps[first:stop], models._raw(tag, m, src, first, stop), bins)
        got = models._envelope_read_in_chunks(tag, m, src, first, stop, bins)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(w, g)


def test_random_ranges_of_bin_means(long_run):
    table, (steps, written, _) = long_run
    rng = np.random.default_rng(3)
    for _ in range(25):
        lo, hi = sorted(rng.integers(0, 40000, size=2).tolist())
        bins = int(rng.integers(1, 800))
        found = table.heatmap("weight_norm", "layers", bins, lo, hi)
        mask = (steps >= lo) & (steps <= hi)
        rows = written["weight_norm"][mask]
        assert len(found.steps) <= bins
        for (first, last), cells in zip(found.bounds, found.values):
            inside = (steps[mask] >= first) & (steps[mask] <= last)
            # A column with no defined value in a bin has a NaN mean (numpy warns of it).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = np.nanmean(np.where(inside[:, None], rows, np.nan), axis=0)
            np.testing.assert_allclose(cells, want, rtol=1e-5)


def test_latest_defined_value_per_series(long_run):
    table, (steps, written, _) = long_run
    got = table.latest("weight_norm", "layers")
    for c in range(written["weight_norm"].shape[1]):
        column = written["weight_norm"][:, c]
        defined = np.flatnonzero(~np.isnan(column))
        assert got[c] == column[defined[-1]]


def test_whole_table_is_the_merge_of_its_layouts(long_run):
    table, (steps, written, _) = long_run
    merged = table.table("rwc", "layers")
    np.testing.assert_array_equal(merged.steps, steps)
    np.testing.assert_array_equal(merged.values, written["rwc"])


# ---------------------------------------------------------------- incremental reading


def test_appended_data_is_read_and_nothing_is_parsed_twice(tmp_path, monkeypatch):
    fed = []
    original = collector.Collector.feed

    def counting(self, buffer, starts, lengths, file_index, base):
        fed.extend(base + s for s in starts.tolist())
        return original(self, buffer, starts, lengths, file_index, base)

    monkeypatch.setattr(collector.Collector, "feed", counting)
    rng = np.random.default_rng(4)
    layout = make_layout(["a", "b"], metrics=["rwc"])
    run_dir = tmp_path / "logdir" / "run"
    os.makedirs(run_dir)
    writer = EventFileWriter(str(run_dir))
    values = random_values(rng, 300, layout)
    store = Store(str(tmp_path / "logdir"), str(tmp_path / "cache"))
    for lo, hi in ((0, 100), (100, 101), (101, 300)):
        for i in range(lo, hi):
            pb = layer_metrics.summary(values[i], layout, with_metadata=i == 0)
            writer.add_event(event_pb2.Event(step=i, wall_time=float(i), summary=pb))
        writer.flush()
        store.refresh()
        got = models.model_tables(store.run("run"))[None].table("rwc", "layers")
        np.testing.assert_array_equal(got.steps, np.arange(hi))
        np.testing.assert_array_equal(got.values, values[:hi, 0])
    writer.close()
    store.refresh()
    # The file-version event plus 300 calls, each record decoded exactly once.
    assert len(fed) == len(set(fed)) == 301


def test_a_record_cut_short_is_read_once_it_is_whole(tmp_path):
    rng = np.random.default_rng(5)
    layout = make_layout(["a"], metrics=["rwc"])
    path = write_layer_metrics(str(tmp_path / "logdir" / "run"), layout, range(10), random_values(rng, 10, layout))
    whole = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(whole[:-7])
    store = _store(tmp_path / "logdir", tmp_path)
    assert models.model_tables(store.run("run"))[None].last_step == 8
    with open(path, "ab") as f:
        f.write(whole[-7:])
    store.refresh()
    assert models.model_tables(store.run("run"))[None].last_step == 9


def test_a_replaced_file_is_read_again_from_the_start(tmp_path):
    rng = np.random.default_rng(6)
    layout = make_layout(["a"], metrics=["rwc"])
    run_dir = str(tmp_path / "logdir" / "run")
    path = write_layer_metrics(run_dir, layout, range(50), random_values(rng, 50, layout))
    store = _store(tmp_path / "logdir", tmp_path)
    assert models.model_tables(store.run("run"))[None].last_step == 49
    values = random_values(rng, 5, layout)
    os.remove(path)
    path = write_layer_metrics(run_dir, layout, range(100, 105), values)
    store.refresh()
    got = models.model_tables(store.run("run"))[None].table("rwc", "layers")
    np.testing.assert_array_equal(got.steps, np.arange(100, 105))
    np.testing.assert_array_equal(got.values, values[:, 0])


def test_a_state_held_across_a_rebuild_answers_and_is_not_served_again(tmp_path, monkeypatch):
    # A logdir deleted and written again under the same run names (the usual way to start over)
    # rebuilds each run; TensorBoard's threads may still hold tables of the previous state, whose
    # columns the rebuild removes while they answer. They answer without raising, from what is
    # left (nothing), and the next look at the run sees the new state, never the old one.
    rng = np.random.default_rng(7)
    layout = make_layout(["a", "b"], metrics=["rwc"])
    run_dir = str(tmp_path / "logdir" / "run")
    path = write_layer_metrics(run_dir, layout, range(0, 400, 2), random_values(rng, 200, layout))
    store = _store(tmp_path / "logdir", tmp_path)
    held = models.model_tables(store.run("run"))[None]
    os.remove(path)
    values = random_values(rng, 5, layout)
    write_layer_metrics(run_dir, layout, range(100, 105), values)
    # What a reader looking at the run sees while the old state's columns are removed.
    seen_while_removing = []
    rmtree = store_module.shutil.rmtree

    def watched_rmtree(path, *args, **kwargs):
        seen_while_removing.append(models.model_tables(store.run("run")))
        rmtree(path, *args, **kwargs)

    monkeypatch.setattr(store_module.shutil, "rmtree", watched_rmtree)
    store.refresh()
    assert seen_while_removing == [{}]
    for start, end in ((None, None), (10, 300), (500, 600)):
        for found in (
            held.series("rwc", "layers", 40, start, end),
            held.heatmap("rwc", "layers", 40, start, end),
            held.table("rwc", "layers", start, end),
        ):
            assert found.values.shape == (len(found.steps), 2)
            assert np.isnan(found.values).all()
    assert np.isnan(held.latest("rwc", "layers")).all()
    got = models.model_tables(store.run("run"))[None].table("rwc", "layers")
    np.testing.assert_array_equal(got.steps, np.arange(100, 105))
    np.testing.assert_array_equal(got.values, values[:, 0])


def _cached_runs(store):
    """The runs the store's directory holds data of (their manifests)."""
    names = []
    for entry in sorted(os.listdir(store.root)):
        manifest = os.path.join(store.root, entry, "run.json")
        if os.path.exists(manifest):
            with open(manifest) as f:
                names.append(json.load(f)["run"])
    return sorted(names)


def _disk_bytes(directory):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(directory) for f in fs)


def test_a_deleted_run_leaves_nothing_in_the_cache(tmp_path):
    rng = np.random.default_rng(8)
    layout = make_layout(["a", "b"], metrics=["rwc"])
    logdir = tmp_path / "logdir"
    kept_values = random_values(rng, 30, layout)
    for run in ("gone/seed0", "kept", "gone/seed1"):
        values = kept_values if run == "kept" else random_values(rng, 30, layout)
        write_layer_metrics(str(logdir / run), layout, range(30), values)
    store = _store(logdir, tmp_path)
    assert _cached_runs(store) == ["gone/seed0", "gone/seed1", "kept"]
    held = models.model_tables(store.run("gone/seed0"))[None]
    import shutil

    shutil.rmtree(logdir / "gone")
    store.refresh()
    assert _cached_runs(store) == ["kept"]
    # Each removed run leaves an empty directory and its lock file: no bytes.
    assert sum(_disk_bytes(os.path.join(store.root, e)) for e in os.listdir(store.root)
               if os.path.isdir(os.path.join(store.root, e))) == _disk_bytes(
                   os.path.join(store.root, store_module._digest("kept")))
    assert store.run("gone/seed0") is None
    assert held.table("rwc", "layers").steps.size == 0
    got = models.model_tables(store.run("kept"))[None].table("rwc", "layers")
    np.testing.assert_array_equal(got.values, kept_values[:, 0])
    # Written again under the same name, the run is read from its new files.
    values = random_values(rng, 4, layout)
    write_layer_metrics(str(logdir / "gone" / "seed0"), layout, range(4), values)
    store.refresh()
    np.testing.assert_array_equal(
        models.model_tables(store.run("gone/seed0"))[None].table("rwc", "layers").values, values[:, 0]
    )


def test_a_gone_run_that_another_process_is_refreshing_is_left_for_later(tmp_path):
    import fcntl
    import shutil

    rng = np.random.default_rng(9)
    layout = make_layout(["a"], metrics=["rwc"])
    logdir = tmp_path / "logdir"
    for run in ("a", "b"):
        write_layer_metrics(str(logdir / run), layout, range(5), random_values(rng, 5, layout))
    store = _store(logdir, tmp_path)
    shutil.rmtree(logdir / "a")
    with open(os.path.join(store.root, store_module._digest("a"), "lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        store.refresh()
        assert _cached_runs(store) == ["a", "b"]
    store.refresh()
    assert _cached_runs(store) == ["b"]


def test_a_remote_logdir_keeps_what_it_read_of_runs_its_listing_misses(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    rng = np.random.default_rng(10)
    layout = make_layout(["a"], metrics=["rwc"])
    memory = fsspec.filesystem("memory")
    for run in ("a", "b"):
        path = write_layer_metrics(str(tmp_path / "local" / run), layout, range(5), random_values(rng, 5, layout))
        memory.pipe(f"/layerdyn-gone-test/{run}/{os.path.basename(path)}", open(path, "rb").read())
    try:
        store = _store("memory://layerdyn-gone-test", tmp_path)
        assert _cached_runs(store) == ["a", "b"]
        memory.rm("/layerdyn-gone-test/a", recursive=True)
        store.refresh()
        assert store.run_names() == ["b"]
        assert _cached_runs(store) == ["a", "b"]
    finally:
        memory.rm("/layerdyn-gone-test", recursive=True)


# ---------------------------------------------------------------- TensorBoard's rules


def _rust_tensors(logdir):
    """``{run: {tag: [(step, array)]}}`` as TensorBoard's Rust data server serves them."""
    from tensorboard import context

    ctx = context.RequestContext()
    with in_process.data_server(logdir, samples_per_plugin={envelope.PLUGIN_NAME: 0}) as provider:
        previous, deadline = None, time.monotonic() + 60
        while True:
            served = provider.read_tensors(
                ctx, experiment_id="", plugin_name=envelope.PLUGIN_NAME, downsample=10**6
            )
            counts = {r: {t: len(s) for t, s in tags.items()} for r, tags in served.items()}
            if counts and counts == previous:
                break
            assert time.monotonic() < deadline
            previous = counts
            time.sleep(0.5)
    return {
        run: {tag: [(d.step, d.numpy) for d in data] for tag, data in tags.items()}
        for run, tags in served.items()
    }


def test_steps_that_go_back_and_overlapping_files_read_as_tensorboard_serves_them(tmp_path):
    """A resumed run (steps go back), a repeated step, and a second file over the same steps: the
    run read holds what the Rust data server holds."""
    rng = np.random.default_rng(7)
    layout = make_layout(["a", "b"], metrics=["rwc", "weight_norm"])
    run_dir = str(tmp_path / "logdir" / "run")
    values = random_values(rng, 60, layout)
    _events(run_dir, layout, [0, 1, 2, 3, 4, 5, 6, 7, 3, 4, 4], values[:11], start_wall=1.0)
    time.sleep(1.1)  # a later file name (TensorBoard names files by the second they open)
    _events(run_dir, layout, [2, 3, 9], values[11:14], start_wall=50.0)
    _events(str(tmp_path / "logdir" / "other"), layout, range(5), values[20:25])

    runs = tb_layerdyn.read(str(tmp_path / "logdir"), cache_dir=str(tmp_path / "cache"))
    served = _rust_tensors(tmp_path / "logdir")
    assert set(runs) == set(served) == {"run", "other"}
    for name, run in runs.items():
        [series] = served[name].values()
        np.testing.assert_array_equal(run.steps, [step for step, _ in series])
        stacked = np.stack([array for _, array in series])
        for m, metric in enumerate(layout["metrics"]):
            np.testing.assert_array_equal(run.metrics[metric], stacked[:, m, :2])
    np.testing.assert_array_equal(runs["run"].steps, [0, 1, 2, 3, 9])


# ---------------------------------------------------------------- malformed payloads


def _value(tag, array, content=None, plugin=envelope.PLUGIN_NAME, dtype=None):
    from tensorboard.util import tensor_util

    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor_util.make_tensor_proto(
        np.asarray(array, dtype=dtype or np.float32)))
    if content is not None:
        value.metadata.plugin_data.plugin_name = plugin
        value.metadata.plugin_data.content = content if isinstance(content, bytes) else content.encode()
        value.metadata.data_class = summary_pb2.DATA_CLASS_TENSOR
    return value


def _content(layout, **changes):
    import json

    body = dict(layout, kind=layer_metrics.KIND, version=layer_metrics.VERSION)
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not Ellipsis})


GOOD = make_layout(
    ["a", "b"], metrics=["rwc", "weight_norm"], groups=[{"name": "g", "kind": "user", "members": ["a", "b"]}]
)
TAG = layer_metrics.TAG_PREFIX + "bad"
ZEROS = np.zeros((2, 3), np.float32)

def _bad_picture(facts=None, **layout_changes):
    """A pictures value whose facts, or whose layout, break the payload's rules."""
    good = picture_logdir.content("weights", ["a"], [[2, 2]])
    value = picture_logdir.summary(good, [[np.eye(2)]], with_metadata=True).value[0]
    if facts is not None:
        value.tensor.string_val[0] = facts
    if layout_changes:
        value.metadata.CopyFrom(pictures.metadata(dict(good, **layout_changes)))
    return value


# name -> (values of the bad tag's first event, what its warning says)
MALFORMED = {
    "group without a name": (
        [_value(TAG, ZEROS, _content(GOOD, groups=[{"kind": "user", "members": ["a"]}]))], "no name"),
    "group of unknown layers": (
        [_value(TAG, ZEROS, _content(GOOD, groups=[{"name": "g", "members": ["q"]}]))], "unknown layers"),
    "no metrics": ([_value(TAG, ZEROS, _content(GOOD, metrics=...))], "'metrics'"),
    "layers not a list": ([_value(TAG, ZEROS, _content(GOOD, layers="ab"))], "'layers'"),
    "param_counts shorter than layers": (
        [_value(TAG, ZEROS, _content(GOOD, param_counts=[1]))], "'param_counts'"),
    "wrong dtype": ([_value(TAG, ZEROS, _content(GOOD), dtype=np.float64)], "float32"),
    "wrong shape": ([_value(TAG, np.zeros((3, 3)), _content(GOOD))], "shape"),
    "newer version": ([_value(TAG, ZEROS, _content(GOOD, version=layer_metrics.VERSION + 1))], "upgrade"),
    "another plugin's tensor under this plugin's tag": (
        [_value(TAG, ZEROS, b"", plugin="images")], "'images'"),
    "content not JSON": ([_value(TAG, ZEROS, b"\xff{")], "not JSON"),
    "content a JSON list": ([_value(TAG, ZEROS, b"[1, 2]")], "list"),
    "no metadata on its first event": ([_value(TAG, ZEROS)], "no metadata"),
    "packed calls without their steps": (
        [_value(TAG, np.zeros((2, 2, 3)), _content(GOOD))], "without their steps"),
    "packed steps that go back": (
        [_value(TAG, np.zeros((2, 2, 3)), _content(GOOD)),
         _value(TAG + layer_metrics.STEPS_SUFFIX, np.array([5, 4]), dtype=np.int64)], "ascending"),
    "an unknown payload kind": (
        [_value(envelope.TAG_PREFIX + "sketch/x", ZEROS, b'{"kind": "sketch", "version": 1}')], "upgrade"),
    "a sweep of another shape than its layout": (
        [_value("layer_dynamics/sweep/model/bad", np.zeros((2, 2, 2)),
                '{"kind": "sweep", "version": 1, "scope": "model", "metrics": ["loss"], '
                '"curves": ["model"], "alphas": [0.0, 1.0, 0.5]}')], "shape"),
    "a picture whose facts are not JSON": ([_bad_picture(facts=b"{nope")], "not JSON"),
    "a picture of another size than its layout says": (
        [_bad_picture(shapes=[[2, 3]], tiles=[[2, 3]])], "the layout says 2x3"),
    "a pictures layout whose tile does not divide its picture": (
        [_bad_picture(tiles=[[3, 3]])], "does not divide"),
    "a sweep layout without curves": (
        [_value("layer_dynamics/sweep/model/bad", np.zeros((2, 1, 2)),
                '{"kind": "sweep", "version": 1, "scope": "model", "metrics": ["loss"], "alphas": [0.0]}')],
        "'curves'"),
}


@pytest.fixture(scope="module")
def malformed_logdir(tmp_path_factory):
    """One run per malformed case, each beside a good tag; a good run; another plugin's run."""
    logdir = tmp_path_factory.mktemp("malformed")
    rng = np.random.default_rng(8)
    good_values = random_values(rng, 4, GOOD)
    for index, (bad, _) in enumerate(MALFORMED.values()):
        writer = EventFileWriter(str(logdir / f"case{index}"))
        for step in range(4):
            summary = layer_metrics.summary(good_values[step], GOOD, with_metadata=step == 0)
            if step == 1:  # the bad event between good ones
                summary.value.extend(bad)
            writer.add_event(event_pb2.Event(step=step, wall_time=float(step), summary=summary))
        writer.close()
    write_layer_metrics(str(logdir / "good"), GOOD, range(4), good_values)
    other = EventFileWriter(str(logdir / "scalars_only"))
    other_value = _value("loss", np.float32(1.0), b"", plugin="scalars")
    other.add_event(event_pb2.Event(step=0, wall_time=1.0, summary=summary_pb2.Summary(value=[other_value])))
    other.close()
    return logdir, good_values


def test_each_malformed_payload_is_skipped_with_one_warning(malformed_logdir, tmp_path, caplog):
    logdir, good_values = malformed_logdir
    with caplog.at_level(logging.WARNING):
        runs = tb_layerdyn.read(str(logdir), cache_dir=str(tmp_path / "cache"))
    assert sorted(runs) == sorted([f"case{i}" for i in range(len(MALFORMED))] + ["good"])
    for index, (name, (bad, says)) in enumerate(MALFORMED.items()):
        run = runs[f"case{index}"]
        assert run.layers == ["a", "b"], name
        np.testing.assert_array_equal(run.metrics["rwc"], good_values[:, 0, :2], err_msg=name)
        warnings = [r.getMessage() for r in caplog.records if f"'case{index}'" in r.getMessage()]
        assert len(warnings) == 1, (name, warnings)
        assert says in warnings[0] and bad[0].tag in warnings[0], (name, warnings)
    assert not [r for r in caplog.records if "'good'" in r.getMessage() or "scalars_only" in r.getMessage()]


def test_malformed_payloads_never_make_a_route_fail(malformed_logdir):
    from conftest import tensorboard_client

    logdir, good_values = malformed_logdir
    with tensorboard_client(str(logdir), "python") as client:
        body = client.get("/data/plugin/layer_dynamics/runs")
        assert body.status_code == 200
        import json

        listed = {entry["run"] for entry in json.loads(body.get_data())["runs"]}
        assert listed == {f"case{i}" for i in range(len(MALFORMED))} | {"good"}
        for run in listed:
            for route in ("series?metric=rwc&", "series?metric=rwc&format=binary&",
                          "heatmap?metric=weight_norm&", "summary?", "sweeps?", "pictures?"):
                response = client.get(f"/data/plugin/layer_dynamics/{route}run={run}")
                assert response.status_code == 200, (run, route, response.get_data(as_text=True))
            series = json.loads(client.get(f"/data/plugin/layer_dynamics/series?run={run}&metric=rwc").get_data())
            assert series["columns"][0] == [0, 1, 2, 3]


# ---------------------------------------------------------------- one path for read() and the tab


def _plugin_tables(client, run, metric, target):
    import json

    body = json.loads(client.get(
        f"/data/plugin/layer_dynamics/series?run={run}&metric={metric}&target={target}&max_points=100000"
    ).get_data())
    assert body["downsampled"] is False
    values = np.array([[np.nan if v is None else v for v in col] for col in body["columns"][1:]], np.float32)
    return body["names"], np.array(body["columns"][0]), values.T.reshape(len(body["columns"][0]), -1)


def _two_layout_logdir(root):
    rng = np.random.default_rng(9)
    groups = [{"name": "early", "kind": "user", "members": ["a", "b"]}]
    first = make_layout(["b", "a"], metrics=["rwc", "grad_norm"], order="registration", groups=groups)
    later = make_layout(["a", "b", "c"], metrics=["rwc", "grad_norm"], groups=groups)
    write_layer_metrics(str(root / "exp" / "seed0"), first, [0], random_values(rng, 1, first))
    write_layer_metrics(str(root / "exp" / "seed0"), later, range(1, 700), random_values(rng, 699, later, 0.1))
    write_layer_metrics(str(root / "solo"), later, range(0, 900, 3), random_values(rng, 300, later))


@pytest.mark.parametrize("loader", ["python", "rust"])
def test_read_and_the_plugin_give_the_same_tables(tmp_path, loader):
    from conftest import tensorboard_client

    _two_layout_logdir(tmp_path / "logdir")
    runs = tb_layerdyn.read(str(tmp_path / "logdir"))
    with tensorboard_client(str(tmp_path / "logdir"), loader) as client:
        for name, run in runs.items():
            for metric in run.metrics:
                for target, names, table in (
                    ("layers", run.layers, run.metrics[metric]),
                    ("groups", list(run.groups), run.group_metrics[metric]),
                ):
                    got_names, got_steps, got_values = _plugin_tables(client, name, metric, target)
                    assert got_names == names
                    np.testing.assert_array_equal(got_steps, run.steps)
                    np.testing.assert_array_equal(got_values, table)


def test_a_remote_fsspec_logdir_reads_and_serves_like_a_local_one(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    from conftest import tensorboard_client

    local = tmp_path / "logdir"
    _two_layout_logdir(local)
    memory = fsspec.filesystem("memory")
    url = "memory://layerdyn-test-logdir"
    for root, _, names in os.walk(local):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), local)
            memory.pipe(f"/layerdyn-test-logdir/{relative}", open(os.path.join(root, name), "rb").read())
    try:
        want = tb_layerdyn.read(str(local))
        got = tb_layerdyn.read(url)
        assert list(got) == list(want) == ["exp/seed0", "solo"]
        for name in want:
            np.testing.assert_array_equal(got[name].steps, want[name].steps)
            for metric in want[name].metrics:
                np.testing.assert_array_equal(got[name].metrics[metric], want[name].metrics[metric])
        with tensorboard_client(url, "python") as client:
            import json

            listed = json.loads(client.get("/data/plugin/layer_dynamics/runs").get_data())["runs"]
            assert [e["run"] for e in listed] == ["exp/seed0", "solo"]
            names, steps, values = _plugin_tables(client, "solo", "rwc", "layers")
            np.testing.assert_array_equal(values, want["solo"].metrics["rwc"])
            # Data appended to the remote file appears at the next listing.
            [path] = [p for p in memory.find("/layerdyn-test-logdir/solo")]
            early = [{"name": "early", "kind": "user", "members": ["a", "b"]}]
            layout = make_layout(["a", "b", "c"], metrics=["rwc", "grad_norm"], groups=early)
            extra = tmp_path / "extra"
            write_layer_metrics(str(extra), layout, [5000], random_values(np.random.default_rng(1), 1, layout))
            [extra_file] = os.listdir(extra)
            appended = open(extra / extra_file, "rb").read()
            memory.pipe(path, memory.cat(path) + appended)
            listed = json.loads(client.get("/data/plugin/layer_dynamics/runs").get_data())["runs"]
            assert {e["run"]: e["last_step"] for e in listed}["solo"] == 5000
    finally:
        memory.rm("/layerdyn-test-logdir", recursive=True)


def test_small_pages_arrays_are_ordinary_writable_arrays_with_their_own_mapping():
    import mmap

    from tb_layerdyn.reading import columns

    big = columns.small_pages((1200, 1000), np.float32)  # 4.8 MB: its own 4 kB-page mapping
    assert big.shape == (1200, 1000) and big.dtype == np.float32 and big.flags.writeable
    root = big
    while isinstance(root, np.ndarray):
        root = root.base
    root = root.obj if isinstance(root, memoryview) else root
    assert big.flags.c_contiguous and isinstance(root, mmap.mmap)
    if os.path.exists("/proc/self/maps"):  # private, not shared memory, whose faults cost more
        address = big.ctypes.data
        with open("/proc/self/maps") as maps:
            [perms] = [
                line.split()[1] for line in maps
                if int(line.split("-")[0], 16) <= address < int(line.split()[0].split("-")[1], 16)
            ]
        assert perms == "rw-p"
    big[:] = np.arange(1000, dtype=np.float32)
    big[-1, -1] = np.nan
    assert big[7, 999] == 999 and np.isnan(big[-1, -1]) and np.isnan(big).sum() == 1
    small = columns.small_pages((3, 4), np.int64)  # below 4 MB: plain np.empty
    assert small.shape == (3, 4) and small.dtype == np.int64 and small.flags.owndata
    assert columns.small_pages(0, np.uint8).shape == (0,)


@pytest.mark.parametrize("first, stride, count", [(0, 1, 1000), (5, 3, 7), (-4, 10, 2), (2**40, 2**20, 50)])
def test_even_steps_answer_as_the_array_they_stand_for(first, stride, count):
    array = first + stride * np.arange(count, dtype=np.int64)
    even = models.EvenSteps.of(array)
    assert isinstance(even, models.EvenSteps) and len(even) == count and even.nbytes < 100
    np.testing.assert_array_equal(np.asarray(even), array)
    for index in (0, count - 1, -1, -count, count // 2):
        assert even[index] == array[index]
    parts = (slice(None), slice(1, None), slice(2, 5), slice(count - 2, count + 9), slice(0, 0), slice(None, None, 2))
    for part in parts:
        np.testing.assert_array_equal(even[part], array[part])
    picks = np.array([0, count - 1, count // 3, -1])
    np.testing.assert_array_equal(even[picks], array[picks])
    with pytest.raises(IndexError):
        even[count]
    with pytest.raises(IndexError):
        even[np.array([0, -count - 1])]
    probes = [first - stride - 1, first - 1, first, first + 1, first + stride * count // 2,
              first + stride * (count - 1), first + stride * count + 3, first + 0.5, 2**62]
    for value in probes:
        for side in ("left", "right"):
            assert even.searchsorted(value, side=side) == np.searchsorted(array, value, side=side), (value, side)


def test_uneven_steps_stay_an_array():
    for steps in ([3], [0, 1, 3], [0, 2, 2, 4], [5, 4, 3], []):
        array = np.asarray(steps, dtype=np.int64)
        assert models.EvenSteps.of(array) is array


def test_a_run_logged_at_even_steps_keeps_no_step_array(long_run):
    """The long run's later layout is logged every other step: after queries its table holds a
    few bytes of steps, not 8 bytes a step, and answers as before (the tests above)."""
    table, (steps, _, _) = long_run
    table.series("rwc", "layers", 100)
    table.series("rwc", "layers", 50, 1000, 30000)
    table.heatmap("rwc", "layers", 80)
    assert table.nbytes < 1000
    assert table.num_steps == len(steps)
    np.testing.assert_array_equal(table.steps, steps)
