"""The per-call pass over the parameters: snapshots in, per-layer sums out.

Holds the only state of a measurement, the initial and previous weights of each parameter, in
buffers allocated once. Each call fills one preallocated sums buffer on the parameters' device and
copies it to the host in **one** transfer, where the sums of each layer are added up (for several
calls at once: ``layer_sums_many``). No per-layer ``.item()``. On CUDA that transfer does not wait:
it lands in pinned memory behind the device's work (``start_to_host``), read at a later call.

Two paths share that buffer (measured on a 2-core CPU, see PERFORMANCE_NOTES):

- **Flat** (small fp32 parameters; most tensors of most models): the fixed cost of a torch op
  dominates, and inside a training loop every buffer the pass touches comes back from main memory
  (the step evicted it). Their weights, snapshots and gradients live in flat buffers, laid out layer
  by layer, each layer padded with zeros to whole ``BLOCK``-element blocks. A call copies the
  weights and gradients in (one ``_foreach_copy_`` each), forms both differences, takes each
  block's root sum of squares of four rows in one ``vector_norm`` and each block's absolute sums in
  one ``sum``: nine ops over six buffers whatever the number of parameters. The weights buffer of
  one call is the previous-weights buffer of the next (two alternating states: no copy back). The
  host adds the blocks of each layer; as blocks never straddle layers, a NaN stays in its own
  layer.
- **Chunked** (large or non-fp32 parameters, FSDP shards): memory traffic dominates, so each
  parameter is reduced on its own in chunks of ``CHUNK`` elements whose data stays in cache between
  the ops of a chunk, one sums row per chunk.

Every op writes into preallocated scratch (``out=``, in place): allocation churn on the hot path
slows the *next* training step more than the call itself costs.

On the CPU, when the native kernels are built (``tracking/native``), each path is one loop that
reads every element once: ``flat_pass`` for all the flat parameters (no copies in first), and
``chunked_pass`` per large parameter (in fixed ``NATIVE_CHUNK`` chunks). The element-wise variant
and ``fused=True`` stay eager.
"""

import math
import warnings
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from tb_layerdyn.tracking import guards, metrics, native
from tb_layerdyn.tracking.fused import ELEMENTWISE_COLUMNS, MAIN_COLUMNS, FusedSums

# Elements per chunk on an accelerator: 1 MiB of fp32, few enough launches per parameter.
CHUNK = 1 << 18

# Elements per chunk and intra-op thread on CPU. A chunk's ops touch four tensors of its length
# (weights, both snapshots, one scratch), and each of torch's threads takes its share of every op:
# at 64K fp32 elements per thread that is 1 MiB per core, inside a 2 MiB L2. Measured on a 2-core
# Xeon inside training loops, one shared model, chunk sizes side by side: with one thread the
# chunk's ops took 0.90 ns per element at 64K against 1.6 at 256K (4 MiB, over L2), and
# ResNet-18's call 23-24 against 29 ms; with two threads 128K was as fast as 256K on ResNet-18
# and 6% faster on the MLP, while 64K (one 32K-element grain per thread) was 10-15% slower.
CPU_CHUNK_PER_THREAD = 1 << 16

# Elements per chunk of the native chunked pass on CPU (``native.chunked_pass``), whatever the
# thread count, so that its bits do not depend on it: a chunk is one task of its loop, which reads
# every element once, so the chunk need not fit a cache; 32K elements balance ResNet-18's and the
# MLP's large parameters over two threads.
NATIVE_CHUNK = 1 << 15

# Parameters with at most this many elements take the flat path. Above it, the flat path's extra
# passes over memory cost more than the per-tensor op overhead they save (measured alone: about
# 0.6 ns more per element against 25-30 us of ops per tensor; inside a training loop, where every op
# starts on cold caches, a tensor's ~11 ops cost 2-3 times that, which moves the break-even up to
# about 64K elements: LeNet-5's 48K-element fc1 is cheaper flat).
FLAT_MAX_NUMEL = 1 << 16

# Elements per block of the flat path's per-block sums; each layer is padded to whole blocks.
BLOCK = 256

# Parameters from this size up take the fused kernel when it is on (smaller sharded pieces would
# only add recompilations for sizes 0 and 1 and gain nothing).
FUSED_MIN_NUMEL = 1 << 12

# Pinned host buffers of the CUDA sums, used in turns: a call's sums are read at a later call once
# their copy is done, so a host that runs this many calls ahead of the device waits for the oldest.
HOST_DEPTH = 3

# ``keep`` of a native pass when nothing is to be kept, and the gradient of the native chunked
# pass when it does not read one.
_NO_KEEP = torch.empty(0)

# Columns the device fills; SUM_NUMEL is added on the host.
_DEVICE_SUMS = metrics.SUM_SQ_INIT + 1

# Rows of a flat-path state (each as long as the flat buffers). The weights row of one call is the
# previous-weights row of the next; the others are scratch, reused within a call.
_WEIGHTS, _GRADS, _DIFF = 0, 1, 2  # _DIFF + 1: w - w_0, then |w_prev|
_FLAT_ROWS = 4
_FLAT_ROWS_ELEMENTWISE = 6  # + |dw| / |w_prev| (0 where w_prev == 0), and w_prev == 0 as 0/1

# Rows of the flat path's per-block sums in the sums buffer, and the sums column each one adds to.
# The first four are sums of squares, from a root sum of squares (``vector_norm``) squared back.
_BLOCK_ROOTED = slice(0, 4)
_BLOCK_SQ_INIT = 8
_BLOCK_ROWS = 9
_BLOCK_COLUMNS = np.array([
    metrics.SUM_SQ_WEIGHT, metrics.SUM_SQ_GRAD, metrics.SUM_SQ_DIFF, metrics.SUM_SQ_INIT_DIFF,
    metrics.SUM_ABS_DIFF, metrics.SUM_ABS_PREV, metrics.SUM_RATIO, metrics.SUM_ZERO_PREV,
    metrics.SUM_SQ_INIT,
], dtype=np.intp)
# The sums columns of the native chunked pass's six sums, in the order of its loop (the block rows').
_NATIVE_COLUMNS = torch.tensor(_BLOCK_COLUMNS[:6].tolist(), dtype=torch.int64)
# The sums columns the native chunked pass leaves as they are (the initial weights' squares; zeros
# where the element-wise variant is off).
_UNWRITTEN_COLUMNS = [c for c in range(_DEVICE_SUMS) if c not in _BLOCK_COLUMNS[:6]]


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


def _segment(buf: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    """The elements ``offset:offset + like.numel()`` of a flat buffer, viewed with ``like``'s shape
    and strides (``like`` is dense, so its strides address exactly that many elements)."""
    return buf.as_strided(like.shape, like.stride(), buf.storage_offset() + offset)


class _Param:
    """One parameter (its local shard under FSDP): where its snapshots live and its sums go.

    Attributes:
        flat: the parameter takes the flat path; ``offset`` is then its place in the flat buffers.
        fast: fp32, dense and on the compute device: reduced in place, without a copy.
        first_row: its first sums row (chunked path only).
    """

    def __init__(self, name, param, local, fast, flat):
        self.name = name
        self.param = param
        self.local = local
        self.data_ptr = local.data_ptr()
        self.numel = local.numel()
        self.fast = fast
        self.flat = flat
        self.offset = 0
        self.first_row = 0
        self.prev: Optional[torch.Tensor] = None
        self.init: Optional[torch.Tensor] = None
        self.chunks = [None]
        self.outs = []
        self.fused_args = None
        self.native_args = None

    @property
    def rows(self) -> int:
        return 0 if self.flat else len(self.chunks)


class Reducer:
    """Snapshots of a set of layers and the pass that turns them into per-layer sums.

    Args:
        snapshot_device: where the initial and previous weights live; ``None`` keeps them beside the
            parameters (fastest), ``"cpu"`` halves device memory for models too large to double.
        elementwise: also sum the element-wise ratios |dw| / |w_prev| (the ``rwc_elementwise``
            variant); costs a few more ops.
        local: maps a parameter to ``(local tensor, contributes)``: its shard under FSDP, and
            whether this rank adds it to the sums (see ``distributed``).
        chunk: elements per chunk of a large parameter; ``None`` sizes it to the cache: on CPU
            ``CPU_CHUNK_PER_THREAD`` times torch's thread count when the layers are prepared,
            elsewhere ``CHUNK``.
        flat_max_numel: parameters up to this size take the flat path (0 turns it off); with
            ``fused``, only those below ``FUSED_MIN_NUMEL``.
        fused: reduce each large fp32 parameter on the compute device with one compiled kernel
            (``tb_layerdyn.tracking.fused``) instead of the chunked ops; a dict is passed to
            ``torch.compile`` as inductor options. Falls back to the chunked ops, with one
            warning, when compiling fails.
    """

    def __init__(
        self,
        *,
        snapshot_device=None,
        elementwise: bool = False,
        local: Callable = lambda p: (p, True),
        chunk: Optional[int] = None,
        flat_max_numel: int = FLAT_MAX_NUMEL,
        fused=False,
    ):
        self._snapshot_device = None if snapshot_device is None else torch.device(snapshot_device)
        self._elementwise = elementwise
        self._local = local
        self._chunk = chunk
        self._flat_max = flat_max_numel
        self._fused = None
        if fused:
            self._fused = FusedSums(elementwise, fused if isinstance(fused, dict) else None)
            # Every parameter the kernel can take goes to it, whatever the flat path's bound.
            self._flat_max = min(flat_max_numel, FUSED_MIN_NUMEL - 1)
        # The native kernels, when built and wanted (``fused=True`` asked for compiled kernels).
        self._native = None if (fused or elementwise) else native.kernels()
        # Per flat state, the kernel's arguments (views made once), or None: the flat pass is eager.
        self._native_args = None
        # The last pass's totals when every part of it was native (for ``steady``), and whether it
        # filled ``keep``.
        self._totals = None
        self.kept = False
        self._params: List[_Param] = []
        self._chunked_params: List[_Param] = []
        self._sharded = False
        self._data_ptrs: List[int] = []
        self._num_rows = 0
        self._num_blocks = 0
        self._flat_state = None
        self.sums: Optional[torch.Tensor] = None
        self._hosts: List[torch.Tensor] = []

    # ----------------------------------------------------------------------------- building

    def prepare(self, layers: Sequence, restart: Sequence[bool]) -> None:
        """(Re)builds snapshots and buffers for ``layers``; called when the layers changed.

        Snapshots of a layer with ``restart[i]`` false are kept when the parameter is unchanged;
        the others start over from the current weights.
        """
        old: Dict[str, _Param] = {p.name: p for p in self._params}
        locals_ = [[(name, param, *self._local(param)) for name, param in layer.params] for layer in layers]
        compute_device = next(
            (local.device for layer in locals_ for _, _, local, _ in layer), torch.device("cpu")
        )
        # Shards differ in size between ranks, and the all-reduce needs equal buffers everywhere:
        # sharded models take the chunked path only.
        sharded = any(local is not param for layer in locals_ for _, param, local, _ in layer)
        snapshots_here = self._snapshot_device in (None, compute_device)

        per_layer: List[List[_Param]] = []
        sources = {}
        for layer_params, fresh in zip(locals_, restart):
            entries = []
            for name, param, local, contributes in layer_params:
                if not contributes:
                    continue
                local = local.detach()
                fast = (
                    local.dtype == torch.float32
                    and _dense(local)
                    and local.device == compute_device
                    and snapshots_here
                )
                flat = fast and not sharded and local.numel() <= self._flat_max
                entry = _Param(name, param, local, fast, flat)
                kept = old.get(name)
                if kept is not None and not fresh and kept.param is param and kept.data_ptr == entry.data_ptr:
                    sources[name] = (self.previous(kept), kept.init)
                else:
                    sources[name] = (local, local)
                entries.append(entry)
            per_layer.append(entries)

        self._sharded = sharded
        with torch.no_grad():
            self._build_flat(per_layer, sources, compute_device)
            self._build_chunked(per_layer, sources, compute_device)
        self._params = [entry for entries in per_layer for entry in entries]
        self._chunked_params = [entry for entry in self._params if not entry.flat]
        self._data_ptrs = [entry.data_ptr for entry in self._params]
        self._every_layer_reduced = all(per_layer)
        self._missing_grads = len(self._params)  # nothing known before the first pass
        self._grads_read = False
        self._grad_presence = None
        self.all_true = np.ones(len(layers), dtype=bool)
        self.all_true.flags.writeable = False
        self._numel = np.asarray([layer.numel for layer in layers], dtype=np.float64)
        self._host_buffers(len(layers))

    def _build_flat(self, per_layer, sources, device) -> None:
        """Lays the flat parameters out layer by layer in padded blocks and fills the snapshots."""
        offset = 0
        block_starts, pads, placement = [], [], []
        for entries in per_layer:
            block_starts.append(offset // BLOCK)
            start = offset
            for entry in entries:
                if entry.flat:
                    entry.offset = offset
                    offset += entry.numel
                    placement.append(entry)
            pad = -(offset - start) % BLOCK if offset > start else 0
            pads.append(pad)
            offset += pad
        self._block_starts = np.asarray(block_starts, dtype=np.int64)
        self._pads = np.asarray(pads, dtype=np.float64)
        self._num_blocks = offset // BLOCK
        self._flat_state = None
        self._native_args = None
        if not offset:
            return
        # Two states, used in turns: a call writes the weights into its state's WEIGHTS row, which
        # the next call (using the other state) reads as the previous weights. Pads stay zero in
        # every row, so they add nothing to any sum; the zero-previous-weight count alone sees them
        # and is corrected on the host.
        rows = _FLAT_ROWS_ELEMENTWISE if self._elementwise else _FLAT_ROWS
        state = torch.zeros((2, rows, offset), dtype=torch.float32, device=device)
        initial = torch.zeros(offset, dtype=torch.float32, device=device)
        largest = max(entry.numel for entry in placement)
        zeros = torch.zeros(largest, dtype=torch.float32, device=device)
        self._w_src = [entry.local for entry in placement]
        self._w_dst = [[_segment(s[_WEIGHTS], e.offset, e.local) for e in placement] for s in state]
        self._g_dst = [[_segment(s[_GRADS], e.offset, e.local) for e in placement] for s in state]
        # A missing gradient copies zeros (a view shaped and strided like the parameter) into its
        # segment.
        self._g_zero = [_segment(zeros, 0, e.local) for e in placement]
        # Each flat parameter's offset and element count, for the native kernel.
        self._places = torch.tensor([(e.offset, e.numel) for e in placement], dtype=torch.int64)
        self._g_src = list(self._g_zero)
        self._flat_entries = placement
        self._cur = 0
        for entry in placement:
            prev_src, init_src = sources[entry.name]
            _segment(state[1, _WEIGHTS], entry.offset, entry.local).copy_(prev_src)
            _segment(initial, entry.offset, entry.local).copy_(init_src)
            entry.init = _segment(initial, entry.offset, entry.local)
        self._flat_state = state
        self._flat_initial = initial
        self._flat_zero = torch.zeros(offset, dtype=torch.bool, device=device) if self._elementwise else None

    def _chunk_size(self, device) -> int:
        """Elements per chunk for parameters reduced on ``device``."""
        if self._chunk is not None:
            return max(1, self._chunk)
        if torch.device(device).type == "cpu" and self._native is not None and not self._sharded:
            # (Sharded: the chunk sizes as before, so that every rank's buffer keeps its length.)
            return NATIVE_CHUNK
        if torch.device(device).type == "cpu":
            return CPU_CHUNK_PER_THREAD * max(1, torch.get_num_threads())
        return CHUNK

    def _build_chunked(self, per_layer, sources, device) -> None:
        """Allocates the snapshots, sums rows and scratch of the chunked path; fills the constant
        sums (the initial weights' squares)."""
        chunk = self._chunk_size(device)
        row = 0
        layer_rows = []
        for entries in per_layer:
            layer_rows.append(row)
            for entry in entries:
                if entry.flat:
                    continue
                entry.first_row = row
                snapshot_device = self._snapshot_device or entry.local.device
                entry.prev = torch.empty_like(entry.local, device=snapshot_device, memory_format=torch.preserve_format)
                entry.init = torch.empty_like(entry.prev)
                prev_src, init_src = sources[entry.name]
                entry.prev.copy_(prev_src)
                entry.init.copy_(init_src)
                if entry.fast:
                    step = chunk
                    bounds = [(s, min(entry.numel, s + step)) for s in range(0, entry.numel, step)] or [(0, 0)]
                    w, prev, init = _flat(entry.local), _flat(entry.prev), _flat(entry.init)
                    entry.chunks = [(w[a:b], prev[a:b], init[a:b]) for a, b in bounds]
                else:
                    entry.chunks = [None]
                row += entry.rows
        self._layer_rows = np.asarray(layer_rows, dtype=np.int64)
        self._num_rows = row
        chunked = [entry for entries in per_layer for entry in entries if not entry.flat]

        size_rows = row * _DEVICE_SUMS
        self.sums = torch.zeros(size_rows + _BLOCK_ROWS * self._num_blocks, dtype=torch.float32, device=device)
        self._rows = self.sums[:size_rows].view(row, _DEVICE_SUMS)
        self._blocks = self.sums[size_rows:].view(_BLOCK_ROWS, self._num_blocks)
        # A CPU buffer's numpy view, made once (the buffer is only ever written in place).
        self._sums_host = self.sums.numpy() if self.sums.device.type == "cpu" else None
        # On an accelerator the one device->host copy per call lands in one of these pinned
        # buffers, without waiting (``start_to_host``), each with the event recorded after it.
        self._hosts, self._events, self._next_host = [], [], 0
        if self.sums.device.type == "cuda":
            self._hosts = [
                torch.empty(self.sums.shape, dtype=self.sums.dtype, pin_memory=True)
                for _ in range(HOST_DEPTH)
            ]
            self._events = [torch.cuda.Event() for _ in range(HOST_DEPTH)]

        largest = max([min(e.numel, chunk) for e in chunked if e.fast] or [0])
        largest_slow = max([e.numel for e in chunked if not e.fast] or [0])
        size = max(largest, largest_slow, 1)

        def scratch(dtype=torch.float32):
            return torch.empty(size, dtype=dtype, device=device)

        diff_all = scratch()
        ratio_all = scratch() if self._elementwise else None
        zero_all = scratch(torch.bool) if self._elementwise else None
        self._slow = (scratch(), scratch(), scratch()) if largest_slow else None
        # Views made once: slicing on every call would allocate tensor objects on the hot path.
        for entry in chunked:
            entry.outs = []
            for r, part in enumerate(entry.chunks):
                n = entry.numel if part is None else part[0].numel()
                entry.outs.append((
                    [self._rows[entry.first_row + r, c] for c in range(_DEVICE_SUMS)],
                    diff_all[:n],
                    None if ratio_all is None else (ratio_all[:n], zero_all[:n]),
                ))
            for r, (_w, _prev, init) in enumerate(self._chunk_tensors(entry)):
                torch.dot(init, init, out=entry.outs[r][0][metrics.SUM_SQ_INIT])
            entry.fused_args = None
            entry.native_args = None
            if self._native is not None and entry.fast and entry.local.device.type == "cpu" and chunk % 8 == 0:
                # The weights, both snapshots (1-D, in storage order), the parameter's sums rows, the
                # columns of the six sums, the chunk.
                entry.native_args = (
                    _flat(entry.local), _flat(entry.prev), _flat(entry.init),
                    self._rows[entry.first_row: entry.first_row + len(entry.chunks)],
                    _NATIVE_COLUMNS, chunk,
                )
            if self._fused is not None and entry.fast and entry.numel >= FUSED_MIN_NUMEL:
                # The kernel writes the whole parameter's sums into its first row; the other rows
                # keep zeros in those columns (they only hold the initial weights' squares).
                row = self._rows[entry.first_row]
                entry.fused_args = (
                    _flat(entry.local),
                    _flat(entry.prev),
                    _flat(entry.init),
                    row[MAIN_COLUMNS],
                    row[ELEMENTWISE_COLUMNS] if self._elementwise else None,
                )
        # The sums the native passes do not write, for ``steady``.
        self._unwritten_finite = not self._num_rows or bool(
            torch.isfinite(self._rows[:, _UNWRITTEN_COLUMNS].sum())
        )
        if self._flat_state is not None:
            square = self._flat_state[0, _DIFF]
            torch.mul(self._flat_initial, self._flat_initial, out=square)
            torch.sum(square.view(-1, BLOCK), 1, out=self._blocks[_BLOCK_SQ_INIT])
            square.zero_()
            self._unwritten_finite &= bool(torch.isfinite(self._blocks[_BLOCK_ROOTED.stop + 2:].sum()))
            # Per state, the views a call uses, made once (views cost a dispatch each): its weights
            # row, the other state's (the previous weights), its scratch rows, its rows as blocks
            # for the one norm op and the one sum op, and the element-wise rows.
            rows = self._flat_state.shape[1]
            self._summed_rows = slice(_BLOCK_ROOTED.stop, _BLOCK_ROOTED.stop + rows - _DIFF)
            self._flat_rows = [
                (
                    s[_WEIGHTS],
                    self._flat_state[1 - i, _WEIGHTS],
                    s[_DIFF],
                    s[_DIFF + 1],
                    s[_WEIGHTS:_DIFF + 2].view(4, -1, BLOCK),
                    s[_DIFF:rows].view(rows - _DIFF, -1, BLOCK),
                    (s[_DIFF + 2], s[_DIFF + 3]) if self._elementwise else None,
                )
                for i, s in enumerate(self._flat_state)
            ]
            if self._native is not None and device.type == "cpu":
                # The weights and gradients rows, previous weights, initial weights; rows 0..5 of
                # the block sums: the four sums of squares, then |w - w_prev| and |w_prev|.
                self._native_args = [
                    (s[_WEIGHTS], s[_GRADS], self._flat_state[1 - i, _WEIGHTS], self._flat_initial,
                     self._blocks[: _BLOCK_ROOTED.stop + 2], self.sums)
                    for i, s in enumerate(self._flat_state)
                ]

    def _host_buffers(self, num_layers: int) -> None:
        """Preallocates the host side's float64 arrays (reused by every call)."""
        # One zero row (column) past the end, so that every layer's start is a valid index, a
        # trailing layer without rows included.
        self._rows64 = np.zeros((self._num_rows + 1, _DEVICE_SUMS))
        self._blocks64 = np.zeros((_BLOCK_ROWS, self._num_blocks + 1))
        self._rows_added = np.zeros((num_layers, _DEVICE_SUMS))
        self._blocks_added = np.zeros((_BLOCK_ROWS, num_layers))
        self._layer_out = np.zeros((num_layers, metrics.NUM_SUMS))
        self._layer_out[:, metrics.SUM_NUMEL] = self._numel
        # reduceat gives an empty segment the next element instead of 0; those layers are masked.
        row_ends = np.append(self._layer_rows[1:], self._num_rows)
        self._rows_empty = row_ends == self._layer_rows
        block_ends = np.append(self._block_starts[1:], self._num_blocks)
        self._blocks_empty = block_ends == self._block_starts
        # Boolean-mask writes cost microseconds even when they select nothing.
        self._any_rows_empty = bool(self._rows_empty.any())
        self._any_blocks_empty = bool(self._blocks_empty.any())
        # Where the gradients' sums of squares lie in the host copy of the sums buffer.
        split = self._num_rows * _DEVICE_SUMS
        self.grad_index = np.concatenate([
            np.arange(self._num_rows, dtype=np.intp) * _DEVICE_SUMS + metrics.SUM_SQ_GRAD,
            split + 1 * self._num_blocks + np.arange(self._num_blocks, dtype=np.intp),
        ])
        assert _BLOCK_COLUMNS[1] == metrics.SUM_SQ_GRAD

    # ----------------------------------------------------------------------------- queries

    def stale(self) -> bool:
        """True when a parameter's storage moved since ``prepare`` (e.g. ``param.data = ...``)."""
        if self._sharded:
            return any(self._local(p.param)[0].data_ptr() != p.data_ptr for p in self._params)
        return [p.param.data_ptr() for p in self._params] != self._data_ptrs

    def previous(self, entry: _Param) -> torch.Tensor:
        """The previous-weights snapshot of one parameter (a view, shaped like the parameter)."""
        if entry.flat:
            return _segment(self._flat_state[1 - self._cur, _WEIGHTS], entry.offset, entry.local)
        return entry.prev

    def initial_weights(self) -> Dict[str, torch.Tensor]:
        """Copies of the initial-weights snapshots, by qualified parameter name."""
        return {name: init.clone() for name, init in self.initial_snapshots().items()}

    def initial_snapshots(self) -> Dict[str, torch.Tensor]:
        """The initial-weights snapshots themselves, by qualified parameter name, for readers that
        only read them (pictures' travel): no copy; never write into them."""
        return {entry.name: entry.init.detach() for entry in self._params}

    def has_grad(self, layers: Sequence) -> np.ndarray:
        """Per layer: at least one of its parameters holds a gradient now (call after ``reduce``).

        When the pass found every parameter's gradient, and every layer has a parameter it reduced,
        the answer is all true without looking again: the same read-only array on every such call.
        """
        if not self._missing_grads and self._every_layer_reduced and len(self.all_true) == len(layers):
            return self.all_true
        if self._grad_presence is not None:
            return self._grad_presence
        return np.array([any(p.grad is not None for _, p in layer.params) for layer in layers], bool)

    def read_grads(self, layers: Sequence) -> None:
        """Reads the gradients now, for the next ``reduce``, which then reads only the weights.

        An optimizer's step pre-hook calls this: the gradients are those the step is about to use,
        whatever the step does to them (Nesterov momentum and Rprop change them in place).
        """
        grad_enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        try:
            self._missing_grads = 0
            if self._flat_state is not None:
                self._copy_flat_grads(self._cur)
            for entry in self._chunked_params:
                self._grad_sum(entry, entry.outs[0][0][metrics.SUM_SQ_GRAD])
        finally:
            torch.set_grad_enabled(grad_enabled)
        self._grads_read = True
        self._grad_presence = None
        if self._missing_grads:
            self._grad_presence = np.array(
                [any(p.grad is not None for _, p in layer.params) for layer in layers], bool
            )

    # ----------------------------------------------------------------------------- the pass

    def reduce(self, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Runs the pass: fills ``self.sums`` and moves every previous snapshot to the current
        weights. Returns the device sums buffer.

        Args:
            keep: a float32 tensor shaped like ``self.sums`` that may receive a copy of them (the
                slot of a packed record's batch). ``self.kept`` says whether it did: the last
                native pass copies when every part of the pass was native and the model is not
                sharded.
        """
        # Grad mode off for the pass, switched directly: ``@torch.no_grad()`` builds a context
        # manager on every call, and this runs on every call of a training loop.
        grad_enabled = torch.is_grad_enabled()
        torch.set_grad_enabled(False)
        grads = not self._grads_read
        self._grads_read = False
        self._totals = None
        self.kept = False
        if keep is None or self._sharded:  # a sharded call's sums are all-reduced after
            keep = _NO_KEEP
        chunked = self._chunked_params
        try:
            if grads:
                self._missing_grads = 0
                self._grad_presence = None
            # The totals of what the native passes wrote, while every pass so far was native.
            totals = (0.0, 0.0)
            if self._flat_state is not None:
                # Chunked rows are filled after the flat pass: the last of them keeps the sums.
                totals = self._reduce_flat(grads, _NO_KEEP if chunked else keep)
            for i, entry in enumerate(chunked):
                if entry.fused_args is not None and self._fused(*entry.fused_args):
                    totals = None
                    if grads:
                        self._grad_sum(entry, entry.outs[0][0][metrics.SUM_SQ_GRAD])
                elif entry.native_args is not None and self._native is not None:
                    last = i == len(chunked) - 1 and totals is not None
                    done = self._reduce_native(entry, grads, keep if last else _NO_KEEP)
                    if done is None:
                        # Failed (and off from now on): the parameters before it keep their sums
                        # but their gradients', which it left chunk by chunk in rows now zeroed.
                        if grads:
                            self._resum_grads(chunked[:i])
                        self._reduce_chunked(entry, grads)
                        totals = None
                    elif totals is not None:
                        totals = None if done is False else (totals[0] + done[0], totals[1] + done[1])
                else:
                    totals = None
                    self._reduce_chunked(entry, grads)
        finally:
            torch.set_grad_enabled(grad_enabled)
        if totals is not None and not self._sharded:
            self._totals = totals
            self.kept = keep is not _NO_KEEP
        return self.sums

    def _flat_grads(self):
        """The flat parameters' gradients, zeros for the missing ones (``self._g_src``, filled in
        place: empty it with ``sources[:] = self._g_zero`` once read), and how many were missing."""
        sources, missing = self._g_src, 0
        for i, entry in enumerate(self._flat_entries):
            grad = entry.param.grad
            if grad is None:
                missing += 1
            else:
                sources[i] = grad if grad.layout is torch.strided else self._dense_grad(grad)
        return sources, missing

    def _copy_flat_grads(self, cur: int) -> None:
        """Copies the flat parameters' gradients into the gradients row of state ``cur``."""
        sources, missing = self._flat_grads()
        self._missing_grads += missing
        torch._foreach_copy_(self._g_dst[cur], sources)
        # Holding this call's gradients until the next would keep them alive across zero_grad.
        sources[:] = self._g_zero

    def _native_failed(self, error) -> None:
        """Turns the native kernel off for this reducer, once, saying why; the pass goes on eager."""
        self._native = None
        self._native_args = None
        # The native chunked pass leaves each chunk's gradient sum in its row; the eager pass sums
        # a gradient into its first row alone.
        for entry in self._chunked_params:
            if entry.native_args is not None:
                self._rows[entry.first_row + 1: entry.first_row + len(entry.chunks), metrics.SUM_SQ_GRAD].zero_()
        warnings.warn(
            f"the native kernel of the metrics' pass failed ({error}); this tracker uses the "
            "eager pass from now on. TB_LAYERDYN_NATIVE=0 turns it off",
            RuntimeWarning,
            stacklevel=guards.user_stacklevel(),
        )

    def _reduce_flat(self, grads: bool = True, keep: torch.Tensor = _NO_KEEP):
        """The flat path; returns the native kernel's ``(total, gradients' total)``, or None when
        the pass was eager."""
        cur = self._cur
        weights, previous, diff, init_diff, norms, sums, extra = self._flat_rows[cur]
        blocks = self._blocks
        if self._native_args is not None:
            # One loop reads the weights and gradients where they are: no copies in first.
            sources, missing = self._flat_grads() if grads else ([], 0)
            try:
                totals = self._native.flat_pass(self._w_src, sources, self._places, *self._native_args[cur], keep)
                self._missing_grads += missing
                self._cur = 1 - cur
                return totals
            except RuntimeError as error:
                self._native_failed(error)
            finally:
                # Holding this call's gradients until the next would keep them alive across zero_grad.
                if grads:
                    sources[:] = self._g_zero
        # Copies into views shaped like the parameters: one op for all of them, whatever their
        # strides, and no per-call reshaping of each gradient.
        torch._foreach_copy_(self._w_dst[cur], self._w_src)
        if grads:
            self._copy_flat_grads(cur)
        torch.sub(weights, previous, out=diff)
        torch.sub(weights, self._flat_initial, out=init_diff)
        # One norm op over the four rows (weights, gradients, both differences) gives each block's
        # root sum of squares, squared back in place: this reads each row once and writes no
        # squares.
        rooted = blocks[_BLOCK_ROOTED]
        torch.linalg.vector_norm(norms, 2, dim=2, out=rooted)
        rooted.square_()
        # The differences to the initial weights are summed: their row now takes |w_prev|.
        diff.abs_()
        torch.abs(previous, out=init_diff)
        if extra is not None:  # the element-wise ratios
            ratio, zero_count = extra
            zero = self._flat_zero
            torch.eq(init_diff, 0, out=zero)
            torch.div(diff, init_diff, out=ratio)
            ratio.masked_fill_(zero, 0.0)
            zero_count.copy_(zero)
        torch.sum(sums, 2, out=blocks[self._summed_rows])
        self._cur = 1 - cur
        return None

    def _reduce_native(self, entry: _Param, grads: bool, keep: torch.Tensor):
        """One parameter of the chunked path in one native loop (``native.chunked_pass``); its
        gradient too when it is a dense float32 tensor on the CPU, else ``_grad_sum`` adds it.

        Returns:
            The kernel's ``(total, gradients' total)``; False when ``_grad_sum`` added the
            gradient after it (its totals and ``keep``'s copy miss that sum); None when the kernel
            failed (then nothing of this parameter is summed yet).
        """
        grad = entry.param.grad if grads else None
        if grad is not None:
            grad = self._local(grad)[0]  # a DTensor's local shard
        read = grad is None or (
            grad.dtype == torch.float32 and grad.device.type == "cpu" and grad.layout is torch.strided and _dense(grad)
        )
        try:
            totals = self._native.chunked_pass(
                *entry.native_args, _flat(grad) if read and grad is not None else _NO_KEEP, grads,
                self.sums, keep if read else _NO_KEEP,
            )
        except RuntimeError as error:
            self._native_failed(error)
            return None
        if grads and (grad is None or not read):  # missing, or not one the loop reads
            self._grad_sum(entry, entry.outs[0][0][metrics.SUM_SQ_GRAD])
        return totals if read else False

    def _resum_grads(self, entries) -> None:
        """Sums the gradients of ``entries`` reduced natively into their first rows, the eager way."""
        for entry in entries:
            if entry.native_args is not None:
                self._grad_sum(entry, entry.outs[0][0][metrics.SUM_SQ_GRAD])

    def _dense_grad(self, grad: torch.Tensor) -> torch.Tensor:
        """A strided copy of a sparse (or otherwise non-strided) gradient of a flat parameter."""
        return grad.to_dense()

    def _chunk_tensors(self, entry: _Param):
        """The ``(w, prev, init)`` fp32 1-D tensors of each chunk of a parameter, on the compute
        device; a slow parameter is first copied into scratch."""
        if entry.fast:
            return entry.chunks
        n = entry.numel
        w, prev, init = (buf[:n] for buf in self._slow)
        local = self._local(entry.param)[0]
        w.as_strided(entry.prev.shape, entry.prev.stride()).copy_(local)
        prev.copy_(_flat(entry.prev))
        init.copy_(_flat(entry.init))
        return [(w, prev, init)]

    def _reduce_chunked(self, entry: _Param, grads: bool = True) -> None:
        for (w, prev, init), (out, diff, elementwise) in zip(self._chunk_tensors(entry), entry.outs):
            torch.sub(w, prev, out=diff)
            torch.dot(diff, diff, out=out[metrics.SUM_SQ_DIFF])
            diff.abs_()
            torch.sum(diff, 0, out=out[metrics.SUM_ABS_DIFF])
            if elementwise is not None:
                ratio, zero = elementwise
                torch.abs(prev, out=ratio)
                torch.sum(ratio, 0, out=out[metrics.SUM_ABS_PREV])
                torch.eq(ratio, 0, out=zero)
                # count_nonzero allocates one scalar; summing the bools as float32 would first
                # copy the whole chunk to float32.
                out[metrics.SUM_ZERO_PREV].copy_(torch.count_nonzero(zero))
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
        if grads:
            self._grad_sum(entry, entry.outs[0][0][metrics.SUM_SQ_GRAD])

    def _grad_sum(self, entry: _Param, out: torch.Tensor) -> None:
        grad = entry.param.grad
        if grad is None:
            self._missing_grads += 1
            out.zero_()
            return
        grad = self._local(grad)[0]
        if grad.is_sparse:
            grad = grad.coalesce().values()
        if grad.dtype == torch.float32 and grad.device == out.device and _dense(grad):
            flat = _flat(grad)
            torch.dot(flat, flat, out=out)
        else:
            # Half precision is summed in float32; float64 in itself (vector_norm refuses to narrow),
            # its square rounded to float32 by the copy.
            wide = grad.dtype.itemsize > 4 and grad.is_floating_point()
            norm = torch.linalg.vector_norm(grad, 2, dtype=None if wide else torch.float32)
            out.copy_(norm * norm)

    # ----------------------------------------------------------------------------- host side

    def steady(self, host: np.ndarray, attached: bool) -> bool:
        """Whether every sum of the last pass is finite and, unless ``attached`` (whose gradients
        are checked elsewhere), some gradient's square is not zero.

        Two numpy sums over ``host``; none when every part of the pass was native (the kernels
        return their totals). Inside a training loop the first numpy call after the step runs on
        cold caches: 40-60 us for these two on LeNet-5 and the MLP, against the kernels' own loops.
        """
        totals = self._totals
        if totals is not None:
            total, grads = totals
            return math.isfinite(total) and self._unwritten_finite and (attached or grads > 0)
        return bool(np.isfinite(host.sum())) and (attached or host[self.grad_index].sum() > 0)

    @property
    def asynchronous(self) -> bool:
        """Whether the sums come back through ``start_to_host`` (CUDA) instead of ``to_host``."""
        return bool(self._hosts)

    def to_host(self, sums: torch.Tensor) -> np.ndarray:
        """The host sums of a CPU sums buffer (``self.sums`` or its all-reduced copy): no copy."""
        if sums is self.sums and self._sums_host is not None:
            return self._sums_host
        if sums.device.type == "cpu":
            return sums.numpy()
        # Another accelerator than CUDA: one blocking copy.
        return sums.cpu().numpy()

    def start_to_host(self, sums: torch.Tensor):
        """Starts the call's one device->host copy of a CUDA sums buffer, without waiting.

        Returns:
            ``(host, event)``: the pinned host tensor the sums land in and the CUDA event recorded
            after the copy on the current stream. ``host`` is the ``HOST_DEPTH``-th buffer from
            now: it must be read (after ``event`` completes) before ``HOST_DEPTH`` more starts.
        """
        i = self._next_host
        self._next_host = (i + 1) % len(self._hosts)
        host, event = self._hosts[i], self._events[i]
        host.copy_(sums, non_blocking=True)
        event.record(torch.cuda.current_stream(sums.device))
        return host, event

    def layer_sums_many(self, host: np.ndarray) -> np.ndarray:
        """``layer_sums`` of several calls at once: ``(calls, sums buffer)`` float32 in,
        ``(calls, layers, metrics.NUM_SUMS)`` float64 out (a new array), each call's the same
        numbers ``layer_sums`` gives (the same additions in the same order)."""
        calls = len(host)
        num_layers = len(self._layer_out)
        out = np.zeros((calls, num_layers, metrics.NUM_SUMS))
        out[:, :, metrics.SUM_NUMEL] = self._numel
        if not num_layers:
            return out
        split = self._num_rows * _DEVICE_SUMS
        if self._num_rows:
            rows = np.zeros((calls, self._num_rows + 1, _DEVICE_SUMS))
            rows[:, :-1] = host[:, :split].reshape(calls, self._num_rows, _DEVICE_SUMS)
            added = np.add.reduceat(rows, self._layer_rows, axis=1)
            if self._any_rows_empty:
                added[:, self._rows_empty] = 0.0
            out[:, :, :_DEVICE_SUMS] = added
        if self._num_blocks:
            blocks = host[:, split:].reshape(calls, _BLOCK_ROWS, self._num_blocks)
            if self._any_blocks_empty:
                padded = np.zeros((calls, _BLOCK_ROWS, self._num_blocks + 1))
                padded[:, :, :-1] = blocks
                added = np.add.reduceat(padded, self._block_starts, axis=2)
                added[:, :, self._blocks_empty] = 0.0
            else:
                added = np.add.reduceat(blocks, self._block_starts, axis=2, dtype=np.float64)
            if self._num_rows:
                out[:, :, _BLOCK_COLUMNS] += added.transpose(0, 2, 1)
            else:
                out[:, :, _BLOCK_COLUMNS] = added.transpose(0, 2, 1)
            if self._elementwise:
                out[:, :, metrics.SUM_ZERO_PREV] -= self._pads
        return out

    def layer_sums(self, host: np.ndarray) -> np.ndarray:
        """Adds the host copy of the sums buffer into ``(layers, metrics.NUM_SUMS)`` float64.

        The array returned is reused by the next call; copy it to keep it.
        """
        out = self._layer_out
        sums = out[:, :_DEVICE_SUMS]
        if not len(out):
            return out
        split = self._num_rows * _DEVICE_SUMS
        if self._num_rows:
            np.copyto(self._rows64[:-1], host[:split].reshape(self._num_rows, _DEVICE_SUMS))
            np.add.reduceat(self._rows64, self._layer_rows, axis=0, out=self._rows_added)
            if self._any_rows_empty:
                self._rows_added[self._rows_empty] = 0.0
            np.copyto(sums, self._rows_added)
        elif not self._num_blocks:
            sums[...] = 0.0
        if self._num_blocks:
            blocks = host[split:].reshape(_BLOCK_ROWS, self._num_blocks)
            if self._any_blocks_empty:
                np.copyto(self._blocks64[:, :-1], blocks)
                np.add.reduceat(self._blocks64, self._block_starts, axis=1, out=self._blocks_added)
                self._blocks_added[:, self._blocks_empty] = 0.0
            else:
                np.add.reduceat(blocks, self._block_starts, axis=1, dtype=np.float64, out=self._blocks_added)
            if self._num_rows:
                sums[:, _BLOCK_COLUMNS] += self._blocks_added.T
            else:  # every parameter took the flat path (most small models)
                sums[:, _BLOCK_COLUMNS] = self._blocks_added.T
            if self._elementwise:
                out[:, metrics.SUM_ZERO_PREV] -= self._pads
        return out
