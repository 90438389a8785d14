"""Weight sketches at every call: a fixed CountSketch of each layer, for distances between runs.

``SketchCapture`` holds the projection of the tracker's current layers and writes one sketches
event per call (payload and math: ``tb_layerdyn.format.sketches``). The projection of a layer is
fixed by its name and parameter shapes (``sketches.layer_seed``), never by a random number
generator, so every run of one architecture sketches the same way and logging leaves torch's and
numpy's RNG streams alone.

Cost: built once per layout (a hash of every parameter index, on the host), then per call one
``index_add_`` per parameter into one buffer beside the parameters, one subtraction and one copy
to the host of ``sum(k)`` floats. Memory: one int32 index per scalar parameter (the bucket, plus
``K`` for a minus sign, so no sign tensor and no product is needed) and a float32 buffer of
``2 K`` values, ``K`` the total sketch size: O(parameters). A parameter that is not float32 is
cast for the call (a temporary copy of that parameter). On CUDA ``index_add_`` adds with atomics,
so the last bits of a sketch may differ between two identical runs (far below the sketch's own
error), unless ``torch.use_deterministic_algorithms(True)`` makes it deterministic.
"""

import warnings

import numpy as np
import torch

from tb_layerdyn.format import sketches as payload
from tb_layerdyn.tracking import guards


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
    """

    def __init__(self, size, model_name=None):
        self._size = checked_size(size)
        self._model_name = model_name
        self._key = None
        self._content = None
        self._tag = None
        self._plans = None
        self._failed = False

    def log(self, sink, found, sharded, step):
        """Writes the sketches of ``found`` (the tracker's layers) at ``step``."""
        if self._failed:
            return
        if sharded:
            self._fail("sketches are not written for sharded (FSDP) parameters")
            return
        try:
            values = self._sketch(found)
        except RuntimeError as error:  # e.g. deterministic mode refusing index_add_ on CUDA
            self._fail(f"sketching failed ({error})")
            return
        proto = payload.summary(
            values, self._content, with_metadata=sink.needs_metadata(self._tag), tag_name=self._tag
        )
        sink.write_summary(proto, step)

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
            buffer.zero_()
            for index, param in entries:
                flat = param.detach().reshape(-1)
                if flat.dtype != buffer.dtype:
                    flat = flat.to(buffer.dtype)
                buffer.index_add_(0, index, flat)
            parts.append((buffer[:total] - buffer[total:]).cpu().numpy())
        values = parts[0] if len(parts) == 1 else np.sum(parts, axis=0)
        return values.astype(np.float32, copy=False)

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
