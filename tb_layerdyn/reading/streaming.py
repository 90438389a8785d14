"""Reading a population of runs a few at a time, so that its arrays never all sit in memory.

``read()`` returns every run at once. ``iter_runs`` walks the logdir once for the run names and
reads them ``batch`` runs per ``read()`` call, yielding each run as it comes: the long-table
export and the report hold one batch at a time, however many runs the logdir has.
"""

import re
from typing import Iterable, Iterator, Optional, Tuple, Union

from tb_layerdyn.reading import files
from tb_layerdyn.reading.reader import Run, read

# Runs read per ``read()`` call: each call walks the logdir, so one run per call would make a
# population's walks grow with the square of its size.
BATCH = 32


def iter_runs(
    logdir,
    *,
    runs: Union[None, str, Iterable[str]] = None,
    metrics: Optional[Iterable[str]] = None,
    cache_dir=None,
    batch: int = BATCH,
) -> Iterator[Tuple[str, Run]]:
    """``(key, Run)`` for every run ``read(logdir, runs=..., metrics=...)`` would return, in run
    name order, reading ``batch`` runs at a time.

    Args:
        logdir, runs, metrics, cache_dir: as for ``read``; a ``runs`` regular expression is checked
            before anything is read.
        batch: runs per ``read`` call.

    Raises:
        ValueError: ``runs`` is not a valid regular expression, or ``batch`` is not positive.
        FileNotFoundError, NotADirectoryError: as ``read`` raises them.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    selected = _selector(runs)
    metrics = None if metrics is None else list(metrics)
    # An empty selection checks the logdir (and the other arguments) as read() does, reading nothing.
    read(logdir, runs=[], metrics=metrics, cache_dir=cache_dir)
    names = sorted(name for name, _ in files.walk_runs(files.normalize(logdir)) if selected(name))
    for start in range(0, len(names), batch):
        chunk = read(logdir, runs=names[start : start + batch], metrics=metrics, cache_dir=cache_dir)
        yield from chunk.items()


def _selector(runs):
    if runs is None:
        return lambda name: True
    if isinstance(runs, str):
        try:
            pattern = re.compile(runs)
        except re.error as error:
            raise ValueError(f"runs {runs!r} is not a valid regular expression: {error}") from None
        return lambda name: pattern.search(name) is not None
    wanted = set(runs)
    return lambda name: name in wanted
