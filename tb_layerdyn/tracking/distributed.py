"""Who measures and who writes under torch.distributed.

Two cases, told apart by the parameters themselves:

- **Replicated** (DDP, or any run whose parameters are plain tensors): every rank holds the same
  weights, so rank 0 measures and writes; other ranks return at once and issue no collective.
- **Sharded** (FSDP2 ``fully_shard``: parameters are DTensors): each rank reduces its local shard
  (``to_local()``) into the sums buffer, **one** ``all_reduce`` adds the buffers, rank 0 writes. The
  sums are plain sums over elements, so adding shards gives exactly the full-model sums.

Without an initialised process group every call is the single-process case.
"""

import torch
import torch.distributed as dist

try:
    from torch.distributed.tensor import DTensor
except ImportError:  # torch builds without distributed support
    DTensor = None


def initialized() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 outside a process group)."""
    return dist.get_rank() if initialized() else 0


def is_sharded(params) -> bool:
    """True when any parameter is a DTensor (FSDP2 and other tensor-parallel wrappers)."""
    return DTensor is not None and any(isinstance(p, DTensor) for p in params)


def local(tensor):
    """Returns ``(local tensor, contributes)`` for a parameter or gradient.

    A DTensor's local shard is reduced by this rank. Along a mesh dimension where the tensor is
    replicated (HSDP), only coordinate 0 contributes, so the all-reduce does not count copies twice.
    """
    if DTensor is None or not isinstance(tensor, DTensor):
        return tensor, True
    contributes = True
    coordinate = tensor.device_mesh.get_coordinate()
    for dim, placement in enumerate(tensor.placements):
        if placement.is_partial():
            raise ValueError(
                "a parameter with a Partial placement cannot be measured; redistribute it to "
                "Shard or Replicate before logging"
            )
        if placement.is_replicate() and coordinate is not None and coordinate[dim] != 0:
            contributes = False
    return tensor.to_local(), contributes


class AllReduce:
    """The one collective of a sharded call: adds every rank's sums buffer.

    The buffer itself keeps per-rank constants (the initial norms), so the sum goes into a second
    preallocated buffer.
    """

    def __init__(self):
        self._out = None

    def __call__(self, sums: torch.Tensor) -> torch.Tensor:
        if self._out is None or self._out.shape != sums.shape or self._out.device != sums.device:
            self._out = torch.empty_like(sums)
        self._out.copy_(sums)
        dist.all_reduce(self._out, op=dist.ReduceOp.SUM)
        return self._out
