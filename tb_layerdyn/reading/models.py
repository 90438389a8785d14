"""A model's layer metrics as one table: its layout tags merged by layer name, read by range.

A tracker writes a new layout tag when its layers change (a layer appears, the depth order is
learned after the first call), so one model of a run may span several tags. This module is the one
merge rule, for ``read()`` and the plugin alike:

* layers and groups are ordered as the newest layout orders them; a name only older layouts know
  goes right after its nearest predecessor there (``merge_order``);
* where two layouts hold the same step and series, the layout that started later wins where it
  has a defined value.

Queries read only what they return: a chart's range is summarised from the pyramid of each tag
(``columns``, ``pyramid``) when the tags follow one another in steps, as a tracker writes them; tags
that overlap in steps are merged row by row over the range asked for.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.reading import columns, downsample, pyramid

TARGETS = ("layers", "groups")


def merge_order(orders: Sequence[Sequence[str]]) -> List[str]:
    """Merges several depth orders, oldest first, into one that keeps each name's neighbours.

    The newest order wins; a name that only older orders know is placed right after the nearest
    name that precedes it in its own order and is already placed (or first, when none is).
    """
    merged: List[str] = []
    for order in reversed(orders):
        for position, name in enumerate(order):
            if name in merged:
                continue
            anchor = -1
            for previous in reversed(order[:position]):
                if previous in merged:
                    anchor = merged.index(previous)
                    break
            merged.insert(anchor + 1, name)
    return merged


class _Tag:
    """One layout tag of the model: its files, and its steps once a query needs them."""

    def __init__(self, files: columns.TagFiles, layout: layer_metrics.Layout, rows: int, first: int, last: int):
        self.files = files
        self.layout = layout
        self.rows = rows
        self.first = first
        self.last = last
        self._steps = None

    @property
    def width(self) -> int:
        return self.layout.shape[1]

    @property
    def steps(self):
        """The tag's steps: an ``EvenSteps`` when they are evenly spaced (a run logged every
        ``k`` steps, the usual case: a few bytes, whatever the length), else the int64 array."""
        if self._steps is None:
            steps = columns.read_steps(self.files, self.rows)
            # Fewer steps than the manifest counted: a rebuild removed or cut this state's columns
            # while a table of it was still in use. It answers from what is left (often nothing).
            self.rows = min(self.rows, len(steps))
            self._steps = EvenSteps.of(steps[: self.rows])
        return self._steps


class EvenSteps:
    """Evenly spaced ascending steps ``first + stride * i`` for ``i < count``, held as those three
    numbers: indexed like the array they stand for (an int, a slice or an int array gives what
    the array would), with ``searchsorted`` and ``len``; ``np.asarray`` gives the array."""

    def __init__(self, first: int, stride: int, count: int):
        self.first, self.stride, self.count = first, stride, count
        self.nbytes = 24

    @classmethod
    def of(cls, steps: np.ndarray):
        """``EvenSteps`` of ``steps`` when they are evenly spaced and ascending, else ``steps``."""
        if len(steps) < 2:
            return steps
        stride = int(steps[1]) - int(steps[0])
        if stride <= 0 or not np.array_equal(np.diff(steps), np.full(len(steps) - 1, stride)):
            return steps
        return cls(int(steps[0]), stride, len(steps))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.first + self.stride * np.arange(*index.indices(self.count), dtype=np.int64)
        positions = np.asarray(index)
        if positions.dtype.kind not in "iu":
            raise IndexError(f"steps are indexed by ints or slices, got {positions.dtype}")
        if positions.size and (positions.min() < -self.count or positions.max() >= self.count):
            raise IndexError(f"index out of range for {self.count} steps")
        positions = np.where(positions < 0, positions + self.count, positions)
        found = self.first + self.stride * positions.astype(np.int64)
        return np.int64(found) if found.ndim == 0 else found

    def __array__(self, dtype=None, copy=None):
        return self[:] if dtype is None else self[:].astype(dtype)

    def searchsorted(self, value, side: str = "left") -> int:
        """Where ``value`` would go among the steps, as ``np.searchsorted`` of the array (on a
        step, "left" gives its index and "right" the next one); exact in integers."""
        if not isinstance(value, (int, np.integer)):
            return int(np.searchsorted(self[:], value, side=side))
        value = int(value)
        if side == "left":
            index = -((self.first - value) // self.stride)  # ceil((value - first) / stride)
        else:
            index = (value - self.first) // self.stride + 1
        return min(max(index, 0), self.count)


@dataclasses.dataclass(frozen=True)
class Series:
    """The answer to a range query: steps, and values per step and series (NaN where undefined).

    Attributes:
        names: the series, in depth order (layers or groups).
        steps: int64 steps of the points.
        values: float32 ``(len(steps), len(names))``.
        downsampled: whether points summarise bins of steps rather than being the steps.
        bounds: int64 ``(len(steps), 2)``: the first and last step of the bin each point
            summarises (a logged step stands for itself).
    """

    names: List[str]
    steps: np.ndarray
    values: np.ndarray
    downsampled: bool
    bounds: np.ndarray


class ModelTable:
    """The merged layer metrics of one model of one run.

    Args:
        run: the ``store.RunData``.
        tag_ids: the model's layer-metric tags.
        model: the model's name (``None`` for a tracker without one).
    """

    def __init__(self, run, tag_ids: Sequence[int], model: Optional[str]):
        self.run = run.name
        self.model = model
        tags = []
        for tag_id in tag_ids:
            first, last = run.step_range[tag_id]
            if run.rows[tag_id] and first is not None:
                tags.append(_Tag(run.tag_files(tag_id), run.tags[tag_id].layout, run.rows[tag_id], first, last))
        # Layouts in the order they started: later ones win where they overlap.
        self._tags = sorted(tags, key=lambda t: t.first)
        layouts = [t.layout for t in self._tags]
        self.layers = merge_order([lay.layers for lay in layouts])
        group_names = merge_order([[g.name for g in lay.groups] for lay in layouts])
        groups, counts, descriptions = {}, {}, {}
        for lay in layouts:
            counts.update(zip(lay.layers, lay.param_counts))
            if lay.descriptions is not None:
                descriptions.update(zip(lay.layers, lay.descriptions))
            for group in lay.groups:
                groups[group.name] = group
        self.groups = [groups[name] for name in group_names]
        self.param_counts = [int(counts[name]) for name in self.layers]
        self.descriptions = [descriptions.get(name) for name in self.layers] if descriptions else None
        known = {name: i for i, name in enumerate(layer_metrics.METRIC_NAMES)}
        logged = {m for lay in layouts for m in lay.metrics}
        self.metrics = sorted(logged, key=lambda m: (known.get(m, len(known)), m))
        latest = layouts[-1] if layouts else None
        self.info = {
            "rwc": latest.rwc if latest else None,
            "granularity": latest.granularity if latest else None,
            "order": latest.order if latest else None,
        }
        self._all_steps = None

    @property
    def empty(self) -> bool:
        return not self._tags

    @property
    def last_step(self) -> Optional[int]:
        """The largest logged step."""
        return max((t.last for t in self._tags), default=None)

    @property
    def steps(self) -> np.ndarray:
        """Every logged step, ascending."""
        if len(self._tags) == 1:
            return np.asarray(self._tags[0].steps)
        if self._all_steps is None:
            parts = [np.asarray(t.steps) for t in self._tags]
            self._all_steps = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
        return self._all_steps

    @property
    def num_steps(self) -> int:
        """How many steps were logged (``len(steps)``, without building them for one layout)."""
        return len(self._tags[0].steps) if len(self._tags) == 1 else len(self.steps)

    @property
    def nbytes(self) -> int:
        """Bytes of the steps this table holds in memory."""
        held = sum(t.steps.nbytes for t in self._tags if t._steps is not None)
        return held + (self._all_steps.nbytes if self._all_steps is not None else 0)

    def names(self, target: str) -> List[str]:
        """The series of a target: layers, or groups."""
        return list(self.layers) if target == "layers" else [g.name for g in self.groups]

    # ------------------------------------------------------------------ queries

    def series(self, metric: str, target: str, bins: int, start=None, end=None) -> Series:
        """One metric over steps ``[start, end]`` (all when ``None``), at most ``2 * bins``
        points: every logged step when they fit, else per bin its first and last step carrying
        the bin's minimum and maximum of each series, in the order they occurred."""
        return self._query(metric, target, start, end, bins, _envelope_segment, _envelope_rows)

    def heatmap(self, metric: str, target: str, bins: int, start=None, end=None) -> Series:
        """One metric over steps ``[start, end]``: every logged step when at most ``bins``,
        else the mean of each bin of steps at the bin's last step."""
        return self._query(metric, target, start, end, bins, _means_segment, _means_rows)

    def latest(self, metric: str, target: str) -> np.ndarray:
        """Per series, its value at the last step where it is defined (NaN when never)."""
        names = self.names(target)
        best_step = np.full(len(names), -1, dtype=np.int64)
        values = np.full(len(names), np.nan, dtype=np.float32)
        for tag in self._tags:  # later layouts last, so they win a tie
            if metric not in tag.layout.metrics:
                continue
            m = tag.layout.metrics.index(metric)
            src, dst = _columns(tag.layout, names, target)
            last_rows = columns.read_latest(tag.files, tag.width)[m][src]
            steps = tag.steps  # before ``tag.rows``, which they settle
            for s, d, row in zip(src, dst, last_rows):
                if row < 0 or row >= tag.rows:
                    continue
                step = int(steps[row])
                if step >= best_step[d]:
                    best_step[d] = step
                    values[d] = columns.read_rows(tag.files.values(m), tag.width, row, row + 1)[0, s]
        return values

    def table(self, metric: str, target: str, start=None, end=None) -> Series:
        """Every logged step of one metric over ``[start, end]``, merged; nothing summarised."""
        return self.tables(metric, [target], start, end)[0]

    def tables(self, metric: str, targets: Sequence[str], start=None, end=None) -> List[Series]:
        """``table`` of several targets, each row of the store read once for all of them."""
        named = [(target, self.names(target)) for target in targets]
        segments = self._segments(start, end)
        mapped = self._mapped_targets(metric, named, segments)
        steps, outs = mapped if mapped is not None else self._merged_targets(metric, named, segments)
        return [
            Series(names, steps, rows, False, np.stack([steps, steps], axis=1))
            for (_, names), rows in zip(named, outs)
        ]

    # ------------------------------------------------------------------ shared machinery

    def _segments(self, start, end) -> List[Tuple[_Tag, int, int]]:
        """``(tag, first row, stop row)`` of each tag's rows in ``[start, end]``, by first step."""
        found = []
        for tag in self._tags:
            steps = tag.steps  # read first: they settle ``tag.rows`` to what the files hold
            first = 0 if start is None else int(steps.searchsorted(start, side="left"))
            stop = tag.rows if end is None else int(steps.searchsorted(end, side="right"))
            if stop > first:
                found.append((tag, first, stop))
        found.sort(key=lambda seg: int(seg[0].steps[seg[1]]))
        return found

    def _query(self, metric, target, start, end, bins, per_segment, per_rows) -> Series:
        names = self.names(target)
        segments = self._segments(start, end)
        if not segments:
            none = np.zeros(0, np.int64)
            return Series(names, none, np.zeros((0, len(names)), np.float32), False, none.reshape(0, 2))
        disjoint = all(
            a.steps[a_stop - 1] < b.steps[b_first]
            for (a, _, a_stop), (b, b_first, _) in zip(segments, segments[1:])
        )
        if not disjoint:
            steps, [rows] = self._merged_targets(metric, [(target, names)], segments)
            return Series(names, *per_rows(steps, rows, bins))
        shares = _shares([stop - first for _, first, stop in segments], bins)
        parts = []
        for (tag, first, stop), share in zip(segments, shares):
            src, dst = _columns(tag.layout, names, target)
            m = tag.layout.metrics.index(metric) if metric in tag.layout.metrics else None
            steps, values, summarised, bounds = per_segment(tag, m, src, first, stop, share)
            if values.dtype == np.float32 and np.array_equal(dst, np.arange(len(names))):
                placed = values  # every series, in order: an answer's size is not copied again
            else:
                placed = np.full((len(steps), len(names)), np.nan, dtype=np.float32)
                placed[:, dst] = values
            parts.append((steps, placed, summarised, bounds))
        if len(parts) == 1:
            return Series(names, *parts[0])
        return Series(
            names,
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            any(p[2] for p in parts),
            np.concatenate([p[3] for p in parts]),
        )

    def _mapped_targets(self, metric, targets, segments) -> Optional[Tuple[np.ndarray, List[np.ndarray]]]:
        """``_merged_targets`` as views of the rows mapped from the store (``columns.mapped_rows``)
        when one tag holds the whole range and each target's series as one run of columns, in
        order (the usual case); ``None`` otherwise, or when the rows cannot be mapped."""
        if len(segments) != 1:
            return None
        tag, first, stop = segments[0]
        if metric not in tag.layout.metrics:
            return None
        slices = []
        for target, names in targets:
            src, dst = _columns(tag.layout, names, target)
            src_slice = _as_slice(src)
            if src_slice is None or not np.array_equal(dst, np.arange(len(names))):
                return None
            slices.append(src_slice)
        path = tag.files.values(tag.layout.metrics.index(metric))
        rows = columns.mapped_rows(path, tag.width, first, stop)
        if rows is None:
            return None
        return np.asarray(tag.steps[first:stop], dtype=np.int64), [rows[:, cut] for cut in slices]

    def _merged_targets(self, metric, targets, segments) -> Tuple[np.ndarray, List[np.ndarray]]:
        """Every step of ``segments`` (those of ``_segments``) of every tag, merged by the rule of
        the module docstring, for each ``(target, names)``: each chunk of rows is read once for
        all of them."""
        if not segments:
            return np.zeros(0, np.int64), [np.zeros((0, len(names)), np.float32) for _, names in targets]
        disjoint = all(
            a.steps[a_stop - 1] < b.steps[b_first]
            for (a, _, a_stop), (b, b_first, _) in zip(segments, segments[1:])
        )
        if disjoint:  # each tag fills its own block of rows: no merge needed
            steps = np.concatenate([tag.steps[first:stop] for tag, first, stop in segments])
        else:
            steps = np.unique(np.concatenate([tag.steps[first:stop] for tag, first, stop in segments]))
        outs, mapped = [], []
        for target, names in targets:
            columns_of = {id(tag): _columns(tag.layout, names, target) for tag, _, _ in segments}
            # Disjoint tags that each hold the metric for every series fill every cell: no NaN first.
            filled = disjoint and all(
                metric in tag.layout.metrics and len(columns_of[id(tag)][1]) == len(names)
                for tag, _, _ in segments
            )
            out = columns.small_pages((len(steps), len(names)), np.float32)
            if not filled:
                out.fill(np.nan)
            outs.append(out)
            mapped.append(columns_of)
        row = 0
        for tag, first, stop in sorted(segments, key=lambda seg: seg[0].first):
            if metric not in tag.layout.metrics:
                row += stop - first
                continue
            m = tag.layout.metrics.index(metric)
            pairs = []
            for columns_of in mapped:
                src, dst = columns_of[id(tag)]
                if disjoint:
                    # Runs of columns are copied as slices, without a gathered temporary.
                    src_slice, dst_slice = _as_slice(src), _as_slice(dst)
                    if src_slice is not None and dst_slice is not None:
                        src, dst = src_slice, dst_slice
                pairs.append((src, dst))
            at = None if disjoint else np.searchsorted(steps, tag.steps[first:stop])
            per_read = max(1, _READ_BYTES // max(1, 4 * tag.width))
            # One buffer for every chunk: a fresh one per chunk is page-faulted in (zeroed by the
            # kernel) each time, which cost more than the copies themselves.
            buffer = np.empty((min(per_read, stop - first), tag.width), dtype=np.float32)
            for chunk in range(first, stop, per_read):
                rows = columns.read_rows(tag.files.values(m), tag.width, chunk, min(stop, chunk + per_read), buffer)
                for out, (src, dst) in zip(outs, pairs):
                    if disjoint:
                        # Segments are in step order, and sorting by first step keeps that order.
                        position = row + chunk - first
                        out[position : position + len(rows), dst] = rows[:, src]
                        continue
                    block = rows[:, src]
                    where = at[chunk - first : chunk - first + len(rows)]
                    target_block = out[np.ix_(where, dst)]
                    defined = ~np.isnan(block)
                    target_block[defined] = block[defined]
                    out[np.ix_(where, dst)] = target_block
            row += stop - first
        return steps, outs


def _as_slice(indices: np.ndarray) -> Optional[slice]:
    """``indices`` as a slice when they are consecutive and ascending, else ``None``."""
    if len(indices) == 0:
        return slice(0, 0)
    if len(indices) > 1 and not (np.diff(indices) == 1).all():
        return None
    return slice(int(indices[0]), int(indices[-1]) + 1)


def _shares(counts: List[int], bins: int) -> List[int]:
    """Bins for each segment, in proportion to its rows: at least one each, ``bins`` in all when
    there are no more segments than that."""
    total = sum(counts)
    shares = [max(1, bins * count // total) for count in counts]
    while sum(shares) > max(bins, len(shares)):
        largest = max(range(len(shares)), key=lambda i: shares[i])
        shares[largest] -= 1
    return shares


# Bytes of rows read at once when a table is assembled (a buffer that stays in the CPU's caches).
_READ_BYTES = 256 << 10


def _columns(layout: layer_metrics.Layout, names: List[str], target: str):
    """Tag columns and the series they fill, for a target: ``(source columns, destinations)``."""
    if target == "layers":
        own = {name: j for j, name in enumerate(layout.layers)}
        offset = 0
    else:
        own = {g.name: j for j, g in enumerate(layout.groups)}
        offset = len(layout.layers)
    pairs = [(offset + own[name], i) for i, name in enumerate(names) if name in own]
    src = np.array([p[0] for p in pairs], dtype=np.intp)
    dst = np.array([p[1] for p in pairs], dtype=np.intp)
    return src, dst


def _raw(tag: _Tag, m: Optional[int], src, first: int, stop: int) -> np.ndarray:
    if m is None:
        return np.full((stop - first, len(src)), np.nan, dtype=np.float32)
    return _pick(columns.read_rows(tag.files.values(m), tag.width, first, stop), src)


def _pick(table: np.ndarray, src: np.ndarray) -> np.ndarray:
    """The columns ``src`` of rows or nodes just read: a view when they are consecutive (a
    target's series usually are), else a copy."""
    consecutive = _as_slice(src)
    return table[:, consecutive] if consecutive is not None else table[:, src]


def _envelope_rows(steps, rows, bins):
    """``downsample.envelope`` of rows, with each point's bin."""
    out_steps, values, summarised = downsample.envelope(steps, rows, 2 * bins)
    if summarised:
        pairs = out_steps.reshape(-1, 2)
        bounds = np.repeat(pairs, 2, axis=0)
    else:
        bounds = np.stack([out_steps, out_steps], axis=1)
    return out_steps, values.astype(np.float32, copy=False), summarised, bounds


def _means_rows(steps, rows, bins):
    """``downsample.bin_means`` of rows, with each cell's bin."""
    out_steps, values, summarised = downsample.bin_means(steps, rows, bins)
    if summarised:
        edges = downsample.bin_edges(len(steps), bins)
        bounds = np.stack([steps[edges[:-1]], steps[edges[1:] - 1]], axis=1)
    else:
        bounds = np.stack([out_steps, out_steps], axis=1)
    return out_steps, values.astype(np.float32), summarised, bounds


def _parts(parts):
    """One segment's pieces (edges and nodes) joined, as ``(steps, values, True, bounds)``."""
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        True,
        np.concatenate([p[3] for p in parts]),
    )


def _envelope_read_in_chunks(tag: _Tag, m, src, first, stop, bins):
    """``_envelope_rows`` of one tag's rows ``[first, stop)``, more than ``2 * bins`` of them, read
    ``_ENVELOPE_CHUNK_BYTES`` of rows at a time: the same points, with temporaries the size of a
    chunk rather than of the range (a zoomed range of several thousand rows, read from the rows
    when the pyramid's nodes would be coarser than its bins, or a layout without the metric)."""
    count = stop - first
    edges = downsample.bin_edges(count, bins)
    row_bytes = max(1, tag.width * np.dtype(np.float32).itemsize)
    rows_per_bin = -(-count // bins)
    per_chunk = max(1, _ENVELOPE_CHUNK_BYTES // (row_bytes * rows_per_bin))
    out_steps = np.empty(2 * bins, dtype=np.int64)
    out_values = np.empty((2 * bins, len(src)), dtype=np.float32)
    for b0 in range(0, bins, per_chunk):
        b1 = min(bins, b0 + per_chunk)
        r0, r1 = int(edges[b0]), int(edges[b1])
        rows = _raw(tag, m, src, first + r0, first + r1)
        steps = tag.steps[first + r0 : first + r1]
        part_steps, part_values = downsample.envelope_bins(steps, rows, edges[b0 : b1 + 1] - r0)
        out_steps[2 * b0 : 2 * b1] = part_steps
        out_values[2 * b0 : 2 * b1] = part_values
    return out_steps, out_values, True, np.repeat(out_steps.reshape(-1, 2), 2, axis=0)


# Bytes of rows a downsampled envelope reads from the rows at a time (``_envelope_read_in_chunks``).
_ENVELOPE_CHUNK_BYTES = 1 << 20


def _envelope_segment(tag: _Tag, m, src, first, stop, bins):
    """Envelope of one tag's rows ``[first, stop)`` in at most ``bins`` bins."""
    count = stop - first
    levels = columns.levels_for(tag.rows)
    level = pyramid.choose_level(count, bins, levels) if m is not None else None
    if count > 2 * bins and level is None:
        return _envelope_read_in_chunks(tag, m, src, first, stop, bins)
    if count <= 2 * bins or level is None:
        return _envelope_rows(tag.steps[first:stop], _raw(tag, m, src, first, stop), bins)
    size = pyramid.node_size(level)
    inner_first = -(-first // size)
    inner_stop = min(stop // size, tag.rows // size)
    if inner_stop <= inner_first:
        return _envelope_rows(tag.steps[first:stop], _raw(tag, m, src, first, stop), bins)
    ends = []  # the partial blocks at the start and the end, one bin each
    for edge in (slice(first, inner_first * size), slice(inner_stop * size, stop)):
        rows = _raw(tag, m, src, edge.start, edge.stop) if edge.stop > edge.start else None
        ends.append(None if rows is None else _envelope_rows(tag.steps[edge], rows, 1))
    nodes = _pick(columns.read_nodes(tag.files.level(m, level), tag.width, inner_first, inner_stop), src)
    if len(nodes) < inner_stop - inner_first:  # the level file was cut while reading
        return _envelope_read_in_chunks(tag, m, src, first, stop, bins)
    # Every point is written once into the answer's own arrays: the head's, the nodes' two each
    # (the minimum first where it came first), the tail's.
    head, tail = (0 if e is None else len(e[0]) for e in ends)
    total = head + 2 * len(nodes) + tail
    out_steps = np.empty(total, dtype=np.int64)
    out_values = np.empty((total, len(src)), dtype=np.float32)
    out_bounds = np.empty((total, 2), dtype=np.int64)
    for end, at in zip(ends, (0, total - tail)):
        if end is not None:
            out_steps[at : at + len(end[0])] = end[0]
            out_values[at : at + len(end[0])] = end[1]
            out_bounds[at : at + len(end[0])] = end[3]
    starts = np.arange(inner_first, inner_stop) * size
    one, two = slice(head, total - tail, 2), slice(head + 1, total - tail, 2)
    out_steps[one] = tag.steps[starts]
    out_steps[two] = tag.steps[starts + size - 1]
    out_bounds[one, 0] = out_bounds[two, 0] = out_steps[one]
    out_bounds[one, 1] = out_bounds[two, 1] = out_steps[two]
    min_first = nodes["min_first"].astype(bool)
    np.copyto(out_values[one], nodes["max"])
    np.copyto(out_values[one], nodes["min"], where=min_first)
    np.copyto(out_values[two], nodes["min"])
    np.copyto(out_values[two], nodes["max"], where=min_first)
    return out_steps, out_values, True, out_bounds


def _means_segment(tag: _Tag, m, src, first, stop, bins):
    """Bin means of one tag's rows ``[first, stop)`` in at most ``bins`` bins."""
    count = stop - first
    levels = columns.levels_for(tag.rows)
    level = pyramid.choose_level(count, bins, levels) if m is not None else None
    if count <= bins or level is None:
        return _means_rows(tag.steps[first:stop], _raw(tag, m, src, first, stop), bins)
    size = pyramid.node_size(level)
    inner_first = -(-first // size)
    inner_stop = min(stop // size, tag.rows // size)
    if inner_stop <= inner_first:
        return _means_rows(tag.steps[first:stop], _raw(tag, m, src, first, stop), bins)
    parts = []
    if inner_first * size > first:
        edge = slice(first, inner_first * size)
        parts.append(_means_rows(tag.steps[edge], _raw(tag, m, src, edge.start, edge.stop), 1))
    nodes = _pick(columns.read_nodes(tag.files.level(m, level), tag.width, inner_first, inner_stop), src)
    if len(nodes) < inner_stop - inner_first:
        return _means_rows(tag.steps[first:stop], _raw(tag, m, src, first, stop), bins)
    starts = np.arange(inner_first, inner_stop) * size
    bounds = np.stack([tag.steps[starts], tag.steps[starts + size - 1]], axis=1)
    parts.append((tag.steps[starts + size - 1], nodes["mean"].astype(np.float32), True, bounds))
    if stop > inner_stop * size:
        edge = slice(inner_stop * size, stop)
        parts.append(_means_rows(tag.steps[edge], _raw(tag, m, src, edge.start, edge.stop), 1))
    return _parts(parts)


def model_tables(run) -> Dict[Optional[str], ModelTable]:
    """The run's models (``None`` for an unnamed tracker), each as one ``ModelTable``, by name."""
    by_model: Dict[Optional[str], List[int]] = {}
    for tag_id in run.metric_tags():
        by_model.setdefault(run.tags[tag_id].layout.model, []).append(tag_id)
    tables = {model: ModelTable(run, ids, model) for model, ids in by_model.items()}
    return {m: t for m, t in sorted(tables.items(), key=lambda kv: (kv[0] is not None, kv[0] or "")) if not t.empty}

