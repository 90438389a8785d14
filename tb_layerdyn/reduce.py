"""The per-call pass over the parameters: snapshots in, per-layer sums out.

Holds the only state of a measurement, the initial and previous weights of each parameter, in
buffers allocated once. Each call fills a preallocated sums buffer on the parameters' device
(one row per slot: a chunk of a parameter; columns are ``metrics.SUM_*``), then copies it to the
host in **one** transfer; the host adds the rows of each layer. No per-layer ``.item()``.

Why the pass looks the way it does (measured on a 2-core CPU, see PERFORMANCE_NOTES): the cost is
memory traffic and per-op overhead, and allocation churn slows the *next* training step. So every
op writes into preallocated scratch (``out=``, in place); squares are summed with ``torch.dot``
(several times faster than ``vector_norm`` here); large parameters are cut into chunks of
``CHUNK`` elements so that the later ops of a chunk find its data still in cache.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from tb_layerdyn import metrics

# Elements per chunk: 1 MiB of fp32, so a chunk's weights, snapshots and scratch stay in L2/L3.
CHUNK = 1 << 18

# Columns the device fills; SUM_NUMEL is added on the host.
_DEVICE_SUMS = metrics.SUM_SQ_INIT + 1


def _dense(t: torch.Tensor) -> bool:
    """True when ``t`` covers exactly ``numel`` consecutive storage elements (any dim order)."""
    if t.is_contiguous():
        return True
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda pair: pair[1]):
        if size == 1:
            continue
        if stride != expected:
            return False
        expected *= size
    return True


def _flat(t: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a dense tensor in storage order (works for channels_last, unlike view(-1))."""
    if t.is_contiguous():
        return t.view(-1)
    return t.as_strided((t.numel(),), (1,))


class _Param:
    """Snapshots and per-call views of one parameter (its local shard under FSDP)."""

    def __init__(self, name, param, local, first_row, snapshot_device, compute_device, chunk):
        self.name = name
        self.param = param
        self.local = local
        self.data_ptr = local.data_ptr()
        self.prev = torch.empty_like(local, device=snapshot_device, memory_format=torch.preserve_format)
        self.init = torch.empty_like(self.prev)
        with torch.no_grad():
            self.prev.copy_(local)
            self.init.copy_(local)
        self.numel = local.numel()
        self.first_row = first_row
        # Fast: fp32 weights and snapshots side by side on the compute device, read in place.
        self.fast = (
            local.dtype == torch.float32
            and _dense(local)
            and local.device == compute_device
            and self.prev.device == compute_device
        )
        if self.fast:
            step = max(1, chunk)
            bounds = [(s, min(self.numel, s + step)) for s in range(0, self.numel, step)] or [(0, 0)]
            w, prev, init = _flat(local), _flat(self.prev), _flat(self.init)
            self.chunks = [(w[a:b], prev[a:b], init[a:b]) for a, b in bounds]
        else:
            self.chunks = [None]

    @property
    def rows(self) -> int:
        return len(self.chunks)


class Reducer:
    """Snapshots of a set of layers and the pass that turns them into per-layer sums.

    Args:
        snapshot_device: where the initial and previous weights live; ``None`` keeps them beside the
            parameters (fastest), ``"cpu"`` halves device memory for models too large to double.
        elementwise: also sum the element-wise ratios |dw| / |w_prev| (the ``rwc_elementwise``
            variant); costs two more ops per chunk.
        local: maps a parameter to ``(local tensor, contributes)``: its shard under FSDP, and
            whether this rank adds it to the sums (see ``distributed``).
        chunk: elements per chunk of a large parameter.
    """

    def __init__(
        self,
        *,
        snapshot_device=None,
        elementwise: bool = False,
        local: Callable = lambda p: (p, True),
        chunk: int = CHUNK,
    ):
        self._snapshot_device = None if snapshot_device is None else torch.device(snapshot_device)
        self._elementwise = elementwise
        self._local = local
        self._chunk = chunk
        self._params: List[_Param] = []
        self._layer_starts = np.zeros(0, dtype=np.int64)
        self._numel = np.zeros(0)
        self._num_rows = 0
        self.sums: Optional[torch.Tensor] = None
        self._host: Optional[torch.Tensor] = None

    def prepare(self, layers: Sequence, restart: Sequence[bool]) -> None:
        """(Re)builds snapshots and buffers for ``layers``; called when the layers changed.

        Snapshots of a layer with ``restart[i]`` false are kept when the parameter is unchanged;
        the others start over from the current weights.
        """
        old: Dict[str, _Param] = {p.name: p for p in self._params}
        compute_device = None
        for layer in layers:
            for _, param in layer.params:
                compute_device = self._local(param)[0].device
                break
            if compute_device is not None:
                break
        compute_device = compute_device or torch.device("cpu")
        snapshot_device = self._snapshot_device or None
        params: List[_Param] = []
        starts = []
        numel = []
        row = 0
        for layer, fresh in zip(layers, restart):
            starts.append(row)
            numel.append(layer.numel)
            for name, param in layer.params:
                local, contributes = self._local(param)
                if not contributes:
                    continue
                kept = old.get(name)
                if kept is not None and not fresh and kept.param is param and kept.data_ptr == local.data_ptr():
                    kept.first_row = row
                    entry = kept
                else:
                    entry = _Param(
                        name,
                        param,
                        local.detach(),
                        row,
                        snapshot_device or local.device,
                        compute_device,
                        self._chunk,
                    )
                params.append(entry)
                row += entry.rows
        self._params = params
        self._layer_starts = np.asarray(starts, dtype=np.int64)
        self._numel = np.asarray(numel, dtype=np.float64)
        self._num_rows = row
        largest = max([min(p.numel, self._chunk) for p in params if p.fast] or [0])
        largest_slow = max([p.numel for p in params if not p.fast] or [0])
        self.sums = torch.zeros((max(row, 1), _DEVICE_SUMS), dtype=torch.float32, device=compute_device)
        # The one device->host copy per call lands in this buffer (pinned, so it can be async).
        self._host = (
            self.sums
            if self.sums.device.type == "cpu"
            else torch.empty(self.sums.shape, dtype=self.sums.dtype, pin_memory=True)
        )
        self._outs = [[self.sums[r, c] for c in range(_DEVICE_SUMS)] for r in range(row)]
        size = max(largest, largest_slow, 1)
        scratch = lambda dtype=torch.float32: torch.empty(size, dtype=dtype, device=compute_device)
        self._diff = scratch()
        self._ratio = scratch() if self._elementwise else None
        self._zero = scratch(torch.bool) if self._elementwise else None
        if largest_slow:
            self._slow = (scratch(), scratch(), scratch())
        with torch.no_grad():
            for entry in params:
                for r, chunk in enumerate(self._chunk_tensors(entry, copy=True)):
                    _, _, init = chunk
                    torch.dot(init, init, out=self._outs[entry.first_row + r][metrics.SUM_SQ_INIT])

    def stale(self) -> bool:
        """True when a parameter's storage moved since ``prepare`` (e.g. ``param.data = ...``)."""
        return any(self._local(p.param)[0].data_ptr() != p.data_ptr for p in self._params)

    def _chunk_tensors(self, entry: _Param, copy: bool):
        """The ``(w, prev, init)`` fp32 1-D tensors of each chunk of a parameter, on the compute
        device; a slow parameter is first copied into scratch."""
        if entry.fast:
            return entry.chunks
        if not copy:
            return [None]
        n = entry.numel
        w, prev, init = (buf[:n] for buf in self._slow)
        local = self._local(entry.param)[0]
        w.as_strided(entry.prev.shape, entry.prev.stride()).copy_(local)
        prev.copy_(_flat(entry.prev))
        init.copy_(_flat(entry.init))
        return [(w, prev, init)]

    @torch.no_grad()
    def reduce(self) -> torch.Tensor:
        """Runs the pass: fills ``self.sums`` and moves every previous snapshot to the current
        weights. Returns the device sums buffer (one row per chunk)."""
        diff_all, ratio_all, zero_all = self._diff, self._ratio, self._zero
        for entry in self._params:
            for r, chunk in enumerate(self._chunk_tensors(entry, copy=True)):
                w, prev, init = chunk
                out = self._outs[entry.first_row + r]
                n = w.numel()
                diff = diff_all[:n]
                torch.sub(w, prev, out=diff)
                torch.dot(diff, diff, out=out[metrics.SUM_SQ_DIFF])
                diff.abs_()
                torch.sum(diff, 0, out=out[metrics.SUM_ABS_DIFF])
                if ratio_all is not None:
                    ratio, zero = ratio_all[:n], zero_all[:n]
                    torch.abs(prev, out=ratio)
                    torch.sum(ratio, 0, out=out[metrics.SUM_ABS_PREV])
                    torch.eq(ratio, 0, out=zero)
                    torch.sum(zero, 0, dtype=torch.float32, out=out[metrics.SUM_ZERO_PREV])
                    ratio.masked_fill_(zero, float("inf"))
                    diff.div_(ratio)
                    torch.sum(diff, 0, out=out[metrics.SUM_RATIO])
                else:
                    torch.abs(prev, out=diff)
                    torch.sum(diff, 0, out=out[metrics.SUM_ABS_PREV])
                torch.sub(w, init, out=diff)
                torch.dot(diff, diff, out=out[metrics.SUM_SQ_INIT_DIFF])
                torch.dot(w, w, out=out[metrics.SUM_SQ_WEIGHT])
                if entry.fast:
                    prev.copy_(w)
            if not entry.fast:
                entry.prev.copy_(self._local(entry.param)[0])
            self._grad_sum(entry, self._outs[entry.first_row][metrics.SUM_SQ_GRAD])
        return self.sums

    def _grad_sum(self, entry: _Param, out: torch.Tensor) -> None:
        grad = entry.param.grad
        if grad is None:
            out.zero_()
            return
        grad = self._local(grad)[0]
        if grad.is_sparse:
            grad = grad.coalesce().values()
        if grad.dtype == torch.float32 and grad.device == out.device and _dense(grad):
            flat = _flat(grad)
            torch.dot(flat, flat, out=out)
        else:
            norm = torch.linalg.vector_norm(grad, 2, dtype=torch.float32)
            out.copy_(norm * norm)

    def to_host(self, sums: torch.Tensor) -> np.ndarray:
        """Copies a sums buffer (``self.sums`` or its all-reduced copy) to the host: the call's one
        device->host transfer."""
        if sums.device.type == "cpu":
            return sums.numpy()
        self._host.copy_(sums, non_blocking=True)
        torch.cuda.current_stream(sums.device).synchronize()
        return self._host.numpy()

    def has_grad(self, layers: Sequence) -> np.ndarray:
        """Per layer: at least one of its parameters holds a gradient now."""
        return np.array([any(p.grad is not None for _, p in layer.params) for layer in layers], bool)

    def layer_sums(self, host_rows: np.ndarray) -> np.ndarray:
        """Adds the host copy of the sums rows into ``(layers, metrics.NUM_SUMS)`` float64."""
        num_layers = len(self._layer_starts)
        out = np.zeros((num_layers, metrics.NUM_SUMS), dtype=np.float64)
        if num_layers and self._num_rows:
            rows = np.asarray(host_rows[: self._num_rows], dtype=np.float64)
            starts = np.minimum(self._layer_starts, self._num_rows - 1)
            added = np.add.reduceat(rows, starts, axis=0)
            # reduceat gives a row for an empty layer too (the next row); an empty layer is one
            # whose start equals the next layer's start or the end.
            ends = np.append(self._layer_starts[1:], self._num_rows)
            added[ends == self._layer_starts] = 0.0
            out[:, :_DEVICE_SUMS] = added
        out[:, metrics.SUM_NUMEL] = self._numel
        return out
