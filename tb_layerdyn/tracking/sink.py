"""Events out: the packed metrics tensor of each call, and TensorBoard's own weight histograms.

Writes through a ``torch.utils.tensorboard.SummaryWriter`` (the user's, or one created here for a
logdir path) and its file writer, so the user's own scalars in the same writer stay untouched.

Several calls, one record. A call's values are held (copied into a preallocated block) and
written with the calls after it as one packed record (``layer_metrics``: ``(calls, metrics,
columns)`` plus their steps), ``pack`` calls at most, and never longer than the writer's
``flush_secs``: TensorBoard's writer computes each record's CRC in pure Python and appends each
record to the file on its own, so fewer records cost the training loop less. Nothing is held
past ``flush()``: the tracker's, and the ``SummaryWriter``'s own ``flush()`` and ``close()``
(``with SummaryWriter(...)`` included), which hand the held calls over first, nor past
interpreter exit (``atexit``). A crash loses at most the last ``pack`` calls (10, SummaryWriter's
own ``max_queue`` of events that it may also hold unwritten).

I/O never stops training: when the writer cannot write (a full disk, a read-only logdir, a writer
closed by the user), the sink warns once with the cause and writes nothing more (``failed`` says
why). TensorBoard's writer thread stops at its first failed write and fails every later one, so
there is nothing to retry through the same writer.
"""

import atexit
import os
import threading
import time
import warnings
import weakref

import torch
import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn.format import layer_metrics
from tb_layerdyn.tracking import guards
from tb_layerdyn.tracking import writer_crc

# Tags of TensorBoard's own histogram plugin, per qualified parameter name.
WEIGHT_HISTOGRAM_PREFIX = "weights/"
GRADIENT_HISTOGRAM_PREFIX = "gradients/"

# Equal-width buckets per histogram. TensorBoard redraws every histogram on 30 buckets, so finer
# ones are not seen; they are paid for, though: ``add_histogram``'s ~1,500 exponential buckets make
# a ~24 KB record whose CRC TensorBoard's writer computes in pure Python (measured: ~3.5 ms per
# histogram, 72 ms per call on LeNet-5; these records cost well under a tenth of that).
HISTOGRAM_BUCKETS = 60


def histogram_proto(values: torch.Tensor) -> summary_pb2.HistogramProto:
    """A TensorBoard ``HistogramProto`` of a tensor's values with equal-width buckets.

    Args:
        values: any floating tensor; its finite values are bucketed, and NaN or Inf values make
            ``min``, ``max`` and the sums non-finite as ``add_histogram`` would.

    Returns:
        The proto: ``bucket[i]`` counts values up to ``bucket_limit[i]`` (the last limit is the
        maximum).
    """
    flat = values.detach().reshape(-1).to(device="cpu", dtype=torch.float64)
    finite = flat if bool(torch.isfinite(flat).all()) else flat[torch.isfinite(flat)]
    proto = summary_pb2.HistogramProto(
        min=float(flat.min()) if flat.numel() else 0.0,
        max=float(flat.max()) if flat.numel() else 0.0,
        num=float(flat.numel()),
        sum=float(flat.sum()),
        sum_squares=float(torch.dot(flat, flat)),
    )
    if not finite.numel():
        return proto
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        proto.bucket_limit.append(high)
        proto.bucket.append(float(finite.numel()))
        return proto
    counts = torch.histc(finite, bins=HISTOGRAM_BUCKETS, min=low, max=high)
    limits = torch.linspace(low, high, HISTOGRAM_BUCKETS + 1, dtype=torch.float64)[1:]
    limits[-1] = high
    proto.bucket_limit.extend(limits.tolist())
    proto.bucket.extend(counts.tolist())
    return proto

# Calls held for one packed record by default: SummaryWriter's own max_queue (events it may hold
# unwritten), so a crash loses no more than the writer itself may.
PACK = 10

# Writers this library created from a logdir path, one per directory, closed at exit.
_owned = {}
_owned_lock = threading.Lock()

# Sinks that hold calls not yet written, and the writers whose flush() and close() hand them over.
_holding = weakref.WeakSet()
_hooked = weakref.WeakKeyDictionary()


def _hand_over_all(writer=None) -> None:
    """Writes the calls every sink holds (only those of ``writer``'s sinks when given)."""
    for sink in list(_holding):
        if writer is None or sink._writer is writer:
            sink.hand_over()


def _hook_writer(writer) -> None:
    """Makes ``writer.flush()`` and ``writer.close()`` (and so ``with SummaryWriter()``) write the
    calls its sinks hold before they flush or close: nothing handed to a tracker is lost there.

    The wrappers live on the instance and call the class's own methods; they hold the writer
    weakly."""
    if writer in _hooked:
        return
    _hooked[writer] = True
    ref = weakref.ref(writer)
    cls = type(writer)

    def flush(*args, **kwargs):
        target = ref()
        _hand_over_all(target)
        return cls.flush(target, *args, **kwargs)

    def close(*args, **kwargs):
        target = ref()
        _hand_over_all(target)
        return cls.close(target, *args, **kwargs)

    flush.__doc__, close.__doc__ = cls.flush.__doc__, cls.close.__doc__
    writer.flush = flush
    writer.close = close


def _at_exit():
    """Interpreter exit: every held call goes to its writer, which is flushed; owned writers close."""
    for sink in list(_holding):
        sink.flush()
    _close_owned()


def _close_owned():
    """Closes the writers made here from logdir paths (their sinks' held calls written first)."""
    with _owned_lock:
        for writer in _owned.values():
            try:
                writer.close()
            except OSError:
                pass  # the sink that used it warned when its writes failed
        _owned.clear()


atexit.register(_at_exit)


def _writer_for_path(path) -> SummaryWriter:
    key = os.path.abspath(os.fspath(path))
    with _owned_lock:
        writer = _owned.get(key)
        if writer is None or writer.all_writers is None:
            writer = SummaryWriter(key)
            _owned[key] = writer
        return writer


class EventSink:
    """Writes one tracker's events.

    Args:
        writer: a ``SummaryWriter`` or a logdir path (str or ``os.PathLike``). A writer made here
            from a path is shared by every tracker of that path and flushed and closed at exit.
        pack: calls written together in one record at most (1: one record per call).

    Raises:
        TypeError: ``writer`` is neither.
    """

    # Per event file (its file writer): the tags that already carry their metadata there.
    _tagged = weakref.WeakKeyDictionary()

    def __init__(self, writer, pack=PACK):
        writer_crc.install()  # the same checksums, computed faster (writer_crc.py says how)
        self.failed = None
        self._writer = None
        if isinstance(writer, SummaryWriter):
            self._writer = writer
            self.owned = False
            self.log_dir = os.path.abspath(writer.log_dir)
        elif isinstance(writer, (str, os.PathLike)):
            self.owned = True
            self.log_dir = os.path.abspath(os.fspath(writer))
            try:
                self._writer = _writer_for_path(writer)
            except OSError as error:
                self._fail(error, None)
        else:
            raise TypeError(
                "writer must be a torch.utils.tensorboard.SummaryWriter or a logdir path, got "
                f"{type(writer).__name__}"
            )
        self._layout = None
        self._tag = None
        self._event = None
        self._tensor = None
        self._shape = None
        # The file writer that already holds this layout's tag (with its metadata): the steady
        # path's one check.
        self._steady_writer = None
        # Held calls: their values (a block allocated per layout), steps, how many, since when
        # (monotonic seconds), and the longest they may wait (the writer's flush_secs).
        self._pack = max(1, int(pack))
        self._held_values = None
        self._packed_event = None  # the Event of packed records, refilled (``_write_packed``)
        self._held_steps = np.zeros(self._pack, dtype=np.int64)
        self._held = 0
        self._held_since = 0.0
        self.max_wait = float(getattr(self._writer, "flush_secs", 120) or 120)
        # What writes the calls that are still on their way to the host (a tracker's, on CUDA),
        # called before held calls are written: a weak method, or None.
        self.before_hand_over = None
        if self._writer is not None:
            _hook_writer(self._writer)

    def usable(self, step=None) -> bool:
        """Whether the writer can take events: not failed, and not closed by its owner (a closed
        ``SummaryWriter`` would silently open a new event file otherwise)."""
        if self.failed is not None:
            return False
        if self._writer.all_writers is None:
            self._fail(None, step)
            return False
        return True

    def _fail(self, error, step) -> None:
        """Stops this sink's writing, with one warning that says why."""
        self._held = 0  # nothing can take them any more
        _holding.discard(self)
        if error is None:
            self.failed = "the writer was closed"
            cause = "its SummaryWriter is closed; pass an open one (or a logdir path) to log"
        else:
            self.failed = f"{type(error).__name__}: {error}"
            cause = (
                f"writing failed ({self.failed}); TensorBoard's writer fails every write after "
                "its first failure (check free space and permissions, then start a new writer)"
            )
        at = "" if step is None else f" at step {step}"
        warnings.warn(
            f"layer dynamics for {self.log_dir!r} stop being logged{at}: {cause}. Training goes "
            "on; what was written before stays readable, and steps that were not written are "
            "missing, never folded into later values",
            RuntimeWarning,
            stacklevel=guards.user_stacklevel(),
        )

    def write_metrics(self, layout: dict, values, step: int) -> bool:
        """Writes the packed ``(metrics, layers + groups)`` tensor of one call, or holds it to be
        written with the next ones (see the module docstring).

        Returns:
            False when nothing could be written (``failed`` says why; warned once).
        """
        if not self.usable(step):
            return False
        try:
            file_writer = self._writer._get_file_writer()
            if file_writer is not self._steady_writer or layout is not self._layout:
                self._write_held()
                if self._start_tag(file_writer, layout, values, step):
                    return True
            elif self._held and step <= self._held_steps[self._held - 1]:
                # A record's steps ascend: a step that does not starts a record of its own (read
                # back, it drops what came at that step and later, as one record per call would).
                self._write_held()
            if self._pack == 1:
                self._write_steady(file_writer, values, step)
                return True
            self._hold(values, step)
        except OSError as error:
            self._fail(error, step)
            return False
        return True

    def _hold(self, values, step: int) -> None:
        array = np.asarray(values)
        if array.shape != self._shape:
            raise ValueError(
                f"values has shape {array.shape}; the layout needs {self._shape} "
                "(metrics x (layers + groups))"
            )
        if self._held_values is None:
            self._held_values = np.zeros((self._pack,) + self._shape, dtype="<f4")
        held = self._held
        if not held:
            self._held_since = time.monotonic()
            _holding.add(self)
        np.copyto(self._held_values[held], array, casting="unsafe")
        self._held_steps[held] = step
        self._held = held + 1
        if self._held == self._pack or time.monotonic() - self._held_since >= self.max_wait:
            self._write_held()

    def _write_held(self) -> None:
        """Writes the held calls, one packed record (one plain record for a single call)."""
        held = self._held
        if not held:
            return
        self._held = 0
        _holding.discard(self)
        file_writer = self._steady_writer
        if held == 1:
            self._write_steady(file_writer, self._held_values[0], int(self._held_steps[0]))
            return
        # At the first call's step (see ``layer_metrics``): TensorBoard's rule for steps that go
        # back then drops what one record per call would.
        step = int(self._held_steps[0])
        steps_tag = self._tag + layer_metrics.STEPS_SUFFIX
        tagged = self._tagged.setdefault(file_writer, set())
        if steps_tag in tagged:
            self._write_packed(file_writer, held, step)
            return
        proto = layer_metrics.summary(
            self._held_values[:held], self._layout, steps=self._held_steps[:held],
            with_metadata=False, tag_name=self._tag,
            steps_metadata=steps_tag not in tagged,
        )
        file_writer.add_summary(proto, global_step=step)
        tagged.add(steps_tag)

    def _write_packed(self, file_writer, held: int, step: int) -> None:
        """A packed record after the first of its tag in this event file (which carried the steps'
        metadata): like ``_write_steady``, one Event built once per layout is refilled, its two
        tensors' bytes and lengths, and handed over (serialized at once). Building the ``Summary``
        anew cost about 170 us on the cold caches a training step leaves (LeNet-5, 2-core EPYC)."""
        event = self._packed_event
        if event is None:
            event = self._packed_event = event_pb2.Event(summary=layer_metrics.summary(
                np.zeros((2,) + self._shape), self._layout, steps=[0, 1], with_metadata=False,
                tag_name=self._tag, steps_metadata=False,
            ))
        values, steps = event.summary.value
        values.tensor.tensor_content = self._held_values[:held].tobytes()
        values.tensor.tensor_shape.dim[0].size = held
        steps.tensor.tensor_content = self._held_steps[:held].astype("<i8", copy=False).tobytes()
        steps.tensor.tensor_shape.dim[0].size = held
        file_writer.add_event(event, step=step)

    def write_held(self) -> None:
        """Writes the held calls now, as one record."""
        try:
            self._write_held()
        except OSError as error:
            self._fail(error, None)

    def mark_holding(self) -> None:
        """Says that calls for this sink are on their way (see ``before_hand_over``)."""
        _holding.add(self)

    def hand_over(self) -> None:
        """Writes the held calls to the writer now (without flushing it), after the calls still on
        their way to the host."""
        complete = self.before_hand_over() if self.before_hand_over is not None else None
        if complete is not None:
            complete()
        if not self._held:
            _holding.discard(self)
            return
        if self.failed is not None or self._writer.all_writers is None:
            self._held = 0  # the writer is gone: nothing can take them (warned at the failure)
            _holding.discard(self)
            return
        try:
            self._write_held()
        except OSError as error:
            self._fail(error, None)

    def _write_steady(self, file_writer, values, step: int) -> None:
        """Steady state: only the tensor's bytes change, so the one Event (its tag, dtype and shape
        already set) is refilled and handed over; the file writer serializes it at once."""
        array = np.asarray(values)
        if array.shape != self._shape:
            raise ValueError(
                f"values has shape {array.shape}; the layout needs {self._shape} "
                "(metrics x (layers + groups))"
            )
        self._tensor.tensor_content = array.astype("<f4").tobytes()
        file_writer.add_event(self._event, step=step)

    def _start_tag(self, file_writer, layout: dict, values, step: int) -> bool:
        """Prepares the steady path for a layout and an event file. Returns True when it wrote this
        call's event itself: the first of its tag in that file, with the plugin's metadata (which
        TensorBoard reads from the first event of each tag only)."""
        self._steady_writer = None
        tagged = self._tagged.setdefault(file_writer, set())
        if layout is not self._layout:
            # A tracker passes the same layout dict until its layers change: hash it once, and
            # build the event that later calls refill once.
            self._layout, self._tag = layout, layer_metrics.tag(layout)
            self._shape = (len(layout["metrics"]), len(layout["layers"]) + len(layout["groups"]))
            self._held_values = None
            self._packed_event = None
            self._event = event_pb2.Event(
                summary=layer_metrics.summary(
                    np.zeros(self._shape), layout, with_metadata=False, tag_name=self._tag
                )
            )
            self._tensor = self._event.summary.value[0].tensor
        tag = self._tag
        self._steady_writer = file_writer
        if tag not in tagged:
            proto = layer_metrics.summary(values, layout, with_metadata=True, tag_name=tag)
            file_writer.add_summary(proto, global_step=step)
            tagged.add(tag)
            return True
        return False

    def write_histograms(self, layers, step: int) -> None:
        """Writes TensorBoard histograms of each parameter's weights and (when present) gradient,
        all in one record, in the format ``add_histogram`` writes (see ``histogram_proto``)."""
        if not self.usable(step):
            return
        values = []
        for layer in layers:
            for name, param in layer.params:
                values.append(summary_pb2.Summary.Value(
                    tag=WEIGHT_HISTOGRAM_PREFIX + name, histo=histogram_proto(param)
                ))
                if param.grad is not None and not param.grad.is_sparse:
                    values.append(summary_pb2.Summary.Value(
                        tag=GRADIENT_HISTOGRAM_PREFIX + name, histo=histogram_proto(param.grad)
                    ))
        self._add_summary(summary_pb2.Summary(value=values), step)

    def needs_metadata(self, tag: str) -> bool:
        """Whether the next event of ``tag`` is its first in the current event file, and so must
        carry the plugin's metadata (TensorBoard reads it from there only); counts it as carried."""
        tagged = self._tagged.setdefault(self._writer._get_file_writer(), set())
        if tag in tagged:
            return False
        tagged.add(tag)
        return True

    def write_summary(self, proto, step: int, walltime=None) -> None:
        """Writes a ready ``Summary`` proto (used by ``tb_layerdyn.sweeps``) at ``step``."""
        if self.usable(step):
            self._add_summary(proto, step, walltime)

    def _add_summary(self, proto, step: int, walltime=None) -> None:
        try:
            self._writer._get_file_writer().add_summary(proto, global_step=step, walltime=walltime)
        except OSError as error:
            self._fail(error, step)

    def flush(self) -> None:
        """Writes the held calls and flushes pending events to disk (nothing once writing failed
        or the writer closed)."""
        self.hand_over()
        if self.failed is None and self._writer.all_writers is not None:
            try:
                type(self._writer).flush(self._writer)
            except OSError as error:
                self._fail(error, None)
