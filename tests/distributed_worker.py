"""One rank of the distributed tests; launched by ``tests/test_distributed.py`` through torchrun.

Usage::

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py OUT

Runs two scenarios on the gloo backend, CPU only, and leaves their results under ``OUT``:

* ``ddp``: a ``DistributedDataParallel`` model; every rank calls ``log_layer_dynamics`` with the
  same logdir ``OUT/ddp``. Rank 0 alone may write there.
* ``fsdp``: a model sharded with FSDP2's ``fully_shard`` (DTensor parameters); every rank calls
  ``log_layer_dynamics`` with the logdir ``OUT/fsdp``.

Each rank writes ``OUT/rank<r>.json`` with its pid and, per logging call and scenario, the
collectives the call issued, counted with ``torch.profiler`` (every c10d collective runs as a
dispatcher op such as ``c10d::allreduce_``, which the profiler records by name).

The model, the data and the training step are plain functions of a seed, shared with the test,
which repeats the same training in a single process to compare values.
"""

import collections
import json
import os
import sys

import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

SEED = 0
STEPS = 4
GLOBAL_BATCH = 8
LEARNING_RATE = 0.2
# Odd widths, so that FSDP2 shards some tensors unevenly (and pads the last shard).
IN_FEATURES, HIDDEN, CLASSES = 20, (15, 7), 3
USER_GROUPS = {"early": ["0"], "late": ["2", "4"]}

# Collective ops as the profiler names them; a ``wait_tensor`` only waits for one of these.
_COLLECTIVE_NAMESPACES = ("c10d::", "_c10d_functional::")


def make_model():
    """The model of both scenarios, with parameters drawn from ``SEED``."""
    torch.manual_seed(SEED)
    return nn.Sequential(
        nn.Linear(IN_FEATURES, HIDDEN[0]),
        nn.Tanh(),
        nn.Linear(HIDDEN[0], HIDDEN[1]),
        nn.Tanh(),
        nn.Linear(HIDDEN[1], CLASSES),
    )


def global_batch(step):
    """The whole batch of ``step``; each rank trains on its contiguous slice of it."""
    gen = torch.Generator().manual_seed(1000 + step)
    inputs = torch.randn(GLOBAL_BATCH, IN_FEATURES, generator=gen)
    targets = torch.randint(0, CLASSES, (GLOBAL_BATCH,), generator=gen)
    return inputs, targets


def train_step(model, optimizer, inputs, targets):
    """Forward, backward and step, leaving the gradients in place for the logging call."""
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(inputs), targets).backward()
    optimizer.step()


def collectives_during(fn):
    """Runs ``fn()`` and counts the collectives it issued, by op name."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    counts = collections.Counter(
        event.name
        for event in prof.events()
        if event.name.startswith(_COLLECTIVE_NAMESPACES) and "wait" not in event.name
    )
    return dict(counts)


def run_scenario(model, logdir, rank, world):
    """Trains ``STEPS`` steps on this rank's slice, logging every step; returns the counts."""
    from tb_layerdyn import log_layer_dynamics

    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    per_rank = GLOBAL_BATCH // world
    counts = []
    for step in range(STEPS):
        inputs, targets = global_batch(step)
        part = slice(rank * per_rank, (rank + 1) * per_rank)
        train_step(model, optimizer, inputs[part], targets[part])
        counts.append(
            collectives_during(
                lambda step=step: log_layer_dynamics(logdir, model, step, groups=USER_GROUPS)
            )
        )
    return counts


def main(out):
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel

    ddp_counts = run_scenario(
        DistributedDataParallel(make_model()), os.path.join(out, "ddp"), rank, world
    )
    dist.barrier()

    model = make_model()
    for module in model:
        if isinstance(module, nn.Linear):
            fully_shard(module)
    fully_shard(model)
    fsdp_counts = run_scenario(model, os.path.join(out, "fsdp"), rank, world)
    dist.barrier()

    with open(os.path.join(out, f"rank{rank}.json"), "w", encoding="utf-8") as f:
        json.dump({"pid": os.getpid(), "ddp": ddp_counts, "fsdp": fsdp_counts}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
