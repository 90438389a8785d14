"""Records read together through a template give exactly what parsing each one alone gives.

The reference is the collector itself with templates off (every record parsed by protobuf): the
same calls, in the same order, with the same warnings, for a run that mixes records that fit the
template with ones that do not (a wrong dtype, a foreign tag of the same length, a step that goes
back, a step of another varint length, a corrupt byte in the fixed part).
"""

import numpy as np
import pytest
from tensorboard.compat.proto import event_pb2, summary_pb2, types_pb2

import tb_layerdyn
from conftest import make_layout, random_values
from tb_layerdyn.format import framing, layer_metrics
from tb_layerdyn.reading import collector, templates


class _Recorder(collector.Sink):
    """Every call the collector makes, one-call records one by one (``metrics_many`` unrolled)."""

    def __init__(self):
        self.calls = []
        self.batches = 0

    def tag_added(self, tag_id, state):
        self.calls.append(("tag", tag_id, state.tag, state.error))

    def metrics(self, tag_id, steps, values, file_index):
        self.calls.append(("metrics", tag_id, steps.tolist(), values.tobytes()))

    def metrics_one(self, tag_id, step, content, file_index):
        self.calls.append(("one", tag_id, int(step), bytes(content)))

    def metrics_many(self, tag_id, steps, values, file_index):
        self.batches += 1
        super().metrics_many(tag_id, steps, values, file_index)

    def indexed(self, tag_id, step, wall_time, file_index, offset, length):
        self.calls.append(("indexed", tag_id, step, offset, length))

    def warn(self, text):
        self.calls.append(("warn", text))


def _frames(records):
    """Event records framed back to back, as an event file holds them."""
    out = bytearray()
    for record in records:
        header = len(record).to_bytes(8, "little")
        out += header + framing.masked_crc32c_of(header).to_bytes(4, "little")
        out += record + framing.masked_crc32c_of(record).to_bytes(4, "little")
    return bytes(out)


def _mixed_records():
    layout = make_layout(["a", "b", "c"])
    values = random_values(np.random.default_rng(3), 60, layout, nan_fraction=0.1)
    records = []
    for i in range(60):
        step = 200 + i
        summary = layer_metrics.summary(values[i], layout, with_metadata=i == 0)
        if i == 20:
            step = 210  # back to an earlier step, same varint length
        if i == 30:
            summary.value[0].tensor.dtype = types_pb2.DT_DOUBLE  # same length, wrong dtype
        if i == 40:
            summary.value[0].tag = summary.value[0].tag[:-1] + "x"  # another tag, same length
        if i == 50:
            step = 5  # a one-byte step: a shorter record, a run of its own
        event = event_pb2.Event(step=step, wall_time=1000.0 + i, summary=summary)
        records.append(event.SerializeToString())
    foreign = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="loss", simple_value=1.0)])
    records.insert(45, event_pb2.Event(step=245, wall_time=1.0, summary=foreign).SerializeToString())
    return records


def _collect(buffer, monkeypatch, template_from):
    monkeypatch.setattr(collector, "_TEMPLATE_FROM", template_from)
    frames = framing.scan(buffer)
    sink = _Recorder()
    collector.Collector("run", sink).feed(buffer, frames.starts, frames.lengths, 0, 0)
    return sink


def test_templated_records_collect_as_parsed_ones(monkeypatch):
    buffer = _frames(_mixed_records())
    parsed = _collect(buffer, monkeypatch, 10**9)
    templated = _collect(buffer, monkeypatch, 8)
    assert parsed.batches == 0 and templated.batches >= 3
    assert templated.calls == parsed.calls
    kinds = [c[0] for c in parsed.calls]
    assert kinds.count("one") > 50 and kinds.count("warn") >= 2


def test_a_corrupt_fixed_byte_is_parsed_alone(monkeypatch):
    records = _mixed_records()[:20]
    # A byte of the tag changed (the CRC is made for the changed bytes): not the template's event.
    tag = records[5].find(b"layer_dynamics")
    records[5] = records[5][:tag] + b"L" + records[5][tag + 1 :]
    buffer = _frames(records)
    parsed = _collect(buffer, monkeypatch, 10**9)
    templated = _collect(buffer, monkeypatch, 8)
    assert templated.batches == 2
    assert templated.calls == parsed.calls


def test_a_template_finds_the_step_and_the_tensor_bytes():
    layout = make_layout(["a", "b"])
    values = random_values(np.random.default_rng(0), 1, layout)[0]
    summary = layer_metrics.summary(values, layout, with_metadata=False)
    event = event_pb2.Event(step=300, wall_time=12.5, summary=summary)
    record = event.SerializeToString()
    template = templates.Template(record, 300, summary.value[0].tensor.tensor_content)
    others = [
        event_pb2.Event(step=s, wall_time=99.0, summary=layer_metrics.summary(
            values * s, layout, with_metadata=False)).SerializeToString()
        for s in (128, 16383, 999)
    ]
    rows = np.frombuffer(b"".join(others), dtype=np.uint8).reshape(3, -1)
    fits, steps = template.match(rows)
    assert fits.tolist() == [True, True, True] and steps.tolist() == [128, 16383, 999]
    got = template.contents(rows).view("<f4").reshape(3, *values.shape)
    np.testing.assert_array_equal(got, np.stack([values * s for s in (128, 16383, 999)]))
    with pytest.raises(ValueError):
        templates.Template(record, 301, summary.value[0].tensor.tensor_content)


def test_read_of_a_long_run_equals_the_values_written(tmp_path):
    # Through the whole store: a few thousand records, templated, against the values as written.
    layout = make_layout(["a", "b", "c", "d"])
    values = random_values(np.random.default_rng(5), 3000, layout, nan_fraction=0.05)
    records = [
        event_pb2.Event(step=i, wall_time=float(i), summary=layer_metrics.summary(
            values[i], layout, with_metadata=i == 0)).SerializeToString()
        for i in range(3000)
    ]
    version = event_pb2.Event(wall_time=0.0, file_version="brain.Event:2").SerializeToString()
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1.test").write_bytes(_frames([version, *records]))
    read = tb_layerdyn.read(str(tmp_path / "logs"), cache_dir=str(tmp_path / "cache"))["run"]
    assert read.steps.tolist() == list(range(3000))
    for m, name in enumerate(layout["metrics"]):
        np.testing.assert_array_equal(read.metrics[name], values[:, m, :4])
