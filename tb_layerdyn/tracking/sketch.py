"""Weight sketches at sketch calls (``sketch_every``): a fixed CountSketch of each layer, for distances between runs.

``SketchCapture`` holds the projection of the tracker's current layers and writes one sketches
event per call (payload and math: ``tb_layerdyn.format.sketches``). The projection of a layer is
fixed by its name and parameter shapes (``sketches.layer_seed``), never by a random number
generator, so every run of one architecture sketches the same way and logging leaves torch's and
numpy's RNG streams alone.

Cost: built once per layout (a hash of every parameter index, on the host), then per call one
``index_add_`` per parameter into one buffer beside the parameters, one subtraction and one copy to
the host of ``sum(k)`` floats; on the CPU, with the native kernels built, one call does all of it
(``native.sketch_pass``, the same additions in the same order). Memory: one int32 index per scalar
parameter (the bucket, plus ``K`` for a minus sign, so no sign tensor and no product is needed) and
a float32 buffer of ``2 K`` values, ``K`` the total sketch size: O(parameters). A parameter that is
not float32 is cast for the call (a temporary copy of that parameter). On an accelerator the sketch
is copied to pinned host memory behind the device's work and written at a later call, once its copy
has landed, or at ``complete`` (the tracker's ``flush``, a layout change, the writer's
``flush``/``close``): the call itself never waits for the device. On CUDA ``index_add_`` adds with
atomics, so the last bits of a sketch may differ between two identical runs (far below the sketch's
own error), unless ``torch.use_deterministic_algorithms(True)`` makes it deterministic.
"""

import warnings

import numpy as np
import torch

from tb_layerdyn.format import sketches as payload
from tb_layerdyn.tracking import guards, native


# Sketches on their way to the host before a call waits for the oldest (as the metrics' sums do).
_IN_FLIGHT = 3
# Parameter elements hashed at a time when a projection is built (its temporaries: ~40 bytes each).
_HASH_CHUNK = 1 << 20


def checked_size(size):
    """``sketch_size`` checked: an int from 1 to ``payload.MAX_SIZE``."""
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= payload.MAX_SIZE:
        raise ValueError(f"sketch_size must be an int from 1 to {payload.MAX_SIZE}, got {size!r}")
    return size


class SketchCapture:
    """The sketches of one tracker's layers.

    Args:
        size: the sketch size of a layer with more parameters (``sketch_size``).
        model_name: the tracker's ``name=``, kept in the layout.
        every: sketch at the first call, then at every call whose step is a multiple of this
            (``sketch_every``).
    """

    def __init__(self, size, model_name=None, every=1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"sketch_every must be a positive int, got {every!r}")
        self.every = every
        self._called = False
        self._size = checked_size(size)
        self._model_name = model_name
        self._key = None
        self._content = None
        self._tag = None
        self._plans = None
        self._failed = False
        # On the CPU, every parameter in one native call (``native.sketch_pass``) when it is built.
        self._native = native.kernels()
        # (step, [(host values, copy event or None) per device], layout, tag) not yet written.
        self._pending = []
        self._free = []  # pinned buffers whose sketches are written

    def due(self, step: int) -> bool:
        """Whether ``step`` gets a sketch: the first call's, then every multiple of ``every``."""
        return not self._called or step % self.every == 0

    def log(self, sink, found, sharded, step):
        """Writes the sketches of ``found`` (the tracker's layers) at ``step``: now on the CPU; on
        an accelerator once their copy to pinned host memory has landed, at a later call or at
        ``complete`` (the call never waits for the device)."""
        self._called = True
        if self._failed:
            return
        if sharded:
            self._fail("sketches are not written for sharded (FSDP) parameters")
            return
        try:
            parts = self._sketch(found)
        except RuntimeError as error:  # e.g. deterministic mode refusing index_add_ on CUDA
            self._fail(f"sketching failed ({error})")
            return
        self._pending.append((step, parts, self._content, self._tag))
        self._write_landed(sink, keep=_IN_FLIGHT)

    @property
    def pending(self) -> int:
        """Sketches not yet written (on an accelerator, their copies still on the way)."""
        return len(self._pending)

    def complete(self, sink):
        """Writes every sketch still on its way to the host (waiting for its copy)."""
        self._write_landed(sink, keep=0)

    def _write_landed(self, sink, keep):
        """Writes the pending sketches in order while their copies have landed, waiting for them
        while more than ``keep`` are pending."""
        while self._pending:
            step, parts, content, tag = self._pending[0]
            if not all(event is None or event.query() for _, event in parts):
                if len(self._pending) <= keep:
                    return
                for _, event in parts:
                    if event is not None:
                        event.synchronize()
            self._pending.pop(0)
            values = [host.numpy() if isinstance(host, torch.Tensor) else host for host, _ in parts]
            values = values[0] if len(values) == 1 else np.sum(values, axis=0)
            if sink is not None:
                proto = payload.summary(
                    values.astype(np.float32, copy=False), content,
                    with_metadata=sink.needs_metadata(tag), tag_name=tag,
                )
                sink.write_summary(proto, step)
            self._free.extend(host for host, event in parts if event is not None)

    def _fail(self, why):
        self._failed = True
        warnings.warn(
            f"{why}; weight sketches stop for this tracker (the distances between runs miss it). "
            "Everything else is logged as before",
            RuntimeWarning,
            stacklevel=guards.user_stacklevel(),
        )

    def _sketch(self, found):
        found = [lay for lay in found if lay.numel]
        key = tuple((lay.name, *((n, p.device, tuple(p.shape)) for n, p in lay.params)) for lay in found)
        if key != self._key:
            self._prepare(found)
            self._key = key
        parts = []
        for buffer, total, entries in self._plans:
            if buffer.device.type == "cpu":
                sketch = self._sketch_native(buffer, total, entries)
                if sketch is None:
                    sketch = self._sketch_eager(buffer, total, entries)
                parts.append((sketch.numpy(), None))
                continue
            sketch = self._sketch_eager(buffer, total, entries)
            host = self._pinned(total)
            host.copy_(sketch, non_blocking=True)
            event = torch.cuda.Event() if buffer.device.type == "cuda" else None
            if event is not None:
                event.record()
            parts.append((host, event))
        return parts

    @staticmethod
    def _sketch_eager(buffer, total, entries):
        """One device's sketch by torch ops: one ``index_add_`` per parameter."""
        buffer.zero_()
        for index, param in entries:
            flat = param.detach().reshape(-1)
            if flat.dtype != buffer.dtype:
                flat = flat.to(buffer.dtype)
            buffer.index_add_(0, index, flat)
        return buffer[:total] - buffer[total:]

    def _sketch_native(self, buffer, total, entries):
        """The CPU's sketch in one native call (the same additions in the same order as
        ``_sketch_eager``), or None without the kernel. A failing kernel is warned about once and
        left for the eager ops."""
        if self._native is None:
            return None
        sketch = torch.empty(total, dtype=torch.float32)
        try:
            self._native.sketch_pass([p for _, p in entries], [i for i, _ in entries], buffer, sketch)
        except Exception as error:  # noqa: BLE001 - any failure: the eager ops give the same sketch
            self._native = None
            warnings.warn(
                f"the native sketch kernel failed ({type(error).__name__}: {error}); sketches go on "
                "with torch ops (the same values)",
                RuntimeWarning,
                stacklevel=guards.user_stacklevel(),
            )
            return None
        return sketch

    def _pinned(self, total):
        """A page-locked host buffer of ``total`` floats, reused once its sketch is written."""
        for i, host in enumerate(self._free):
            if host.numel() == total:
                return self._free.pop(i)
        try:
            return torch.empty(total, dtype=torch.float32, pin_memory=True)
        except RuntimeError:  # no pinned memory on this machine: a plain copy (it waits)
            return torch.empty(total, dtype=torch.float32)

    def _prepare(self, found):
        """The projection of the current layers: layout, and per device a buffer and indices."""
        dims, seeds, offsets, total = [], [], [], 0
        for lay in found:
            dim = payload.sketch_dim(lay.numel, self._size)
            dims.append(dim)
            seeds.append(payload.layer_seed(lay.name, [(n, tuple(p.shape)) for n, p in lay.params]))
            offsets.append(total)
            total += dim
        self._content = payload.layout(
            layers=[lay.name for lay in found],
            param_counts=[lay.numel for lay in found],
            dims=dims,
            seeds=seeds,
            model=self._model_name,
        )
        self._tag = payload.tag(self._content)
        per_device = {}
        for lay, dim, seed, offset in zip(found, dims, seeds, offsets):
            exact = dim == lay.numel
            start = 0
            for _, param in lay.params:
                count = param.numel()
                if count:
                    index = torch.empty(count, dtype=torch.int32)
                    for first in range(0, count, _HASH_CHUNK):  # bounded temporaries
                        size = min(_HASH_CHUNK, count - first)
                        if exact:
                            part = np.arange(offset + start + first, offset + start + first + size)
                        else:
                            buckets, minus = payload.buckets_and_signs(seed, start + first, size, dim)
                            part = offset + buckets + total * minus
                        index[first:first + size] = torch.from_numpy(part.astype(np.int32))
                    per_device.setdefault(param.device, []).append((index.to(param.device), param))
                start += count
        self._plans = [
            (torch.zeros(2 * total, dtype=torch.float32, device=device), total, entries)
            for device, entries in per_device.items()
        ]
