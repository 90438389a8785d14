"""What the plugin serves from: the store of the logdir TensorBoard was started on.

The plugin does not read its data through TensorBoard's data provider, which keeps every value it
retains in RAM (``loader.py`` caps what TensorBoard itself keeps of this plugin's tags). It reads
the event files through the same collector and on-disk store as ``tb_layerdyn.read``
(``reading.store``), so what TensorBoard's process holds does not grow with the length of the runs.

The store is refreshed in a background thread every ``--reload_interval`` seconds (the first pass
starts at once), or, with ``--reload_task blocking`` (and in tests), at every ``runs`` request.
"""

import collections
import logging
import threading
import time
from typing import Dict, List, Optional, Tuple

from tensorboard.backend.event_processing import data_ingester

from tb_layerdyn.reading import models, store as store_mod, sweep_index
from tb_layerdyn.reading.reader import entry_key

logger = logging.getLogger(__name__)

# Bytes of steps arrays kept in memory for the model tables of recent requests.
TABLE_CACHE_BYTES = 256 * 2**20


class Entry:
    """One entry of the tab's run list: a run's model (or a run with sweeps only)."""

    def __init__(self, run: str, model: Optional[str], table: Optional[models.ModelTable], sweeps: int):
        self.run = run
        self.model = model
        self.table = table
        self.sweeps = sweeps

    @property
    def key(self) -> str:
        return entry_key(self.run, self.model)


class PluginData:
    """The plugin's stores (one per logdir of ``--logdir`` or ``--logdir_spec``) and their refresh.

    Args:
        flags: TensorBoard's parsed flags (``logdir``, ``logdir_spec``, ``reload_interval``,
            ``reload_task``).
        cache_dir: where the stores live (``store.default_cache_dir()`` by default).
        background: refresh in a thread; ``None`` decides from the flags.
    """

    def __init__(self, flags, cache_dir=None, background=None):
        self._stores: List[Tuple[Optional[str], store_mod.Store]] = []
        for path, group in _logdirs(flags):
            self._stores.append((group, store_mod.Store(path, cache_dir)))
        interval = float(getattr(flags, "reload_interval", 5) or 0)
        blocking = getattr(flags, "reload_task", "auto") == "blocking"
        self._blocking = blocking if background is None else not background
        self._refresh_lock = threading.Lock()
        self._first_pass = threading.Event()
        self._warned = set()
        self._tables = collections.OrderedDict()  # (store index, run, stamp) -> {model: table}
        self._tables_lock = threading.Lock()
        if self._stores and not self._blocking:
            thread = threading.Thread(
                target=self._refresh_loop, args=(interval,), name="layer-dynamics-store", daemon=True
            )
            thread.start()

    @property
    def loading(self) -> bool:
        """Whether the first refresh of every run is still under way."""
        return not self._blocking and not self._first_pass.is_set()

    def refresh_for_request(self) -> None:
        """In blocking mode, reads what was appended since the last request."""
        if self._blocking:
            self.refresh()

    def refresh(self) -> None:
        """Reads what was appended to every run of every logdir."""
        with self._refresh_lock:
            for _, store in self._stores:
                try:
                    store.refresh(wait=self._blocking)
                except OSError as error:
                    logger.warning("Layer Dynamics: cannot read logdir %s (%s)", store.logdir, error)
            self._first_pass.set()

    def _refresh_loop(self, interval: float) -> None:
        while True:
            started = time.monotonic()
            self.refresh()
            if interval <= 0:
                return
            time.sleep(max(0.0, interval - (time.monotonic() - started)))

    # ------------------------------------------------------------------ what the routes read

    def entries(self) -> List[Entry]:
        """Every run's models with layer dynamics, and runs with sweeps only, sorted by key."""
        found = []
        for index, (group, store) in enumerate(self._stores):
            for run_name in store.run_names():
                run = store.run(run_name)
                if run is None:
                    continue
                self._say_warnings(run)
                name = run_name if group is None else f"{group}/{run_name}" if run_name != "." else group
                tables = self._model_tables(index, run)
                sweep_models = sweep_index.models_with_sweeps(run)
                for model in sorted(set(tables) | set(sweep_models), key=lambda m: (m is not None, m or "")):
                    count = len(sweep_index.logged_sweeps(run, model)) if model in sweep_models else 0
                    found.append(Entry(name, model, tables.get(model), count))
        return sorted(found, key=lambda e: e.key)

    def sources(self):
        """``(served run name, RunData)`` of every run read so far, sorted by name (for the
        population routes, ``reading.populations.build``)."""
        found = []
        for group, store in self._stores:
            for run_name in store.run_names():
                run = store.run(run_name)
                if run is not None:
                    name = run_name if group is None else f"{group}/{run_name}" if run_name != "." else group
                    found.append((name, run))
        return sorted(found, key=lambda item: item[0])

    def find(self, run: str, model: Optional[str]):
        """``(RunData, ModelTable or None)`` of one entry, or ``None`` when the run is unknown."""
        for index, (group, store) in enumerate(self._stores):
            run_name = _strip_group(run, group)
            if run_name is None:
                continue
            data = store.run(run_name)
            if data is None:
                continue
            return data, self._model_tables(index, data).get(model)
        return None

    def _model_tables(self, index: int, run) -> Dict[Optional[str], models.ModelTable]:
        key = (index, run.name, run.stamp)
        with self._tables_lock:
            tables = self._tables.get(key)
            if tables is not None:
                self._tables.move_to_end(key)
                return tables
        tables = models.model_tables(run)
        with self._tables_lock:
            self._tables[key] = tables
            for stale in [k for k in self._tables if k[:2] == key[:2] and k != key]:
                del self._tables[stale]
            total = sum(t.nbytes for entry in self._tables.values() for t in entry.values())
            while total > TABLE_CACHE_BYTES and len(self._tables) > 1:
                _, dropped = self._tables.popitem(last=False)
                total -= sum(t.nbytes for t in dropped.values())
        return tables

    def _say_warnings(self, run) -> None:
        for text in run.warnings:
            if text not in self._warned:
                self._warned.add(text)
                logger.warning("Layer Dynamics: %s", text)


def _logdirs(flags):
    """``(path, run group or None)`` of each logdir TensorBoard serves."""
    logdir = getattr(flags, "logdir", None)
    if logdir:
        return [(logdir, None)]
    spec = getattr(flags, "logdir_spec", None)
    if spec:
        return sorted(data_ingester._parse_event_files_spec(spec).items(), key=lambda kv: kv[0])
    return []


def _strip_group(run: str, group: Optional[str]) -> Optional[str]:
    if group is None:
        return run
    if run == group:
        return "."
    prefix = group + "/"
    return run[len(prefix):] if run.startswith(prefix) else None
