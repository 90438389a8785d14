"""From event records to this plugin's payloads, with the rules TensorBoard applies.

``read()`` and the TensorBoard plugin both feed event files through one ``Collector`` per run; only
where the files come from differs. The collector keeps TensorBoard's rules (its Rust data server's,
the default loader), so every reader agrees with the charts:

* a run's event files are read in name order, each from where the last read stopped to its end;
* a tag's content comes from the first event of that tag seen in the run;
* within a tag, a record at step ``s`` drops the records kept at steps ``s`` and later, then is kept
  (a repeated step keeps its last record; a run restarted from an earlier step keeps the restart).

It decides nothing about storage: it hands each decoded payload to a sink (the store). A tag whose
content is foreign, malformed or of a newer version, and an event that does not fit its tag's
layout, are skipped with one warning that names the run and the tag; the rest of the run is read
as before.
"""

import dataclasses
import logging
from typing import Dict, List, Optional

from google.protobuf import message
from tensorboard.compat.proto import event_pb2

import numpy as np

from tb_layerdyn import format as payload_format
from tb_layerdyn.format import envelope, framing, layer_metrics, sketches
from tb_layerdyn.reading import templates

logger = logging.getLogger(__name__)

# Column kinds whose one-call records are kept as their raw float32 bytes on a first read.
_SINGLE_CALL = {
    layer_metrics.KIND: layer_metrics.single_call_bytes,
    sketches.KIND: sketches.single_call_bytes,
}


@dataclasses.dataclass
class TagState:
    """What a run knows about one of its tags.

    Attributes:
        tag: the tag.
        kind: the payload kind's name (``format.<kind>.KIND``).
        content: the content dict of its first event, ``None`` when unusable.
        error: why the tag is skipped, or ``None``.
        layout: the kind's checked layout (``layer_metrics.Layout`` or a sweep layout dict).
        skipped: events of a usable tag skipped because they did not fit its layout.
    """

    tag: str
    kind: str
    content: Optional[dict]
    error: Optional[str]
    layout: object = None
    skipped: int = 0


class Sink:
    """Where a collector's payloads go (the store implements it)."""

    def tag_added(self, tag_id: int, state: TagState) -> None:
        """A tag was seen for the first time in the run."""

    def metrics(self, tag_id: int, steps, values, file_index: int) -> None:
        """Layer-metric calls of a tag: int64 ``steps`` and float32 ``(calls, metrics, columns)``."""

    def metrics_one(self, tag_id: int, step: int, content: bytes, file_index: int) -> None:
        """One layer-metric call as its packed float32 bytes (``layer_metrics.single_call_bytes``)."""

    def metrics_many(self, tag_id: int, steps, values, file_index: int) -> None:
        """Consecutive one-call records of a tag at once: int64 ``steps`` and float32 ``(calls,
        metrics, columns)``, each call exactly as ``metrics_one`` would have received it."""
        for step, call in zip(steps.tolist(), values):
            self.metrics_one(tag_id, step, call.tobytes(), file_index)

    def indexed(self, tag_id: int, step: int, wall_time: float, file_index: int, offset: int,
                length: int) -> None:
        """A payload read again on demand from its record (sweeps, pictures): where it lies."""

    def warn(self, text: str) -> None:
        """Something of the run was skipped; ``text`` says what and why."""


class Collector:
    """Decodes the records of one run's event files into payloads for a sink.

    Args:
        run: the run's name, for warnings.
        sink: receives the payloads.
        tags: the tags already known for the run (tag -> ``TagState``, in id order), when the
            collector resumes where an earlier one stopped.
    """

    def __init__(self, run: str, sink: Sink, tags: Optional[Dict[str, TagState]] = None):
        self._run = run
        self._sink = sink
        self._tags: Dict[str, TagState] = dict(tags or {})
        self._ids = {tag: i for i, tag in enumerate(self._tags)}
        self._warned_events = set()

    @property
    def tags(self) -> Dict[str, TagState]:
        """Every tag seen in the run, in the order first seen."""
        return self._tags

    def feed(self, buffer, starts, lengths, file_index: int, base: int) -> None:
        """Decodes the records at ``starts`` (offsets in ``buffer``, which lies at byte ``base`` of
        file ``file_index``)."""
        view = memoryview(buffer)
        starts_list, lengths_list = starts.tolist(), lengths.tolist()
        # Runs of records of one length, back to back: the steady state of a first read.
        same = (lengths[1:] == lengths[:-1]) & (np.diff(starts) == lengths[:-1] + _FRAMING_BYTES)
        breaks = [0, *(np.flatnonzero(~same) + 1).tolist(), len(starts_list)]
        for first, stop in zip(breaks[:-1], breaks[1:]):
            start, length = starts_list[first], lengths_list[first]
            event, one_call = self._record(view, start, length, file_index, base)
            template = None
            if one_call is not None and stop - first > _TEMPLATE_FROM:
                try:
                    content = event.summary.value[0].tensor.tensor_content
                    template = templates.Template(bytes(view[start : start + length]), event.step, content)
                except ValueError:
                    template = None
            if template is None:
                for index in range(first + 1, stop):
                    self._record(view, starts_list[index], lengths_list[index], file_index, base)
                continue
            shape = self._tags[event.summary.value[0].tag].layout.shape
            self._alike(view, starts_list, first + 1, stop, length, template, one_call, shape, file_index, base)

    def _record(self, view, start: int, length: int, file_index: int, base: int):
        """Parses and collects one record. Returns ``(event, tag id)``: the tag id when the record
        was one call of a usable layer-metrics tag (handed to ``metrics_one``), else ``None``."""
        try:
            event = event_pb2.Event.FromString(view[start : start + length])
        except message.DecodeError:
            self._sink.warn(
                f"run {self._run!r}: an event at byte {base + start} of its file {file_index} "
                "does not parse; skipped"
            )
            return None, None
        if event.HasField("summary"):
            return event, self._event(event, file_index, base + start, length)
        return event, None

    def _alike(self, view, starts, first, stop, length, template, tag_id, shape, file_index, base) -> None:
        """Collects records ``[first, stop)`` (back to back, of the template's length): those that
        fit the template all at once, the others one by one, in file order."""
        data = np.frombuffer(view, dtype=np.uint8)
        rows = np.lib.stride_tricks.as_strided(
            data[starts[first] :], shape=(stop - first, length), strides=(length + _FRAMING_BYTES, 1),
            writeable=False,
        )
        fits, steps = template.match(rows)
        position = 0
        for misfit in [*np.flatnonzero(~fits).tolist(), len(fits)]:
            if misfit > position:
                values = template.contents(rows[position:misfit]).view("<f4")
                self._sink.metrics_many(
                    tag_id, steps[position:misfit], values.reshape((misfit - position, *shape)), file_index
                )
            if misfit < len(fits):
                self._record(view, starts[first + misfit], length, file_index, base)
            position = misfit + 1

    def _event(self, event, file_index: int, offset: int, length: int) -> Optional[int]:
        values = event.summary.value
        for value in values:
            tag = value.tag
            state = self._tags.get(tag)
            single = _SINGLE_CALL.get(state.kind) if state is not None else None
            if single is not None and state.error is None:
                # The common record of a first read: one call, as its layout says.
                content = single(state.layout, value)
                if content is not None and len(values) == 1:
                    self._sink.metrics_one(self._ids[tag], event.step, content, file_index)
                    return self._ids[tag]
            if not tag.startswith(envelope.TAG_PREFIX):
                continue
            kind = payload_format.kind_of(tag)
            if kind is layer_metrics and tag.endswith(layer_metrics.STEPS_SUFFIX):
                continue  # read with the values it belongs to
            if state is None:
                state = self._first(tag, kind, value)
            if state.error is not None:
                continue
            tag_id = self._ids[tag]
            try:
                if kind.STORAGE == "columns":
                    steps_value = _sibling(values, tag + layer_metrics.STEPS_SUFFIX)
                    steps, array = kind.decode(state.layout, value, event.step, steps_value)
                    self._sink.metrics(tag_id, steps, array, file_index)
                else:
                    kind.check(state.layout, value)
                    self._sink.indexed(tag_id, event.step, event.wall_time, file_index, offset, length)
            except envelope.FormatError as error:
                state.skipped += 1
                if tag not in self._warned_events:
                    self._warned_events.add(tag)
                    self._sink.warn(
                        f"run {self._run!r}, tag {tag}: skipped an event at step {event.step} "
                        f"({error}); later ones that do not fit are skipped too"
                    )

    def _first(self, tag: str, kind, value) -> TagState:
        """Registers a tag at its first event: its content, or why it cannot be read."""
        name = kind.KIND if kind is not None else "unknown"
        content, layout, error = None, None, None
        if kind is None:
            error = "no payload kind of this release has this tag prefix (upgrade tb_layerdyn?)"
        elif not value.HasField("metadata"):
            error = "its first event carries no metadata"
        else:
            try:
                content = envelope.parse_content(value.metadata, kind.KIND, kind.VERSION)
                layout = kind.parse_layout(content)
            except envelope.FormatError as failure:
                error = str(failure)
                layout = None
        state = TagState(tag, name, content, error, layout)
        self._ids[tag] = len(self._tags)
        self._tags[tag] = state
        if error is not None:
            self._sink.warn(f"run {self._run!r}, tag {tag}: skipped ({error})")
        self._sink.tag_added(self._ids[tag], state)
        return state


# Bytes of a TFRecord frame around its data; runs longer than this many records use a template.
_FRAMING_BYTES = framing.HEADER_BYTES + framing.FOOTER_BYTES
_TEMPLATE_FROM = 8


def _sibling(values, tag: str):
    for value in values:
        if value.tag == tag:
            return value
    return None


def restore_states(saved: List[dict]) -> Dict[str, TagState]:
    """``TagState``s from what ``state_record`` saved, layouts parsed again."""
    states: Dict[str, TagState] = {}
    for record in saved:
        kind = payload_format.kind_of(record["tag"])
        layout = None
        if record["error"] is None and kind is not None:
            layout = kind.parse_layout(record["content"])
        states[record["tag"]] = TagState(
            record["tag"], record["kind"], record["content"], record["error"], layout,
            record.get("skipped", 0),
        )
    return states


def state_record(state: TagState) -> dict:
    """A JSON-ready record of a ``TagState``."""
    return {
        "tag": state.tag,
        "kind": state.kind,
        "content": state.content,
        "error": state.error,
        "skipped": state.skipped,
    }
