"""A run's pictures as readers see them: per kind and layer, the steps with a picture, decoded on demand.

Pictures are large, so the store keeps only where their records lie (``store.INDEX_ENTRY``); this
module lists them and reads a record again when a frame is asked for. ``read()`` and the plugin
both list pictures through ``kind_pictures``, with these rules:

* within one tag, TensorBoard's rule: a record at step ``s`` drops the tag's records at ``s`` and
  later (the store's index already applies it, across refreshes and files);
* one model's pictures of one kind may span several tags, since a tracker writes a new layout tag
  when its layers change: layers are merged by name, in the newest layout's depth order
  (``models.merge_order``), each described as the newest layout that has it describes it;
* where several records hold a picture of one layer at one step, the one written last (the latest
  wall time, then the record read later) is the one kept, as TensorBoard keeps the last value of a
  repeated step;
* a layer's steps are those where it has a picture: a layer without a gradient has no gradient
  picture at that step, and ``updates`` have none at the first call.

Listing a kind reads each of its records once, for its facts (each plane's interval and
quantiles), which the steps and the fixed scales need. ``FactsCache`` keeps those facts (four
numbers per plane and picture), never the pixels, so a later listing reads only new records and
what stays in memory does not grow with the size of the pictures.
"""

import collections
import collections.abc
import dataclasses
import threading
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tb_layerdyn.format import envelope
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.reading import models

KINDS = payload.PICTURES
# (low, high, q_low, q_high) of each plane, as the payload's facts hold them.
FACTS = 4
# Records whose facts ``FactsCache`` keeps by default: about 64 MiB for pictures of ten layers.
DEFAULT_CACHED_RECORDS = 200_000


def _record_key(run, entry):
    tag = run.tags[int(entry["tag"])].tag
    return (run.name, tag, int(entry["step"]), float(entry["wall_time"]), int(entry["offset"]),
            int(entry["length"]))


class FactsCache:
    """The facts of picture records, read once each and kept by record.

    A record is known by its run, tag, step, wall time and place in its event file, so the facts
    of a run read before stay valid when the store commits a new state of that run.

    Args:
        max_records: records kept; the least recently used are forgotten past it.
    """

    def __init__(self, max_records: int = DEFAULT_CACHED_RECORDS):
        self.max_records = max_records
        self._facts: "collections.OrderedDict[tuple, np.ndarray]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._facts)

    def facts(self, run, entry, layout: payload.Layout) -> Optional[np.ndarray]:
        """The facts of one indexed picture record.

        Args:
            run: the ``store.RunData``.
            entry: the record's ``store.INDEX_ENTRY``.
            layout: its tag's ``Layout``.

        Returns:
            float64 ``(layers, planes, FACTS)`` in the layout's order, NaN for a layer without a
            picture; ``None`` when the record can no longer be read from its event file.
        """
        key = _record_key(run, entry)
        with self._lock:
            found = self._facts.get(key)
            if found is not None:
                self._facts.move_to_end(key)
                return found
        pictures = _decoded(run, entry, layout)
        if pictures is None:
            return None
        facts = np.full((len(layout.layers), len(layout.planes), FACTS), np.nan)
        for index, picture in enumerate(pictures):
            if picture is not None:
                for p, plane in enumerate(picture.planes):
                    facts[index, p] = (*plane.interval, *plane.quantiles)
        with self._lock:
            self._facts[key] = facts
            while len(self._facts) > self.max_records:
                self._facts.popitem(last=False)
        return facts


def _decoded(run, entry, layout):
    """``payload.decode`` of a record read again, or ``None`` when it is gone or no longer fits
    (the collector checked it when it was indexed, so only a rewritten file gets there)."""
    value = run.read_value(entry)
    if value is None:
        return None
    try:
        return payload.decode(layout, value)
    except envelope.FormatError:
        return None


@dataclasses.dataclass(frozen=True, eq=False)
class KindPictures:
    """One kind of pictures of one model: per step and layer, the record that holds the picture.

    Attributes:
        kind: the picture kind (``payload.PICTURES``).
        model: the tracker's name, or ``None``.
        planes: the planes of each picture (``("value",)`` or ``("travel", "weight")``).
        maps: how each plane is drawn (``"diverging"``, ``"gray"``, ``"opacity"``).
        layers: layer (or module) names, merged in depth order.
        descriptions: per layer, what its picture shows (from the newest layout that has it).
        steps: ascending int64 ``(S,)``: the steps where some layer has a picture.
        wall_times: float64 ``(S,)``: the latest wall time of the records drawn at each step.
        records: int32 ``(S, layers)``: the row of ``entries`` holding each picture, ``-1`` where
            the layer has none at that step.
        positions: int32 ``(S, layers)``: the layer's index in that record's layout.
        facts: float64 ``(S, layers, planes, FACTS)``: each picture's facts, NaN where none.
        entries: the records drawn (``store.INDEX_ENTRY``).
        layouts: the ``Layout`` of each of ``entries``.
    """

    kind: str
    model: Optional[str]
    planes: Tuple[str, ...]
    maps: Tuple[str, ...]
    layers: Tuple[str, ...]
    descriptions: Tuple[str, ...]
    steps: np.ndarray
    wall_times: np.ndarray
    records: np.ndarray
    positions: np.ndarray
    facts: np.ndarray
    entries: np.ndarray
    layouts: Tuple[payload.Layout, ...]

    def layer_steps(self, column: int) -> np.ndarray:
        """The rows of ``steps`` where layer ``column`` has a picture."""
        return np.flatnonzero(self.records[:, column] >= 0)

    def fixed_scales(self, column: int, rows: Optional[Sequence[int]] = None) -> List[Tuple[float, float]]:
        """Per plane, the scale shared by the layer's frames (``payload.fixed_scale`` over the
        quantiles of every frame it has, or of ``rows`` of ``steps``)."""
        if rows is None:
            rows = self.layer_steps(column)
        quantiles = self.facts[rows, column, :, 2:]
        return [payload.fixed_scale(m, quantiles[:, p]) for p, m in enumerate(self.maps)]

    def frame_scales(self, row: int, column: int) -> List[Tuple[float, float]]:
        """Per plane, the frame's own scale (``payload.frame_scale``) of one picture."""
        return [payload.frame_scale(m, self.facts[row, column, p, 2:]) for p, m in enumerate(self.maps)]

    def geometry(self, row: int, column: int) -> Tuple[payload.Layout, int]:
        """``(layout, index)`` of one picture: its record's layout and the layer's place in it."""
        return self.layouts[int(self.records[row, column])], int(self.positions[row, column])

    def frame(self, run, row: int) -> Optional[List[Optional[payload.Picture]]]:
        """Every layer's ``Picture`` at ``steps[row]`` (``None`` where a layer has none), each
        record read once; ``None`` when a record can no longer be read."""
        by_record: Dict[int, Optional[list]] = {}
        out: List[Optional[payload.Picture]] = []
        for column in range(len(self.layers)):
            record = int(self.records[row, column])
            if record < 0:
                out.append(None)
                continue
            if record not in by_record:
                by_record[record] = _decoded(run, self.entries[record], self.layouts[record])
            pictures = by_record[record]
            if pictures is None:
                return None
            out.append(pictures[int(self.positions[row, column])])
        return out


def _picture_tags(run, model, kind=None) -> List[int]:
    """Ids of the usable picture tags of a model (and kind), in the order they were first seen."""
    return [
        i for i, state in enumerate(run.tags)
        if state.kind == payload.KIND and state.error is None and state.layout.model == model
        and (kind is None or state.layout.picture == kind)
    ]


def logged_kinds(run, first=None, last=None) -> Dict[Optional[str], List[str]]:
    """Per model name (``None`` for a tracker without one), the picture kinds a run holds
    records of (at steps in ``[first, last]``), in ``KINDS`` order. Reads no record."""
    found: Dict[Optional[str], set] = {}
    index = run.index()
    if first is not None:
        index = index[index["step"] >= first]
    if last is not None:
        index = index[index["step"] <= last]
    tags = set(np.unique(index["tag"]).tolist())
    for i, state in enumerate(run.tags):
        if i in tags and state.kind == payload.KIND and state.error is None:
            found.setdefault(state.layout.model, set()).add(state.layout.picture)
    return {model: [k for k in KINDS if k in kinds] for model, kinds in found.items()}


def kind_pictures(run, model, kind, facts: FactsCache, first=None, last=None) -> Optional[KindPictures]:
    """Lists one kind of pictures of a model of a run (see the module docstring for the rules).

    Args:
        run: the ``store.RunData``.
        model: the tracker's name (``None`` for pictures written without one).
        kind: one of ``KINDS``.
        facts: where facts of records read before are kept.
        first, last: only steps in ``[first, last]`` (``None`` for an open end).

    Returns:
        The ``KindPictures``, or ``None`` when the model has no picture of that kind in range.
    """
    tag_ids = _picture_tags(run, model, kind)
    if not tag_ids:
        return None
    index = run.index()
    wanted = np.isin(index["tag"], tag_ids)
    if first is not None:
        wanted &= index["step"] >= first
    if last is not None:
        wanted &= index["step"] <= last
    positions_read = np.flatnonzero(wanted)
    layers = models.merge_order([run.tags[t].layout.layers for t in tag_ids])
    column_of = {name: c for c, name in enumerate(layers)}
    descriptions = {}
    for t in tag_ids:
        descriptions.update(zip(run.tags[t].layout.layers, run.tags[t].layout.descriptions))
    # (step, column) -> ((wall time, read order), record, index in its layout)
    chosen: Dict[Tuple[int, int], tuple] = {}
    records, layouts, record_facts = [], [], []
    for position in positions_read.tolist():
        entry = index[position]
        layout = run.tags[int(entry["tag"])].layout
        found = facts.facts(run, entry, layout)
        if found is None:
            continue
        record = len(records)
        records.append(entry)
        layouts.append(layout)
        record_facts.append(found)
        order = (float(entry["wall_time"]), position)
        step = int(entry["step"])
        for k, name in enumerate(layout.layers):
            if np.isnan(found[k, 0, 0]):
                continue
            key = (step, column_of[name])
            if key not in chosen or order >= chosen[key][0]:
                chosen[key] = (order, record, k)
    if not chosen:
        return None
    steps = np.array(sorted({step for step, _ in chosen}), dtype=np.int64)
    row_of = {step: r for r, step in enumerate(steps.tolist())}
    num_planes = len(payload.PLANES[kind])
    record_rows = np.full((len(steps), len(layers)), -1, dtype=np.int32)
    layer_rows = np.zeros((len(steps), len(layers)), dtype=np.int32)
    facts_rows = np.full((len(steps), len(layers), num_planes, FACTS), np.nan)
    wall_times = np.full(len(steps), -np.inf)
    for (step, column), ((wall_time, _), record, k) in chosen.items():
        row = row_of[step]
        record_rows[row, column] = record
        layer_rows[row, column] = k
        facts_rows[row, column] = record_facts[record][k]
        wall_times[row] = max(wall_times[row], wall_time)
    newest = run.tags[tag_ids[-1]].layout
    return KindPictures(
        kind=kind,
        model=model,
        planes=newest.planes,
        maps=newest.maps,
        layers=tuple(layers),
        descriptions=tuple(descriptions[name] for name in layers),
        steps=steps,
        wall_times=wall_times,
        records=record_rows,
        positions=layer_rows,
        facts=facts_rows,
        entries=np.array(records, dtype=index.dtype),
        layouts=tuple(layouts),
    )


def model_pictures(run, model, facts: FactsCache, first=None, last=None) -> Dict[str, KindPictures]:
    """Every kind of pictures of a model of a run, in ``KINDS`` order (kinds without any left out)."""
    found = {}
    for kind in logged_kinds(run, first, last).get(model, []):
        listed = kind_pictures(run, model, kind, facts, first, last)
        if listed is not None:
            found[kind] = listed
    return found


class Listings:
    """The plugin's listings of pictures, per state of a run: each listed once, from facts read once.

    Args:
        max_listings: listings of (run, model) kept; the least recently used are dropped past it.
        facts: the ``FactsCache`` behind them (a new one by default).
    """

    def __init__(self, max_listings: int = 64, facts: Optional[FactsCache] = None):
        self.max_listings = max_listings
        self.facts = facts if facts is not None else FactsCache()
        self._listed: "collections.OrderedDict[tuple, Dict[str, KindPictures]]" = collections.OrderedDict()
        self._lock = threading.Lock()

    def model_pictures(self, key, run, model) -> Dict[str, KindPictures]:
        """``model_pictures`` of a run's committed state, listed again only when it changed.

        Args:
            key: what names the run among every logdir served (its entry name in the tab).
            run: the ``store.RunData``; its ``stamp`` says which state it is.
            model: the tracker's name, or ``None``.
        """
        cache_key = (key, run.stamp, model)
        with self._lock:
            found = self._listed.get(cache_key)
            if found is not None:
                self._listed.move_to_end(cache_key)
                return found
        listed = model_pictures(run, model, self.facts)
        with self._lock:
            for stale in [k for k in self._listed if k[0] == key and k[2] == model]:
                del self._listed[stale]
            self._listed[cache_key] = listed
            while len(self._listed) > self.max_listings:
                self._listed.popitem(last=False)
        return listed


# ----------------------------------------------------------------------------- read()'s view


class PictureSeries:
    """One layer's pictures of one kind, step by step, as ``Run.images[kind][layer]`` gives them.

    Nothing is decoded until asked for: ``values(i)`` and ``rgb(i)`` read the record of step
    ``steps[i]`` again from its event file and decode that one picture.

    Attributes:
        kind: the picture kind (``"weights"``, ``"gradients"``, ``"updates"``, ``"travel"``,
            ``"activations"``).
        layer: the layer's name (for activations, the module's).
        planes: the planes of each picture: ``("value",)``, or ``("travel", "weight")`` for travel.
        maps: how each plane is coloured: ``"diverging"`` (PiYG over a symmetric scale), ``"gray"``,
            or ``"opacity"`` (travel as the opacity of the weight's colour).
        description: what the picture shows and how it was reduced (as the newest layout says).
        steps: ascending int64 array of the steps with a picture of this layer.
        scales: per plane, the ``(low, high)`` of the colour scale fixed across ``steps``: the
            widest of the frames' own (see ``tb_layerdyn.format.pictures``).
        scale: ``scales[0]``, the scale of what ``values`` holds.
    """

    def __init__(self, run, listed: KindPictures, column: int):
        self._run = run
        self._listed = listed
        self._column = column
        self._rows = listed.layer_steps(column)
        self.kind = listed.kind
        self.layer = listed.layers[column]
        self.planes = listed.planes
        self.maps = listed.maps
        self.description = listed.descriptions[column]
        self.steps = listed.steps[self._rows]
        self.scales = [tuple(s) for s in listed.fixed_scales(column, self._rows)]
        self.scale = self.scales[0]

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"PictureSeries(kind={self.kind!r}, layer={self.layer!r}, steps={len(self.steps)})"

    def _row(self, i) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"i must be an int index into steps, got {type(i).__name__}")
        if not -len(self._rows) <= i < len(self._rows):
            raise IndexError(f"i={i} is out of range for {len(self._rows)} steps")
        return int(self._rows[i])

    def picture(self, i) -> payload.Picture:
        """The decoded ``Picture`` (its planes' PNGs, intervals and quantiles) at ``steps[i]``.

        Raises:
            OSError: the record can no longer be read from its event file.
        """
        row = self._row(i)
        pictures = self._listed.frame(self._run, row)
        if pictures is None:
            raise OSError(
                f"the {self.kind} picture of {self.layer!r} at step {int(self._listed.steps[row])} can "
                "no longer be read from its event file"
            )
        return pictures[self._column]

    def values(self, i, plane=0) -> np.ndarray:
        """The values logged at ``steps[i]``: float64 ``(height, width)`` as stored (gaps between
        tiles left out), NaN where a value was not finite or a grid cell is empty.

        Args:
            i: an index into ``steps`` (negative ones count from the end).
            plane: the plane, by index or name (for travel, ``"weight"`` is the weight whose colour
                the travel's opacity shows).
        """
        if isinstance(plane, str):
            if plane not in self.planes:
                raise ValueError(f"plane must be one of {list(self.planes)}, got {plane!r}")
            plane = self.planes.index(plane)
        return self.picture(i).planes[plane].values()

    def frame_scales(self, i) -> List[Tuple[float, float]]:
        """Per plane, the frame's own scale at ``steps[i]`` (the per-frame alternative)."""
        return [tuple(s) for s in self._listed.frame_scales(self._row(i), self._column)]

    def rgb(self, i, *, per_frame: bool = False) -> np.ndarray:
        """The picture at ``steps[i]`` as the Layer Dynamics tab draws it: ``uint8`` ``(H, W, 3)``,
        tiles one pixel apart.

        Args:
            i: an index into ``steps``.
            per_frame: colour with the frame's own scale instead of the fixed ``scales``.
        """
        row = self._row(i)
        picture = self.picture(i)
        scales = self._listed.frame_scales(row, self._column) if per_frame else self.scales
        layout, index = self._listed.geometry(row, self._column)
        return payload.rgb(layout, index, [plane.values() for plane in picture.planes], scales)


class Images(collections.abc.Mapping):
    """``kind -> {layer: PictureSeries}`` of one model of a run, listed when a kind is first asked
    for (``read()`` itself reads no picture record)."""

    def __init__(self, run, model, facts: FactsCache, first=None, last=None):
        self._run = run
        self._model = model
        self._facts = facts
        self._range = (first, last)
        self._kinds = logged_kinds(run, first, last).get(model, [])
        self._listed: Dict[str, Dict[str, PictureSeries]] = {}

    def __getitem__(self, kind) -> Dict[str, PictureSeries]:
        if kind not in self._kinds:
            raise KeyError(kind)
        if kind not in self._listed:
            listed = kind_pictures(self._run, self._model, kind, self._facts, *self._range)
            series = {}
            if listed is not None:
                for column, name in enumerate(listed.layers):
                    if len(listed.layer_steps(column)):
                        series[name] = PictureSeries(self._run, listed, column)
            self._listed[kind] = series
        return self._listed[kind]

    def __iter__(self):
        return iter(self._kinds)

    def __len__(self) -> int:
        return len(self._kinds)

    def __repr__(self) -> str:
        return f"Images({self._kinds})"
