"""Event records that repeat a first one but for their step, wall time and tensor bytes, read together.

A first read of a long run is mostly one record per logged step, each the same event but for three
fields: ``wall_time``, ``step`` and the tensor's ``tensor_content``. Parsing each with protobuf and
handing its bytes on one at a time costs more than checking them. So the collector parses the first
record of a run of records of one length as usual, and ``Template`` finds where those three fields
lie in its bytes (walking the protobuf wire format along ``Event.summary.value[0].tensor``). Every
later record whose other bytes are the same, byte for byte, and whose step bytes are a varint of the
same length, is that same event with its own step and tensor bytes: those are read for all of them
at once from a strided view, with no per-record Python object. Any other record is parsed alone, as
before.
"""

from typing import List, Optional, Tuple

import numpy as np

# Field numbers on the path Event.summary.value[0].tensor.tensor_content, and of step/wall_time.
_EVENT_WALL_TIME, _EVENT_STEP, _EVENT_SUMMARY = 1, 2, 5
_SUMMARY_VALUE = 1
_VALUE_TENSOR = 8
_TENSOR_CONTENT = 4
_VARINT, _FIXED64, _DELIMITED, _FIXED32 = 0, 1, 2, 5
# Steps up to 2**63 - 1 take at most nine varint bytes (a negative step takes ten).
_MAX_STEP_BYTES = 9


def _varint(data: bytes, position: int, end: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= end or shift > 63:
            raise ValueError("truncated or overlong varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _fields(data: bytes, start: int, end: int) -> List[Tuple[int, int, int, int]]:
    """``(number, wire type, start, end)`` of the fields of one message's bytes: a varint's own
    bytes, a fixed field's bytes, a delimited field's payload."""
    found = []
    position = start
    while position < end:
        key, position = _varint(data, position, end)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, after = _varint(data, position, end)
        elif wire == _FIXED64:
            after = position + 8
        elif wire == _FIXED32:
            after = position + 4
        elif wire == _DELIMITED:
            length, position = _varint(data, position, end)
            after = position + length
        else:
            raise ValueError(f"wire type {wire}")
        if after > end:
            raise ValueError("field runs past its message")
        found.append((number, wire, position, after))
        position = after
    return found


def _only(fields, number: int, wire: int) -> Optional[Tuple[int, int]]:
    """The span of the one field ``number`` (``None`` if absent); ``ValueError`` if repeated or of
    another wire type (protobuf would merge or refuse them: not a template)."""
    spans = [(s, e) for n, w, s, e in fields if n == number]
    if not spans:
        return None
    if len(spans) > 1 or any(w != wire for n, w, _, _ in fields if n == number):
        raise ValueError(f"field {number} repeated or of another type")
    return spans[0]


class Template:
    """Where the step and the tensor bytes lie in one record, and what the rest must be.

    Args:
        record: the bytes of a parsed event record.
        step: its ``event.step``.
        content: its ``summary.value[0].tensor.tensor_content``.

    Raises:
        ValueError: the record is not of the shape templates handle (no step field, a step of
            ten bytes, a repeated field on the path, tensor bytes that are not where parsing put
            them); the caller then parses every record.
    """

    def __init__(self, record: bytes, step: int, content: bytes):
        size = len(record)
        event = _fields(record, 0, size)
        step_span = _only(event, _EVENT_STEP, _VARINT)
        if step_span is None or step_span[1] - step_span[0] > _MAX_STEP_BYTES:
            raise ValueError("no step field, or a negative step")
        wall_span = _only(event, _EVENT_WALL_TIME, _FIXED64)
        summary = _only(event, _EVENT_SUMMARY, _DELIMITED)
        if summary is None:
            raise ValueError("no summary")
        value = _only(_fields(record, *summary), _SUMMARY_VALUE, _DELIMITED)
        tensor = _only(_fields(record, *value), _VALUE_TENSOR, _DELIMITED) if value else None
        content_span = _only(_fields(record, *tensor), _TENSOR_CONTENT, _DELIMITED) if tensor else None
        if content_span is None or record[content_span[0] : content_span[1]] != content:
            raise ValueError("tensor bytes not found")
        if _varint(record, step_span[0], step_span[1])[0] != step:
            raise ValueError("step bytes do not hold the step")
        self.length = size
        self.step_span = step_span
        self.content_span = content_span
        varying = np.zeros(size, dtype=bool)
        for span in (step_span, wall_span, content_span):
            if span is not None:
                varying[span[0] : span[1]] = True
        self._fixed_at = np.flatnonzero(~varying)
        self._fixed = np.frombuffer(record, dtype=np.uint8)[self._fixed_at]

    def match(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Which of ``rows`` (uint8 ``(records, length)``, e.g. a strided view of a buffer) are this
        event but for step, wall time and tensor bytes, and their steps.

        Returns:
            ``(fits, steps)``: a bool and an int64 array, one per row (steps of rows that do not fit
            are meaningless).
        """
        fits = (rows[:, self._fixed_at] == self._fixed).all(axis=1)
        step_bytes = rows[:, self.step_span[0] : self.step_span[1]]
        # A varint of exactly this many bytes: every byte but the last has its high bit set.
        fits &= (step_bytes[:, :-1] >= 0x80).all(axis=1) & (step_bytes[:, -1] < 0x80)
        steps = np.zeros(len(rows), dtype=np.uint64)
        for j in range(step_bytes.shape[1]):
            steps |= (step_bytes[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        return fits, steps.view(np.int64)

    def contents(self, rows: np.ndarray) -> np.ndarray:
        """The tensor bytes of ``rows``, one row each: a view of ``rows``, not a copy (whoever
        keeps it keeps the buffer below ``rows`` alive; the store writes it out, one metric at a
        time, after each chunk of a file)."""
        return rows[:, self.content_span[0] : self.content_span[1]]
