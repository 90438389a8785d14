"""Events out: the packed metrics tensor of each call, and TensorBoard's own weight histograms.

Writes through a ``torch.utils.tensorboard.SummaryWriter`` (the user's, or one created here for a
logdir path) and its file writer, so the user's own scalars in the same writer stay untouched.
"""

import atexit
import os
import threading
import weakref

from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import metadata, summary

# Tags of TensorBoard's own histogram plugin, per qualified parameter name.
WEIGHT_HISTOGRAM_PREFIX = "weights/"
GRADIENT_HISTOGRAM_PREFIX = "gradients/"

# Writers this library created from a logdir path, one per directory, closed at exit.
_owned = {}
_owned_lock = threading.Lock()


def _close_owned():
    with _owned_lock:
        for writer in _owned.values():
            writer.close()
        _owned.clear()


atexit.register(_close_owned)


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

    Raises:
        TypeError: ``writer`` is neither.
    """

    # Per event file (its file writer): the tags that already carry their metadata there.
    _tagged = weakref.WeakKeyDictionary()

    def __init__(self, writer):
        if isinstance(writer, SummaryWriter):
            self._writer = writer
            self.owned = False
        elif isinstance(writer, (str, os.PathLike)):
            self._writer = _writer_for_path(writer)
            self.owned = True
        else:
            raise TypeError(
                "writer must be a torch.utils.tensorboard.SummaryWriter or a logdir path, got "
                f"{type(writer).__name__}"
            )
        self._layout = None
        self._tag = None

    def check_open(self) -> None:
        """Raises a clear error for a closed ``SummaryWriter`` (it would silently reopen a new
        event file otherwise)."""
        if self._writer.all_writers is None:
            raise ValueError(
                f"writer for {self._writer.log_dir!r} is closed; pass an open SummaryWriter "
                "(or a logdir path) to keep logging"
            )

    def write_metrics(self, layout: dict, values, step: int) -> None:
        """Writes the packed ``(metrics, layers + groups)`` tensor of one call."""
        self.check_open()
        file_writer = self._writer._get_file_writer()
        tagged = self._tagged.setdefault(file_writer, set())
        if layout is not self._layout:
            # A tracker passes the same layout dict until its layers change: hash it once.
            self._layout, self._tag = layout, metadata.metrics_tag(layout)
        tag = self._tag
        proto = summary.layer_metrics_pb(values, layout, with_metadata=tag not in tagged, tag=tag)
        file_writer.add_summary(proto, global_step=step)
        tagged.add(tag)

    def write_histograms(self, layers, step: int) -> None:
        """Writes TensorBoard histograms of each parameter's weights and (when present) gradient.

        Values are converted to float32 on the CPU first: numpy has no bfloat16.
        """
        self.check_open()
        for layer in layers:
            for name, param in layer.params:
                self._writer.add_histogram(
                    WEIGHT_HISTOGRAM_PREFIX + name, param.detach().float().cpu(), step
                )
                if param.grad is not None and not param.grad.is_sparse:
                    self._writer.add_histogram(
                        GRADIENT_HISTOGRAM_PREFIX + name, param.grad.detach().float().cpu(), step
                    )

    def write_summary(self, proto, step: int, walltime=None) -> None:
        """Writes a ready ``Summary`` proto (used by ``tb_layerdyn.sweeps``) at ``step``."""
        self.check_open()
        self._writer._get_file_writer().add_summary(proto, global_step=step, walltime=walltime)

    def flush(self) -> None:
        """Flushes pending events to disk."""
        if self._writer.all_writers is not None:
            self._writer.flush()
