"""One layer-metrics tag on disk: its steps, one file of values per metric, and their pyramids.

Files of tag ``k`` in a run's cache directory::

    t<k>.steps          int64 per row (ascending)
    t<k>.m<i>           float32 rows x columns of metric i (layers, then groups)
    t<k>.m<i>.l<level>  pyramid.NODE records, complete nodes x columns
    t<k>.latest         int64 metrics x columns: the last row with a defined value (-1: none)

Rows are appended at the end; TensorBoard's rule for a step that goes back (see ``collector``) cuts
every file back first, into a new file renamed over the old one (``_keep_prefix``): no file is
shortened in place, so an array mapped from one (``mapped_rows``) stays whole. Readers never read
past the row count of the manifest they loaded, and tolerate a file that is shorter than that (a
cut happening while they read): missing values read as NaN.
"""

import contextlib
import ctypes
import mmap
import os
import tempfile
import weakref
from typing import List, Optional

import numpy as np

from tb_layerdyn.reading import pyramid

_STEP = np.dtype("<i8")
_VALUE = np.dtype("<f4")


# From this size numpy asks the kernel for transparent huge pages (madvise): see ``small_pages``.
_SMALL_PAGES_FROM = 4 << 20


def small_pages(shape, dtype) -> np.ndarray:
    """An uninitialised array of ``shape``, in private anonymous memory of its own mapped in 4 kB
    pages.

    numpy asks for transparent huge pages for every array of 4 MB and more, and zeroing freshly
    mapped huge pages at their first touch was the largest kernel cost of a first read on the VM
    of ``benchmarks/`` (README, "Reading and the tab", has the figures). The mapping is private
    (a shared anonymous one is shared memory, whose page faults cost more) and asks for no huge
    pages where the kernel would give them unasked. The array owns its mapping: it is
    unmapped when the array and its views are gone. Smaller arrays come from ``np.empty``.
    """
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if nbytes < _SMALL_PAGES_FROM:
        return np.empty(shape, dtype=dtype)
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:  # not a POSIX mmap
        return np.empty(shape, dtype=dtype)
    mapping = mmap.mmap(-1, nbytes, flags=private | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        mapping.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(mapping, dtype=dtype).reshape(shape)


def kept_before(steps: np.ndarray, step: int) -> int:
    """TensorBoard's rule for a record at ``step``: how many of a tag's kept rows (steps
    ascending) stay, namely those at earlier steps."""
    return int(np.searchsorted(steps, step, side="left"))


class TagFiles:
    """Paths of one tag's files."""

    def __init__(self, directory: str, tag_id: int, metrics: int):
        self.directory = directory
        self.prefix = os.path.join(directory, f"t{tag_id}")
        self.metrics = metrics

    @property
    def steps(self) -> str:
        return self.prefix + ".steps"

    def values(self, metric: int) -> str:
        return f"{self.prefix}.m{metric}"

    def level(self, metric: int, level: int) -> str:
        return f"{self.prefix}.m{metric}.l{level}"

    @property
    def latest(self) -> str:
        return self.prefix + ".latest"


def levels_for(rows: int) -> int:
    """How many pyramid levels ``rows`` rows have (levels with at least one complete node)."""
    count = 0
    while rows >= pyramid.node_size(count):
        count += 1
    return count


class ColumnsWriter:
    """Appends the calls of one tag, keeping its pyramids complete.

    Args:
        files: the tag's ``TagFiles``.
        width: columns per row (layers + groups).
        rows: rows already on disk.
        last_step: the step of the last row on disk (``None`` when empty).
    """

    def __init__(self, files: TagFiles, width: int, rows: int, last_step: Optional[int]):
        self._files = files
        self._width = width
        self.rows = rows
        self._last_step = last_step
        self._pending_steps: List[np.ndarray] = []
        self._pending_values: List[np.ndarray] = []
        self._pending_rows = 0
        # Single calls as their raw float32 bytes, turned into arrays all at once (the steady
        # state of a first read: one record per logged step).
        self._one_steps: List[int] = []
        self._one_bytes: List[bytes] = []
        self._last = last_step

    @property
    def last_step(self) -> Optional[int]:
        """The step of the last row kept, pending rows included."""
        return self._last

    def offer(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Keeps ``values`` ``(calls, metrics, width)`` at ascending ``steps``, after applying
        TensorBoard's rule for a first step at or before the last one kept."""
        self._settle()
        last = self._last
        if last is not None and int(steps[0]) <= last:
            self._cut(int(steps[0]))
        self._pending_steps.append(np.asarray(steps, dtype=_STEP))
        self._pending_values.append(np.asarray(values, dtype=_VALUE))
        self._pending_rows += len(steps)
        self._last = int(steps[-1])

    def offer_one(self, step: int, content: bytes) -> None:
        """Keeps one call, given as the little-endian float32 bytes of its ``(metrics, width)``
        tensor (``layer_metrics.single_call_bytes``)."""
        if self._last is not None and step <= self._last:
            array = np.frombuffer(content, dtype=_VALUE).reshape(1, self._files.metrics, self._width)
            self.offer(np.array([step], dtype=_STEP), array)
            return
        self._one_steps.append(step)
        self._one_bytes.append(content)
        self._last = step

    def offer_calls(self, steps: np.ndarray, values: np.ndarray) -> None:
        """Keeps calls at ``steps`` (int64), given as float32 ``(calls, metrics, width)``: the same
        as ``offer_one`` for each call in turn, at once when they only add rows."""
        if not len(steps):
            return
        adds = (self._last is None or int(steps[0]) > self._last) and bool((np.diff(steps) > 0).all())
        if not adds:
            for step, call in zip(steps.tolist(), values):
                self.offer_one(step, call.astype(_VALUE).tobytes())
            return
        self._settle()
        self._pending_steps.append(np.asarray(steps, dtype=_STEP))
        self._pending_values.append(np.asarray(values, dtype=_VALUE))
        self._pending_rows += len(steps)
        self._last = int(steps[-1])

    def _settle(self) -> None:
        """Turns the single calls kept as bytes into one block of pending rows."""
        if not self._one_steps:
            return
        values = np.frombuffer(b"".join(self._one_bytes), dtype=_VALUE)
        self._pending_values.append(values.reshape(len(self._one_steps), self._files.metrics, self._width))
        self._pending_steps.append(np.array(self._one_steps, dtype=_STEP))
        self._pending_rows += len(self._one_steps)
        self._one_steps, self._one_bytes = [], []

    def _cut(self, step: int) -> None:
        """Drops the kept rows at ``step`` and later."""
        pending = np.concatenate(self._pending_steps) if self._pending_steps else np.zeros(0, _STEP)
        keep_pending = kept_before(pending, step)
        if keep_pending > 0 or not self.rows or (self._last_step is not None and self._last_step < step):
            self._keep_pending(keep_pending)
            return
        # The cut reaches into the rows on disk: drop every pending row and cut the files.
        self._keep_pending(0)
        on_disk = read_steps(self._files, self.rows)
        self._truncate(kept_before(on_disk, step))

    def _keep_pending(self, count: int) -> None:
        steps = np.concatenate(self._pending_steps)[:count] if self._pending_steps else np.zeros(0, _STEP)
        values = (
            np.concatenate(self._pending_values)[:count]
            if self._pending_values
            else np.zeros((0, self._files.metrics, self._width), _VALUE)
        )
        self._pending_steps = [steps] if count else []
        self._pending_values = [values] if count else []
        self._pending_rows = count
        self._last = int(steps[-1]) if count else self._last_step

    def _truncate(self, rows: int) -> None:
        files = self._files
        _keep_prefix(files.steps, rows * _STEP.itemsize)
        for metric in range(files.metrics):
            _keep_prefix(files.values(metric), rows * self._width * _VALUE.itemsize)
            for level in range(levels_for(self.rows)):
                path = files.level(metric, level)
                if os.path.exists(path):
                    nodes = rows // pyramid.node_size(level)
                    _keep_prefix(path, nodes * self._width * pyramid.NODE.itemsize)
        self.rows = rows
        self._last_step = int(read_steps(files, rows)[-1]) if rows else None
        self._last = self._last_step
        self._rescan_latest()

    def _rescan_latest(self) -> None:
        """The last defined row of every column, found again from the rows (after a cut)."""
        latest = np.full((self._files.metrics, self._width), -1, dtype=np.int64)
        for metric in range(self._files.metrics):
            path = self._files.values(metric)
            stop = self.rows
            while stop > 0 and (latest[metric] < 0).any():
                start = max(0, stop - _SCAN_ROWS)
                _update_latest(latest[metric], read_rows(path, self._width, start, stop), start)
                stop = start
        _write_latest(self._files, latest)

    def flush(self) -> None:
        """Writes the pending rows and the pyramid nodes they complete."""
        self._settle()
        if not self._pending_rows:
            return
        files = self._files
        steps = np.concatenate(self._pending_steps)
        # One block (the usual case) is written as it is, without a copy.
        values = self._pending_values[0] if len(self._pending_values) == 1 else np.concatenate(self._pending_values)
        old = self.rows
        new = old + len(steps)
        with open(files.steps, "ab") as f:
            f.write(steps.tobytes())
        latest = read_latest(files, self._width)
        for metric in range(files.metrics):
            rows = np.ascontiguousarray(values[:, metric, :])
            _update_latest(latest[metric], rows, old)
            _append(files.values(metric), rows)
            self._extend_pyramid(metric, old, new, rows)
        _write_latest(files, latest)
        self.rows = new
        self._last_step = int(steps[-1])
        self._pending_steps, self._pending_values, self._pending_rows = [], [], 0

    def _extend_pyramid(self, metric: int, old: int, new: int, appended: np.ndarray) -> None:
        """Adds the nodes completed by rows ``[old, new)`` to every level."""
        size = pyramid.BASE
        first = old // size
        last = new // size
        if last == first:
            return
        # Level 0 from the rows of its new nodes: the part of the first one already on disk,
        # then the appended rows.
        head = old - first * size
        rows = appended
        if head:
            rows = np.concatenate([read_rows(self._files.values(metric), self._width, first * size, old), appended])
        nodes = pyramid.nodes_from_rows(rows[: (last - first) * size])
        _append(self._files.level(metric, 0), nodes)
        level = 0
        # ``nodes`` holds nodes [first, last) of ``level``: a parent's children come from them,
        # all but perhaps the first parent's left child (on disk when ``first`` is odd).
        while True:
            size = pyramid.node_size(level + 1)
            parent_first, parent_last = old // size, new // size
            if parent_last == parent_first:
                return
            children = nodes[max(0, 2 * parent_first - first) : 2 * parent_last - first]
            if 2 * parent_first < first:
                on_disk = read_nodes(self._files.level(metric, level), self._width, 2 * parent_first, first)
                children = np.concatenate([on_disk, children])
            nodes = pyramid.parents(children)
            _append(self._files.level(metric, level + 1), nodes)
            first, last = parent_first, parent_last
            level += 1


# Rows read at a time when the last defined rows are searched again.
_SCAN_ROWS = 4096
# Rows looked at a time for columns undefined in the last row.
_LOOKBACK = 64


def _update_latest(latest: np.ndarray, rows: np.ndarray, start: int) -> None:
    """Moves ``latest`` (per column) to the last defined row of ``rows`` (rows ``start`` on).

    Most columns are defined in the last row; the others are looked for a few rows at a time
    from the end, so a call touches little more than one row.
    """
    missing = np.arange(rows.shape[1])
    stop = len(rows)
    while len(missing) and stop > 0:
        first = max(0, stop - (1 if stop == len(rows) else _LOOKBACK))
        defined = ~np.isnan(rows[first:stop][:, missing])
        found = defined.any(axis=0)
        last = stop - 1 - np.argmax(defined[::-1], axis=0)
        columns_found = missing[found]
        latest[columns_found] = np.maximum(latest[columns_found], start + last[found])
        missing = missing[~found]
        stop = first


def read_latest(files: TagFiles, width: int) -> np.ndarray:
    """The last defined row per metric and column (-1 where none)."""
    flat = _read(files.latest, _STEP, 0, files.metrics * width)
    if flat.size != files.metrics * width:
        return np.full((files.metrics, width), -1, dtype=np.int64)
    return flat.reshape(files.metrics, width).astype(np.int64)


def _write_latest(files: TagFiles, latest: np.ndarray) -> None:
    with open(files.latest, "wb") as f:
        f.write(latest.astype(_STEP).tobytes())


@contextlib.contextmanager
def replacing(path: str):
    """A new binary file that takes the place of ``path`` when the block ends without an error.

    It is written beside ``path`` and renamed over it, so a reader sees the old file or the new
    one, whole; on an error it is removed and ``path`` is left as it was.
    """
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(handle, "wb") as f:
            yield f
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _keep_prefix(path: str, nbytes: int) -> None:
    """Cuts a file back to its first ``nbytes``: they are copied into a file that replaces it.

    Files are never shortened in place. A reader that mapped the old file (``mapped_rows``) or has
    it open keeps every byte it had; a truncation in place would make its mapped pages past the
    cut raise ``SIGBUS`` on their next touch, which kills the reading process.
    """
    with open(path, "rb") as source, replacing(path) as target:
        left = nbytes
        while left > 0:
            chunk = source.read(min(left, 1 << 20))
            if not chunk:
                break
            target.write(chunk)
            left -= len(chunk)


def _append(path: str, array: np.ndarray) -> None:
    # The array's own bytes, not a ``tobytes()`` copy (a quarter less CPU per write, measured).
    with open(path, "ab") as f:
        f.write(np.ascontiguousarray(array).reshape(-1).view(np.uint8))


def _read(path: str, dtype: np.dtype, start: int, count: int) -> np.ndarray:
    """``count`` items of ``dtype`` from item ``start``; missing ones (a short file) are absent."""
    if count <= 0:
        return np.zeros(0, dtype=dtype)
    try:
        with open(path, "rb") as f:
            f.seek(start * dtype.itemsize)
            data = f.read(count * dtype.itemsize)
    except FileNotFoundError:
        return np.zeros(0, dtype=dtype)
    usable = len(data) // dtype.itemsize
    return np.frombuffer(data[: usable * dtype.itemsize], dtype=dtype)


def read_steps(files: TagFiles, rows: int, start: int = 0) -> np.ndarray:
    """Steps of rows ``[start, rows)``."""
    return _read(files.steps, _STEP, start, rows - start).astype(np.int64)


def read_rows(path: str, width: int, start: int, stop: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Rows ``[start, stop)`` of a values file as float32 ``(rows, width)``; NaN past its end.

    With ``out`` (a C-contiguous float32 array of at least that many rows of ``width``), the rows
    are read into its first rows, which are returned: a caller reading a file in chunks reuses one
    buffer, rather than page-faulting a fresh one in for every chunk.
    """
    if out is None:
        out = np.empty((max(0, stop - start), width), dtype=_VALUE)
    else:
        out = out[: max(0, stop - start)]
    got = 0
    if out.size:
        # Read straight into the result: no bytes object, no copy, no NaN fill of what is read.
        try:
            with open(path, "rb") as f:
                f.seek(start * width * _VALUE.itemsize)
                got = f.readinto(memoryview(out.reshape(-1)).cast("B")) or 0
        except FileNotFoundError:
            got = 0
    out.reshape(-1)[got // _VALUE.itemsize :] = np.nan
    return out


# From this size ``mapped_rows`` maps a table's rows instead of reading them (smaller ones are read:
# a mapping costs a system call and a whole page at each end).
MAP_FROM = 1 << 20


def mapped_rows(path: str, width: int, start: int, stop: int) -> Optional[np.ndarray]:
    """Rows ``[start, stop)`` of a values file as float32 ``(rows, width)``, mapped from the file
    copy-on-write: ``None`` where that cannot be done (no POSIX ``mmap``, a file shorter than
    ``stop`` rows, fewer than ``MAP_FROM`` bytes), and the caller reads them with ``read_rows``.

    The array shares its memory with the page cache the store has just written, instead of being
    a copy of it: no second copy of every value in memory, and no fresh pages to fault in and
    zero (most of a first ``read``'s system time on the VM of ``benchmarks/``; README, "Reading
    and the tab"). It is writable; what is written stays in this process (``MAP_PRIVATE``). The
    store never changes bytes a mapping can see: rows are only appended, and a cut writes a new
    file (``_keep_prefix``). The file descriptor is closed at once (``mmap.mmap`` would keep one
    per array), and the pages are unmapped when the array and its views are gone.
    """
    nbytes = (stop - start) * width * _VALUE.itemsize
    if _LIBC is None or nbytes <= 0 or nbytes < MAP_FROM:
        return None
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        end = stop * width * _VALUE.itemsize
        if os.fstat(handle).st_size < end:
            return None
        offset = start * width * _VALUE.itemsize
        first_page = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = end - first_page
        address = _LIBC.mmap(None, length, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE, handle, first_page)
    finally:
        os.close(handle)
    if address is None or address == _MAP_FAILED:
        return None
    return np.asarray(_Mapped(address, length, address + offset - first_page, (stop - start, width)))


class _Mapped:
    """Pages mapped by ``mapped_rows``, seen by numpy as a float32 table at ``data``: the arrays
    made from it keep it alive, and the pages are unmapped when the last of them goes."""

    def __init__(self, address: int, length: int, data: int, shape):
        self.__array_interface__ = {"version": 3, "shape": shape, "typestr": _VALUE.str, "data": (data, False)}
        weakref.finalize(self, _LIBC.munmap, address, length)


def _libc():
    """The C library's ``mmap`` and ``munmap`` through ctypes, or ``None`` where there are none."""
    if os.name != "posix" or not hasattr(mmap, "MAP_PRIVATE") or ctypes.sizeof(ctypes.c_void_p) < 8:
        return None  # (on 32-bit systems ``off_t`` may not be the 64 bits declared below)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_int64]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()
_MAP_FAILED = ctypes.c_void_p(-1).value


def read_nodes(path: str, width: int, start: int, stop: int) -> np.ndarray:
    """Nodes ``[start, stop)`` of a level file as ``(nodes, width)`` records (fewer past its end)."""
    flat = _read(path, pyramid.NODE, start * width, (stop - start) * width)
    whole = flat.size // width if width else 0
    return flat[: whole * width].reshape(whole, width)
