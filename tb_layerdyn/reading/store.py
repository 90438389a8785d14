"""The on-disk store of a logdir's layer dynamics: read once, kept as columns, read again by range.

``read()`` and the TensorBoard plugin share it. The first time a run is read, its event files go
through the ``collector`` into a cache directory outside the logdir: layer metrics as columns of
float32 with their min/max/mean pyramids (``columns``), other payloads (sweeps) as an index of
where their records lie in the event files. Later refreshes read only the bytes appended since,
and queries read only the rows, nodes or records they need, so what stays in memory does not grow
with the length of a run.

Layout of the cache (``default_cache_dir()``, or the ``cache_dir`` given)::

    <cache>/store-v1/<digest of the logdir>/logdir.json         the logdir it caches
    <cache>/store-v1/<digest of the logdir>/<digest of the run>/
        run.json       the manifest: files read and how far, tags, warnings, generation
        lock           held while the run is refreshed (several processes may share a cache)
        g<N>/          the data of generation N (a rebuild starts N + 1)

A manifest is written to a temporary file and renamed, so a reader sees one whole state. A run is
rebuilt from its files when one of them shrank, changed its first bytes, or disappeared; a run no
longer in a local logdir is removed at the next refresh (its directory and lock file stay, empty).
"""

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from typing import Dict, List, Optional

import numpy as np

from tb_layerdyn.format import framing, layer_metrics
from tb_layerdyn.reading import collector as collecting
from tb_layerdyn.reading import columns, files

logger = logging.getLogger(__name__)

# 2: a cut writes new files instead of truncating them (``columns._keep_prefix``), which arrays
# mapped from them rely on; a release that truncates in place keeps to a directory of its own.
STORE_FORMAT = 2
# Bytes of an event file read at a time.
CHUNK_BYTES = 16 << 20
# Bytes of a file's start kept to notice that it was replaced.
_HEAD_BYTES = 64

INDEX_ENTRY = np.dtype(
    [("tag", "<i4"), ("step", "<i8"), ("wall_time", "<f8"), ("file", "<i4"), ("offset", "<i8"),
     ("length", "<i8")]
)


def default_cache_dir() -> str:
    """Where stores live unless told otherwise: ``$TB_LAYERDYN_CACHE``, else
    ``$XDG_CACHE_HOME/tb_layerdyn``, else ``~/.cache/tb_layerdyn``."""
    explicit = os.environ.get("TB_LAYERDYN_CACHE")
    if explicit:
        return explicit
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tb_layerdyn")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _is_digest(name: str) -> bool:
    """Whether a directory name in a logdir's store is a run's (``_digest``)."""
    return len(name) == 16 and all(c in "0123456789abcdef" for c in name)


def _remove_run(run_cache: str) -> bool:
    """Empties one run's directory of the cache under its lock, the manifest first (a reader looking
    then finds no run, rather than a state whose columns are half gone; tables already in use answer
    from what is left). The directory and its lock file stay, so that every process keeps locking
    the same file. Returns False when another process holds the lock (it is refreshing the run)."""
    try:
        held = [name for name in os.listdir(run_cache) if name != "lock"]
        if not held:
            return True
        with open(os.path.join(run_cache, "lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.sort(key=lambda name: name != "run.json")
            for name in held:
                path = os.path.join(run_cache, name)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
    except BlockingIOError:
        return False
    except FileNotFoundError:  # removed by another process meanwhile
        return True
    return True


@dataclasses.dataclass
class CachedLogdir:
    """What the cache holds of one logdir (``cached_logdirs``).

    Attributes:
        root: its directory in the cache.
        logdir: the logdir, as given to ``read()`` or ``tensorboard --logdir`` (``None`` when the
            cache no longer says).
        runs: runs with data in the cache.
        bytes: bytes of files under ``root``.
        gone: a local logdir that no longer exists.
    """

    root: str
    logdir: Optional[str]
    runs: int
    bytes: int
    gone: bool


def cached_logdirs(cache_dir=None) -> List[CachedLogdir]:
    """Every logdir the cache (``default_cache_dir()`` when ``None``) holds data of, largest first."""
    base = os.path.join(cache_dir or default_cache_dir(), f"store-v{STORE_FORMAT}")
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return []
    found = []
    for entry in entries:
        root = os.path.join(base, entry)
        if not os.path.isdir(root):
            continue
        logdir = (_read_json(os.path.join(root, "logdir.json")) or {}).get("logdir")
        runs, size = 0, 0
        for directory, _, names in os.walk(root):
            for name in names:
                try:
                    size += os.path.getsize(os.path.join(directory, name))
                except OSError:
                    pass
            runs += "run.json" in names and directory != root
        gone = logdir is not None and not files.is_remote(logdir) and not os.path.isdir(logdir)
        found.append(CachedLogdir(root, logdir, runs, size, gone))
    found.sort(key=lambda c: (-c.bytes, c.root))
    return found


def remove_cached(cached: CachedLogdir) -> bool:
    """Removes what the cache holds of one logdir. Returns False when some run was left because
    another process is refreshing it (run again later); a TensorBoard using the logdir reads it
    again from its event files."""
    whole = True
    try:
        entries = os.listdir(cached.root)
    except FileNotFoundError:
        return True
    for entry in entries:
        path = os.path.join(cached.root, entry)
        if _is_digest(entry) and os.path.isdir(path):
            whole &= _remove_run(path)
    if whole:
        shutil.rmtree(cached.root, ignore_errors=True)
    return whole


@dataclasses.dataclass
class FileState:
    """How far one event file of a run has been read."""

    name: str
    size: int
    offset: int
    head: str
    dead: bool = False


class Store:
    """The cache of one logdir.

    Args:
        logdir: a local directory or a URL TensorBoard's file layer reads.
        cache_dir: where the cache lives (``default_cache_dir()`` when ``None``). A directory that
            cannot be written is replaced by a temporary one, with a warning.
    """

    def __init__(self, logdir, cache_dir=None):
        self.logdir = files.normalize(logdir)
        base = os.path.join(cache_dir or default_cache_dir(), f"store-v{STORE_FORMAT}")
        self.root = os.path.join(base, _digest(self.logdir))
        try:
            os.makedirs(self.root, exist_ok=True)
            _write_json(os.path.join(self.root, "logdir.json"), {"logdir": self.logdir})
        except OSError as error:
            fallback = os.path.join(tempfile.gettempdir(), "tb_layerdyn-cache", _digest(self.logdir))
            logger.warning(
                "Cannot write the tb_layerdyn cache under %s (%s); using %s. Set "
                "TB_LAYERDYN_CACHE to a writable directory.",
                base, error, fallback,
            )
            self.root = fallback
            os.makedirs(self.root, exist_ok=True)
        self._runs: Dict[str, List[str]] = {}
        self._views: Dict[str, "RunData"] = {}
        self._lock = threading.Lock()

    def discover(self) -> Dict[str, List[str]]:
        """Finds the runs under the logdir: run name -> its event file names, by name."""
        found = dict(files.walk_runs(self.logdir))
        with self._lock:
            self._runs = found
        return found

    def run_names(self) -> List[str]:
        """The runs found by the last ``discover``, sorted."""
        with self._lock:
            return sorted(self._runs)

    def refresh(self, runs=None, *, wait: bool = True) -> None:
        """Reads what was appended to the event files of ``runs`` (every run found when ``None``).

        Args:
            runs: run names, or ``None`` for all.
            wait: wait for another process refreshing a run; otherwise skip that run this time.
        """
        found = self.discover()
        self._forget_gone(found)
        marker = os.path.join(self.root, "logdir.json")
        if not os.path.exists(marker):  # the cache was cleared while this store was in use
            try:
                os.makedirs(self.root, exist_ok=True)
                _write_json(marker, {"logdir": self.logdir})
            except OSError:
                pass
        for name in sorted(found if runs is None else [r for r in runs if r in found]):
            run_cache = os.path.join(self.root, _digest(name))
            _Refresh(self.logdir, name, found[name], run_cache).run(wait=wait)

    def _forget_gone(self, found) -> None:
        """Removes what the cache holds of runs no longer in a local logdir, so that runs deleted
        (or a logdir written again without them) leave nothing behind on disk but an empty
        directory and its lock file.

        A run another process is refreshing is left for a later pass. Remote logdirs keep every
        run: a listing that misses a run for a moment must not cost reading it all again.
        """
        if files.is_remote(self.logdir):
            return
        kept = {_digest(name) for name in found}
        try:
            entries = [e for e in os.listdir(self.root) if e not in kept and _is_digest(e)]
        except OSError:
            return
        for entry in entries:
            _remove_run(os.path.join(self.root, entry))

    def run(self, name: str) -> Optional["RunData"]:
        """The committed state of a run, or ``None`` when it was never read."""
        path = os.path.join(self.root, _digest(name), "run.json")
        try:
            stamp = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return None
        with self._lock:
            cached = self._views.get(name)
            if cached is not None and cached.stamp == stamp:
                return cached
        manifest = _read_json(path)
        if manifest is None or manifest.get("format") != STORE_FORMAT or manifest.get("run") != name:
            return None
        view = RunData(name, self.logdir, os.path.dirname(path), manifest, stamp)
        with self._lock:
            self._views[name] = view
        return view


class RunData:
    """One run as its manifest describes it: tags, their columns and the index of records.

    Attributes:
        name: the run's name.
        tags: ``collector.TagState`` per tag id.
        rows: rows on disk per tag id (layer-metric tags).
        warnings: what was skipped while reading, one line each.
    """

    def __init__(self, name, logdir, cache, manifest, stamp):
        self.name = name
        self.stamp = stamp
        self._logdir = logdir
        self._directory = os.path.join(cache, f"g{manifest['generation']}")
        self._files = [FileState(**f) for f in manifest["files"]]
        states = collecting.restore_states(manifest["tags"])
        self.tags = list(states.values())
        self.rows = [int(t.get("rows", 0)) for t in manifest["tags"]]
        self.step_range = [(t.get("first"), t.get("last")) for t in manifest["tags"]]
        self.index_entries = int(manifest.get("index", 0))
        self.warnings = list(manifest.get("warnings", []))
        self._index = None

    def metric_tags(self) -> List[int]:
        """Ids of the usable layer-metric tags with at least one row."""
        return [
            i for i, t in enumerate(self.tags)
            if t.kind == layer_metrics.KIND and t.error is None and self.rows[i]
        ]

    def tag_files(self, tag_id: int) -> columns.TagFiles:
        return columns.TagFiles(self._directory, tag_id, len(self.tags[tag_id].layout.metrics))

    def index(self) -> np.ndarray:
        """Every indexed record (``INDEX_ENTRY``), in the order read."""
        if self._index is None:
            path = os.path.join(self._directory, "index")
            self._index = columns._read(path, INDEX_ENTRY, 0, self.index_entries)
        return self._index

    def read_value(self, entry):
        """The ``Summary.Value`` of an indexed record (``None`` when the file no longer holds it)."""
        from tensorboard.compat.proto import event_pb2

        path = files.join(files.run_directory(self._logdir, self.name), self._files[int(entry["file"])].name)
        try:
            record = files.read_range(path, int(entry["offset"]), int(entry["length"]))
            event = event_pb2.Event.FromString(record)
        except Exception as error:  # a file gone or rewritten since: the record is lost, not fatal
            logger.warning("Run %r: cannot read a record again from %s (%s).", self.name, path, error)
            return None
        tag = self.tags[int(entry["tag"])].tag
        for value in event.summary.value:
            if value.tag == tag:
                return value
        return None


class _Refresh(collecting.Sink):
    """One refresh of one run: reads new bytes, updates columns and the manifest."""

    def __init__(self, logdir, name, file_names, cache):
        self._logdir = logdir
        self._name = name
        self._file_names = file_names
        self._cache = cache
        self._run_dir = files.run_directory(logdir, name)

    def run(self, *, wait: bool) -> None:
        os.makedirs(self._cache, exist_ok=True)
        with open(os.path.join(self._cache, "lock"), "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                return
            try:
                self._refresh()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ reading new bytes

    def _refresh(self) -> None:
        manifest = _read_json(os.path.join(self._cache, "run.json"))
        if manifest is None or manifest.get("format") != STORE_FORMAT or manifest.get("run") != self._name:
            manifest = None
        states = {}
        file_states: List[FileState] = []
        if manifest is not None:
            file_states = [FileState(**f) for f in manifest["files"]]
            if not self._still_valid(file_states):
                manifest = None
        if manifest is None:
            manifest = self._new_generation()
            file_states = []
        else:
            states = collecting.restore_states(manifest["tags"])
        self._manifest = manifest
        self._directory = os.path.join(self._cache, f"g{manifest['generation']}")
        os.makedirs(self._directory, exist_ok=True)
        self._rows = [int(t.get("rows", 0)) for t in manifest["tags"]]
        self._writers: Dict[int, columns.ColumnsWriter] = {}
        self._index: List[tuple] = []
        self._index_count = int(manifest.get("index", 0))
        self._index_cut = False
        self._warnings = list(manifest.get("warnings", []))
        self._collector = collecting.Collector(self._name, self, states)
        self._states = list(states.values())
        known = {f.name: f for f in file_states}
        for name in self._file_names:
            if name not in known:
                state = FileState(name, 0, 0, "")
                file_states.append(state)
                known[name] = state
        file_states.sort(key=lambda f: f.name)
        self._file_states = file_states
        changed = False
        for index, state in enumerate(file_states):
            changed |= self._read_file(index, state)
        if changed or manifest.get("files") != [dataclasses.asdict(f) for f in file_states]:
            self._commit()

    def _still_valid(self, file_states: List[FileState]) -> bool:
        """Whether every file read before still holds what was read from it."""
        present = set(self._file_names)
        for state in file_states:
            if state.name not in present:
                return False
            path = files.join(self._run_dir, state.name)
            try:
                size = files.size(path)
            except (OSError, Exception):
                return False
            if size < state.offset:
                return False
            if state.head and files.read_range(path, 0, _HEAD_BYTES).hex() != state.head:
                return False
        return True

    def _new_generation(self) -> dict:
        """Starts the run over in a new generation; returns its (empty) manifest.

        The empty manifest is committed before the older generations are removed: from then on
        readers see a run with nothing read yet, never a state whose event files are gone (tables
        of it already in use answer from what is left of its columns).
        """
        existing = [
            int(name[1:]) for name in os.listdir(self._cache)
            if name.startswith("g") and name[1:].isdigit()
        ]
        generation = max(existing, default=-1) + 1
        manifest = {"format": STORE_FORMAT, "run": self._name, "generation": generation,
                    "files": [], "tags": [], "index": 0, "warnings": []}
        if existing:
            _write_json(os.path.join(self._cache, "run.json"), manifest)
        for old in existing:
            shutil.rmtree(os.path.join(self._cache, f"g{old}"), ignore_errors=True)
        return manifest

    def _read_file(self, index: int, state: FileState) -> bool:
        """Reads file ``index`` from where the last refresh stopped. Returns whether it read any."""
        if state.dead:
            return False
        path = files.join(self._run_dir, state.name)
        try:
            size = files.size(path)
        except Exception as error:
            self.warn(f"run {self._name!r}: cannot read event file {path} ({error})")
            return False
        if size <= state.offset:
            return False
        if not state.head:
            state.head = files.read_range(path, 0, _HEAD_BYTES).hex()
        read_any = False
        chunk = CHUNK_BYTES
        # One buffer for the file's chunks, refilled only after ``_flush`` has written what the
        # collector kept of the last chunk (its rows are views of the buffer until then).
        space = None
        while state.offset < size:
            wanted = min(chunk, size - state.offset)
            if space is None or len(space) < wanted:
                space = columns.small_pages(wanted, np.uint8)
            try:
                buffer = files.read_range_into(path, state.offset, space[:wanted])
            except Exception as error:
                self.warn(f"run {self._name!r}: cannot read event file {path} ({error})")
                break
            frames = framing.scan(buffer)
            if frames.needed and frames.needed <= size - state.offset:
                chunk = frames.needed  # one record longer than a chunk
                continue
            if len(frames.starts):
                self._collector.feed(buffer, frames.starts, frames.lengths, index, state.offset)
                read_any = True
            state.offset += frames.end
            if frames.corrupt:
                state.dead = True
                self.warn(
                    f"run {self._name!r}: event file {path} has a corrupt record at byte "
                    f"{state.offset}; the rest of that file is not read"
                )
                break
            if frames.end == 0:
                break  # a truncated last record: the writer may still be appending
            self._flush()
        state.size = size
        return read_any

    # ------------------------------------------------------------------ the collector's sink

    def tag_added(self, tag_id, state):
        self._states.append(state)
        self._rows.append(0)

    def metrics(self, tag_id, steps, values, file_index):
        self._writer(tag_id).offer(steps, values)

    def metrics_one(self, tag_id, step, content, file_index):
        self._writer(tag_id).offer_one(step, content)

    def metrics_many(self, tag_id, steps, values, file_index):
        self._writer(tag_id).offer_calls(steps, values)

    def _writer(self, tag_id):
        writer = self._writers.get(tag_id)
        if writer is None:
            layout = self._states[tag_id].layout
            tag_files = columns.TagFiles(self._directory, tag_id, len(layout.metrics))
            rows = self._rows[tag_id]
            last = int(columns.read_steps(tag_files, rows, rows - 1)[-1]) if rows else None
            writer = columns.ColumnsWriter(tag_files, layout.shape[1], rows, last)
            self._writers[tag_id] = writer
        return writer

    def indexed(self, tag_id, step, wall_time, file_index, offset, length):
        self._index.append((tag_id, step, wall_time, file_index, offset, length))

    def warn(self, text):
        # Kept in the manifest; readers say them (read() at every call, the plugin once).
        if text not in self._warnings:
            self._warnings.append(text)

    # ------------------------------------------------------------------ writing

    def _flush(self) -> None:
        for tag_id, writer in self._writers.items():
            writer.flush()
            self._rows[tag_id] = writer.rows
        if self._index:
            self._write_index()

    def _write_index(self) -> None:
        """Appends new index entries, applying TensorBoard's rule per tag (a step that goes back
        drops that tag's entries at that step and later)."""
        path = os.path.join(self._directory, "index")
        new = np.array(self._index, dtype=INDEX_ENTRY)
        self._index = []
        old = columns._read(path, INDEX_ENTRY, 0, self._index_count)
        combined = np.concatenate([old, new])
        keep = np.ones(len(combined), dtype=bool)
        cut = False
        last_step: Dict[int, int] = {}
        for position in range(len(combined)):
            tag, step = int(combined["tag"][position]), int(combined["step"][position])
            if tag in last_step and step <= last_step[tag]:
                earlier = np.flatnonzero(keep[:position] & (combined["tag"][:position] == tag)
                                         & (combined["step"][:position] >= step))
                keep[earlier] = False
                cut |= bool(len(earlier) and earlier[0] < len(old))
            last_step[tag] = step
        if cut:
            kept = combined[keep]
            with open(path, "wb") as f:
                f.write(kept.tobytes())
        else:
            kept_new = new[keep[len(old):]]
            with open(path, "ab") as f:
                f.write(kept_new.tobytes())
            kept = np.concatenate([old, kept_new])
        self._index_count = len(kept)

    def _commit(self) -> None:
        self._flush()
        tags = []
        for tag_id, state in enumerate(self._states):
            record = collecting.state_record(state)
            rows = self._rows[tag_id]
            record["rows"] = rows
            if rows:
                tag_files = columns.TagFiles(self._directory, tag_id, len(state.layout.metrics))
                record["first"] = int(columns.read_steps(tag_files, 1)[0])
                record["last"] = int(columns.read_steps(tag_files, rows, rows - 1)[0])
            tags.append(record)
        manifest = dict(
            self._manifest,
            files=[dataclasses.asdict(f) for f in self._file_states],
            tags=tags,
            index=self._index_count,
            warnings=self._warnings,
        )
        _write_json(os.path.join(self._cache, "run.json"), manifest)


def _write_json(path: str, body) -> None:
    """Writes JSON to ``path`` atomically (``columns.replacing``)."""
    with columns.replacing(path) as f:
        f.write(json.dumps(body, separators=(",", ":")).encode())


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
