"""Tests of the ``tb-layerdyn`` console script: ``export`` against ``read()`` value for value, and
``report`` against the reader's own functions on a logdir with known answers.

The script runs as installed (``pip install -e .`` puts ``tb-layerdyn`` on PATH), in a subprocess,
importing this checkout's package.
"""

import csv
import io
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter

import tb_layerdyn
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.format import sweeps as encoding
from tb_layerdyn.reading import export as exporting
from tb_layerdyn.reading import report as reporting
from tb_layerdyn.reading import streaming

from conftest import make_layout, write_layer_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYERS = ["conv1", "conv2", "fc1"]
STEPS = list(range(0, 100, 10))
METRICS = list(layer_metrics.METRIC_NAMES)
# Relative distance from init at the last step, per layer: conv2 moved least, then fc1.
DISTANCE_AT_END = [0.5, 0.125, 0.25]


def _script():
    path = shutil.which("tb-layerdyn")
    if path is None:
        pytest.fail("tb-layerdyn is not on PATH: install the package with pip install -e .")
    return path


def _run(*args, check=True):
    """Runs the console script; returns the finished process (stdout and stderr as text)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [_script(), *map(str, args)], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    if check and done.returncode != 0:
        pytest.fail(f"tb-layerdyn {' '.join(map(str, args))} exited {done.returncode}:\n{done.stderr}")
    return done


def _metrics_values(settle_at, rng, nan_at=()):
    """Values for ``make_layout(LAYERS)``: RWC of layer ``i`` 1 before ``settle_at[i]`` and 0.01
    from then on (NaN at step 0), relative distance ending at ``DISTANCE_AT_END``, the rest random
    with NaN at the ``(step index, layer)`` pairs of ``nan_at``."""
    values = rng.uniform(1e-3, 3.0, size=(len(STEPS), len(METRICS), len(LAYERS))).astype(np.float32)
    rwc, distance = METRICS.index("rwc"), METRICS.index("relative_distance_from_init")
    for i, at in enumerate(settle_at):
        values[:, rwc, i] = np.where(np.asarray(STEPS) < at, 1.0, 0.01)
    values[0, rwc, :] = np.nan
    values[-1, distance, :] = DISTANCE_AT_END
    for step, layer in nan_at:
        values[step, :, layer] = np.nan
    return values


def _robustness_pb(accuracy_when_reinitialized, end_accuracy=0.9):
    """A robustness table over ``LAYERS`` labelled on accuracy, threshold 0.02."""
    layout = encoding.robustness_layout(["loss", "accuracy"], LAYERS, 0.02, "accuracy")
    values = np.zeros(encoding.expected_shape(layout), dtype=np.float32)
    values[0, 0, :], values[0, 1, :] = 0.3, end_accuracy
    values[1, 0, :], values[1, 1, :] = 2.0, accuracy_when_reinitialized
    values[2] = values[1]
    return encoding.sweep_pb(values, layout)


@pytest.fixture(scope="module")
def logdir(tmp_path_factory):
    """Known answers:

    * ``net/seed0``: settles conv1 20, conv2 40, fc1 60 (rho +1); robustness tables at steps 40
      (every layer robust) and 90 (conv1 and fc1 robust, conv2 ambient);
    * ``net/seed1``: settles fc1 20, conv2 40, conv1 60 (rho -1); no robustness table;
    * ``pair``: two named models, ``a`` and ``b``, a NaN hole in ``a``;
    * ``sweeps_only``: a robustness table and no layer dynamics.
    """
    root = tmp_path_factory.mktemp("cli_logdir")
    rng = np.random.default_rng(12)
    layout = make_layout(LAYERS)
    write_layer_metrics(
        str(root / "net" / "seed0"), layout, STEPS, _metrics_values([20, 40, 60], rng),
        extra_summaries=[
            (40, _robustness_pb([0.1, 0.5, 0.2])),
            (90, _robustness_pb([0.1, 0.89, 0.3])),
        ],
    )
    write_layer_metrics(str(root / "net" / "seed1"), layout, STEPS, _metrics_values([60, 40, 20], rng))
    for model, settle in (("a", [30, 30, 30]), ("b", [90, 10, 50])):
        named = layer_metrics.layout(
            metrics=METRICS, layers=LAYERS, param_counts=[10, 20, 30], order="forward",
            granularity="layer", rwc="l1", groups=[], model=model,
        )
        holes = [(3, 1), (4, 1)] if model == "a" else []
        write_layer_metrics(str(root / "pair"), named, STEPS, _metrics_values(settle, rng, holes))
    os.makedirs(root / "sweeps_only")
    writer = EventFileWriter(str(root / "sweeps_only"))
    writer.add_event(event_pb2.Event(step=7, wall_time=1.0, summary=_robustness_pb([0.1, 0.1, 0.1])))
    writer.close()
    return root


def _reference_rows(runs):
    """The long table built from ``read()``'s arrays by plain loops: per run, metric, step, layer."""
    rows = []
    for run in runs.values():
        for metric, table in run.metrics.items():
            for i, step in enumerate(run.steps):
                for j, layer in enumerate(run.layers):
                    rows.append((run.name, run.model, int(step), layer, metric, float(table[i, j])))
    return rows


def _same(got, want):
    """Rows equal field by field; values exactly (NaN equal to NaN)."""
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[:5] == w[:5]
        assert (math.isnan(g[5]) and math.isnan(w[5])) or g[5] == w[5], (g, w)


def _csv_rows(text):
    reader = csv.reader(io.StringIO(text))
    assert next(reader) == list(exporting.COLUMNS)
    return [(r, m or None, int(s), layer, metric, float(v)) for r, m, s, layer, metric, v in reader]


def test_export_csv_is_reads_long_table_value_for_value(logdir, tmp_path):
    out = tmp_path / "table.csv"
    done = _run("export", logdir, "-o", out)
    runs = tb_layerdyn.read(str(logdir))
    want = _reference_rows(runs)
    got = _csv_rows(out.read_text(encoding="utf-8"))
    _same(got, want)
    assert f"wrote {len(want)} rows" in done.stderr
    # The named models and the hole are there; the run with sweeps only adds no rows.
    assert {(r[0], r[1]) for r in got} == {("net/seed0", None), ("net/seed1", None), ("pair", "a"), ("pair", "b")}
    assert any(r[1] == "a" and r[3] == "conv2" and math.isnan(r[5]) for r in got)
    # The same table on standard output, and as pandas reads it.
    _same(_csv_rows(_run("export", logdir, "--format", "csv").stdout), want)
    pd = pytest.importorskip("pandas")
    frame = pd.read_csv(out)
    expected = runs.to_dataframe()
    assert list(frame.columns) == list(expected.columns)
    np.testing.assert_array_equal(frame["value"].to_numpy(), expected["value"].to_numpy(np.float64))


def test_export_parquet_is_reads_long_table_value_for_value(logdir, tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as parquet

    out = tmp_path / "table.parquet"
    _run("export", logdir, "--format", "parquet", "-o", out)
    table = parquet.read_table(out)
    assert table.schema.names == list(exporting.COLUMNS)
    assert table.schema.field("value").type == pyarrow.float32()
    assert table.schema.field("step").type == pyarrow.int64()
    columns = table.to_pydict()
    got = list(zip(*(columns[c] for c in exporting.COLUMNS)))
    _same(got, _reference_rows(tb_layerdyn.read(str(logdir))))
    # The suffix names the format when --format does not.
    _run("export", logdir, "-o", tmp_path / "again.pq")
    again = parquet.read_table(tmp_path / "again.pq")
    assert again.schema == table.schema
    _same(list(zip(*(again.to_pydict()[c] for c in exporting.COLUMNS))), got)


def test_export_only_the_runs_and_metrics_asked_for(logdir, tmp_path):
    out = tmp_path / "some.csv"
    _run("export", logdir, "--runs", "seed1$|^pair", "--metrics", "rwc", "grad_norm", "-o", out)
    got = _csv_rows(out.read_text(encoding="utf-8"))
    want = _reference_rows(tb_layerdyn.read(str(logdir), runs="seed1$|^pair", metrics=["rwc", "grad_norm"]))
    _same(got, want)
    assert {r[0] for r in got} == {"net/seed1", "pair"} and {r[4] for r in got} == {"rwc", "grad_norm"}


def test_runs_read_in_batches_are_reads_runs(logdir):
    whole = tb_layerdyn.read(str(logdir))
    for batch in (1, 2, 100):
        pieces = list(streaming.iter_runs(str(logdir), batch=batch))
        assert [k for k, _ in pieces] == list(whole)
        for key, run in pieces:
            assert run.layers == whole[key].layers
            for metric, values in whole[key].metrics.items():
                np.testing.assert_array_equal(run.metrics[metric], values)
    assert [k for k, _ in streaming.iter_runs(str(logdir), runs=["pair"])] == ["pair \u00b7 a", "pair \u00b7 b"]


def test_export_errors_name_what_to_change(logdir, tmp_path, monkeypatch):
    bad_regex = _run("export", logdir, "--runs", "seed(", check=False)
    assert bad_regex.returncode == 2 and "--runs 'seed(' is not a valid regular expression" in bad_regex.stderr
    missing = _run("export", tmp_path / "nowhere", check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    unknown = _run("export", logdir, "--metrics", "rwcc", check=False)
    assert unknown.returncode == 2 and "invalid choice: 'rwcc'" in unknown.stderr
    to_stdout = _run("export", logdir, "--format", "parquet", check=False)
    assert to_stdout.returncode == 2 and "FILE.parquet" in to_stdout.stderr
    # Without pyarrow: the package to install and the format that needs nothing.
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match=r"pip install pyarrow.*--format csv"):
        exporting.export(str(logdir), str(tmp_path / "x.parquet"))
    assert not os.listdir(tmp_path)


def _report_blocks(text):
    """The report's paragraphs, split at blank lines: the head line -> the lines under it."""
    blocks = {}
    for paragraph in text.strip().split("\n\n"):
        head, *lines = paragraph.split("\n")
        blocks[head] = lines
    return blocks


def test_report_lines_are_the_readers_answers(logdir):
    done = _run("report", logdir)
    blocks = _report_blocks(done.stdout)
    assert list(blocks) == [
        "net/seed0 (3 layers, steps 0 to 90)",
        "net/seed1 (3 layers, steps 0 to 90)",
        "pair \u00b7 a (3 layers, steps 0 to 90)",
        "pair \u00b7 b (3 layers, steps 0 to 90)",
        "sweeps_only (no layer dynamics logged)",
        "seed groups: rho of depth and settling step across seeds",
    ]
    # The known answers, as written.
    assert blocks["net/seed0 (3 layers, steps 0 to 90)"] == [
        "  settling (rwc below 10% of its peak): conv1 20, conv2 40, fc1 60",
        "  depth vs settling step: rho = +1.00 (the layers near the input settle first)",
        "  robustness at step 90 (accuracy, threshold 0.02): robust conv1, fc1; ambient conv2",
        "  moved least (relative distance from init at step 90): conv2 0.125, fc1 0.25, conv1 0.5",
    ]
    assert blocks["net/seed1 (3 layers, steps 0 to 90)"][1:3] == [
        "  depth vs settling step: rho = -1.00 (the layers near the output settle first)",
        "  robustness: no robustness table logged",
    ]
    assert blocks["sweeps_only (no layer dynamics logged)"] == [
        "  robustness at step 7 (accuracy, threshold 0.02): robust conv1, conv2, fc1",
    ]
    assert blocks["seed groups: rho of depth and settling step across seeds"] == [
        "  net (2 runs): mean +0.00, sd 1.00, min -1.00, max +1.00",
    ]
    # Every run's lines agree with what the reader's functions give.
    runs = tb_layerdyn.read(str(logdir))
    for key, run in runs.items():
        lines = next(v for h, v in blocks.items() if h.startswith(f"{key} ("))
        if not run.layers:
            continue
        result = run.settling()
        listed = lines[0].split(": ", 1)[1].split("; ")[0]
        pairs = [] if listed == "none settled" else [p.rsplit(" ", 1) for p in listed.split(", ")]
        assert [(layer, int(step)) for layer, step in pairs] == [(layer, result.steps[layer]) for layer in result.order]
        assert f"rho = {result.correlation:+.2f}" in lines[1]
        table = reporting.latest_robustness(run)
        if table is not None:
            for label in ("robust", "ambient"):
                named = [layer for layer, have in zip(table.layers, table.labels) if have == label]
                if named:
                    assert f"{label} {', '.join(named)}" in lines[2]
        distance = run.metrics["relative_distance_from_init"][-1]
        order = np.argsort(distance, kind="stable")[:3]
        want = ", ".join(f"{run.layers[i]} {distance[i]:.3g}" for i in order if not np.isnan(distance[i]))
        assert lines[3].endswith(f": {want}")


def test_report_options_and_errors(logdir):
    # 0.5% of the peak: 0.01 is not below it, so no layer settles.
    strict = _report_blocks(_run("report", logdir, "--runs", "seed0", "--percent", "0.5", "--least", "1").stdout)
    assert strict["net/seed0 (3 layers, steps 0 to 90)"][0] == (
        "  settling (rwc below 0.5% of its peak): none settled; not yet: conv1, conv2, fc1"
    )
    assert strict["net/seed0 (3 layers, steps 0 to 90)"][3].endswith(": conv2 0.125")
    smoothed = _run("report", logdir, "--runs", "seed0", "--smoothing", "0.5").stdout
    result = tb_layerdyn.read(str(logdir), runs="seed0")["net/seed0"].settling(smoothing=0.5)
    assert f"smoothed 0.5): {', '.join(f'{layer} {result.steps[layer]}' for layer in result.order)}" in smoothed
    for args, message in (
        (("--percent", "0"), "--percent must be above 0 and at most 100"),
        (("--smoothing", "1"), "--smoothing must be in [0, 1)"),
        (("--least", "0"), "--least must be 1 or more"),
        (("--seed-pattern", "seed("), "--seed-pattern: seed_pattern 'seed(' is not a valid"),
    ):
        done = _run("report", logdir, *args, check=False)
        assert done.returncode == 2 and message in done.stderr, done.stderr
    empty = _run("report", logdir, "--runs", "no-such-run")
    assert empty.stdout == "" and "no run with layer dynamics or sweeps" in empty.stderr


def test_the_command_imports_no_torch(logdir):
    code = (
        "import sys; from tb_layerdyn.cli import main; "
        f"main(['report', {str(logdir)!r}]); "
        "sys.exit(3 if 'torch' in sys.modules else 0)"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "net/seed0" in done.stdout


# ---------------------------------------------------------------- tb-layerdyn cache


def _cache_listing(capsys, *args):
    """``tb-layerdyn cache`` run in this process: its exit code and its lines."""
    from tb_layerdyn import cli

    code = cli.main(["cache", *map(str, args)])
    return code, capsys.readouterr().out.splitlines()


def test_cache_lists_removes_and_prunes_logdirs(tmp_path, monkeypatch, capsys):
    from tb_layerdyn.reading import store

    rng = np.random.default_rng(3)
    layout = make_layout(LAYERS)
    monkeypatch.setenv("TB_LAYERDYN_CACHE", str(tmp_path / "cache"))
    logdirs = {name: tmp_path / name for name in ("kept", "deleted", "cleared")}
    for name, logdir in logdirs.items():
        for run in range(2 if name == "kept" else 1):
            write_layer_metrics(str(logdir / f"run{run}"), layout, STEPS, _metrics_values([20, 40, 60], rng))
        tb_layerdyn.read(str(logdir))
    shutil.rmtree(logdirs["deleted"])

    code, lines = _cache_listing(capsys)
    assert code == 0
    assert lines[0].startswith(f"{tmp_path / 'cache'}: 3 logdirs, ")
    assert _run("cache").stdout.splitlines() == lines  # the console script says the same
    assert len(lines) == 4
    listed = {name: next(line for line in lines[1:] if str(logdir) in line) for name, logdir in logdirs.items()}
    assert " 2 runs " in listed["kept"] and " 1 run " in listed["cleared"]
    assert listed["deleted"].endswith(f"{logdirs['deleted']}  (gone)")
    assert listed["kept"].endswith(str(logdirs["kept"]))
    sizes = {c.logdir: c.bytes for c in store.cached_logdirs()}
    assert len(sizes) == 3 and all(size > 0 for size in sizes.values())

    # --prune removes the logdir that is gone, and only it.
    code, lines = _cache_listing(capsys, "--prune")
    assert code == 0 and lines[0].startswith("removed 1 logdir from ")
    assert set(sizes) - {c.logdir for c in store.cached_logdirs()} == {str(logdirs["deleted"])}
    # --clear LOGDIR removes that one; reading it again reads it from its event files.
    want = tb_layerdyn.read(str(logdirs["cleared"]))
    code, lines = _cache_listing(capsys, "--clear", logdirs["cleared"])
    assert code == 0 and lines[0].startswith("removed 1 logdir from ")
    assert [c.logdir for c in store.cached_logdirs()] == [str(logdirs["kept"])]
    again = tb_layerdyn.read(str(logdirs["cleared"]))
    np.testing.assert_array_equal(again["run0"].metrics["rwc"], want["run0"].metrics["rwc"])
    # --clear alone removes everything.
    code, lines = _cache_listing(capsys, "--clear")
    assert code == 0 and lines[0].startswith("removed 2 logdirs from ")
    assert store.cached_logdirs() == []
    code, lines = _cache_listing(capsys)
    assert lines == [f"{tmp_path / 'cache'}: 0 logdirs, 0 B"]


def test_cache_leaves_a_run_another_process_is_refreshing(tmp_path, monkeypatch, capsys):
    import fcntl

    from tb_layerdyn.reading import store

    monkeypatch.setenv("TB_LAYERDYN_CACHE", str(tmp_path / "cache"))
    logdir = tmp_path / "logdir"
    values = _metrics_values([20, 40, 60], np.random.default_rng(4))
    write_layer_metrics(str(logdir / "run"), make_layout(LAYERS), STEPS, values)
    tb_layerdyn.read(str(logdir))
    [cached] = store.cached_logdirs()
    [run_cache] = [e.path for e in os.scandir(cached.root) if e.is_dir()]
    with open(os.path.join(run_cache, "lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        code, lines = _cache_listing(capsys, "--clear")
        assert code == 1
        assert lines == [f"removed 0 logdirs from {tmp_path / 'cache'}, 0 B",
                         f"left {logdir}: another process is reading it; run this again later"]
        assert os.path.exists(os.path.join(run_cache, "run.json"))
    code, lines = _cache_listing(capsys, "--clear")
    assert code == 0 and store.cached_logdirs() == []
