"""The long table of a logdir's layer dynamics, written as CSV or Parquet for other tools.

One row per (run, step, layer, metric), the columns of ``Run.to_dataframe()``: ``run, model,
step, layer, metric, value``, in the same order (runs by name; within a run by metric, step, then
depth). pandas, DuckDB, Polars or Spark read the file without this package::

    tb-layerdyn export runs --format parquet -o runs.parquet
    duckdb -c "SELECT layer, avg(value) FROM 'runs.parquet' WHERE metric = 'rwc' GROUP BY layer"

Runs are read a batch at a time (``streaming.iter_runs``) and written run by run, so a population
never sits in memory whole. Values are the logged float32 numbers: Parquet stores them as float32;
CSV writes each as the float64 it equals, in full, so parsing a CSV value gives exactly the value
``read()`` returns. NaN (undefined, or not logged at that step) is ``NaN`` in CSV and NaN in
Parquet; a run without a model name has an empty (CSV) or null (Parquet) ``model``.
"""

import csv
import os
import sys
from typing import Iterable, Optional, Union

import numpy as np

from tb_layerdyn.reading import streaming

COLUMNS = ("run", "model", "step", "layer", "metric", "value")
FORMATS = ("csv", "parquet")
# Suffixes that name a format when none is given.
SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def long_columns(run) -> dict:
    """One run's long table as columns (numpy arrays), rows ordered as ``Run.to_dataframe()``."""
    layers = np.asarray(run.layers, dtype=object)
    steps, metrics = [], []
    values = []
    for metric, table in run.metrics.items():
        steps.append(np.repeat(run.steps, len(layers)))
        metrics.append(np.full(table.size, metric, dtype=object))
        values.append(table.reshape(-1))
    rows = sum(len(v) for v in values)
    return {
        "run": np.full(rows, run.name, dtype=object),
        "model": np.full(rows, run.model, dtype=object),
        "step": np.concatenate(steps) if steps else np.zeros(0, dtype=np.int64),
        "layer": np.tile(layers, len(run.steps) * len(run.metrics)),
        "metric": np.concatenate(metrics) if metrics else np.zeros(0, dtype=object),
        "value": np.concatenate(values) if values else np.zeros(0, dtype=np.float32),
    }


def infer_format(output: Optional[str], given: Optional[str]) -> str:
    """The format asked for, else the one ``output``'s suffix names, else CSV."""
    if given is not None:
        if given not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {given!r}")
        return given
    if output and output != "-":
        return SUFFIXES.get(os.path.splitext(output)[1].lower(), "csv")
    return "csv"


def export(
    logdir,
    output: str,
    *,
    format: Optional[str] = None,
    runs: Union[None, str, Iterable[str]] = None,
    metrics: Optional[Iterable[str]] = None,
    cache_dir=None,
) -> int:
    """Writes the long table of ``read(logdir, runs=..., metrics=...)`` to ``output``.

    Args:
        logdir: as for ``read``.
        output: a file path, or ``"-"`` for standard output (CSV only). The file appears whole
            or not at all: it is written beside its final name and renamed when complete.
        format: ``"csv"`` or ``"parquet"``; ``None`` takes it from ``output``'s suffix
            (``.parquet``, ``.pq``; anything else is CSV).
        runs, metrics, cache_dir: as for ``read``.

    Returns:
        The number of rows written.

    Raises:
        ImportError: Parquet was asked for and pyarrow is not installed.
        ValueError: a bad argument; the message names it.
    """
    fmt = infer_format(output, format)
    if fmt == "parquet":
        pyarrow = _import_pyarrow()
        if output == "-":
            raise ValueError("Parquet cannot be written to standard output: pass a file (-o FILE.parquet)")
    rows_in = streaming.iter_runs(logdir, runs=runs, metrics=metrics, cache_dir=cache_dir)
    if output == "-":
        return _write_csv(rows_in, sys.stdout)
    partial = f"{output}.partial"
    try:
        if fmt == "parquet":
            rows = _write_parquet(rows_in, partial, pyarrow)
        else:
            with open(partial, "w", newline="", encoding="utf-8") as stream:
                rows = _write_csv(rows_in, stream)
        os.replace(partial, output)
    except BaseException:
        if os.path.exists(partial):
            os.remove(partial)
        raise
    return rows


def _write_csv(runs, stream) -> int:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(COLUMNS)
    rows = 0
    for _key, run in runs:
        columns = long_columns(run)
        model = "" if run.model is None else run.model
        # repr of the float64 a float32 equals: parsing it gives that float32's value exactly.
        values = ["NaN" if v != v else repr(v) for v in columns["value"].astype(np.float64).tolist()]
        writer.writerows(
            zip(
                columns["run"], [model] * len(values), columns["step"].tolist(), columns["layer"],
                columns["metric"], values,
            )
        )
        rows += len(values)
    return rows


def _write_parquet(runs, path, pyarrow) -> int:
    import pyarrow.parquet as parquet

    schema = pyarrow.schema([
        ("run", pyarrow.string()),
        ("model", pyarrow.string()),
        ("step", pyarrow.int64()),
        ("layer", pyarrow.string()),
        ("metric", pyarrow.string()),
        ("value", pyarrow.float32()),
    ])
    rows = 0
    with parquet.ParquetWriter(path, schema) as writer:
        for _key, run in runs:
            columns = long_columns(run)
            table = pyarrow.Table.from_arrays(
                [
                    pyarrow.array(columns["run"], type=pyarrow.string()),
                    pyarrow.array(columns["model"], type=pyarrow.string()),
                    pyarrow.array(columns["step"], type=pyarrow.int64()),
                    pyarrow.array(columns["layer"], type=pyarrow.string()),
                    pyarrow.array(columns["metric"], type=pyarrow.string()),
                    pyarrow.array(columns["value"], type=pyarrow.float32(), from_pandas=False),
                ],
                schema=schema,
            )
            # One row group per run: a reader filtering on run skips the others.
            writer.write_table(table)
            rows += table.num_rows
    return rows


def _import_pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401 (the writer lives there)
    except ImportError:
        raise ImportError(
            "Parquet export (--format parquet) needs pyarrow, which tb_layerdyn does not install: "
            "pip install pyarrow (or export with --format csv, which needs nothing else)"
        ) from None
    return pyarrow
