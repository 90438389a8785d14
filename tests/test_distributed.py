"""Distributed logging under torchrun with two CPU ranks on gloo: DDP and FSDP2.

One torchrun launch (``distributed_worker.py``) runs both scenarios; the tests then check what each
rank wrote and which collectives each logging call issued, and compare the FSDP2 values, read back
through TensorBoard's event loader, with the same training repeated here in a single process.
"""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing import plugin_event_multiplexer

from tb_layerdyn.format import envelope as metadata
import layerdyn_helpers

torch = pytest.importorskip("torch")

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
WORKER_PATH = os.path.join(HERE, "distributed_worker.py")
WORLD = 2


def _load_worker():
    spec = importlib.util.spec_from_file_location("distributed_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """Runs the worker on two ranks once; returns its output directory and each rank's report."""
    out = tmp_path_factory.mktemp("distributed")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(WORLD), WORKER_PATH, str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    reports = []
    for rank in range(WORLD):
        with open(out / f"rank{rank}.json", encoding="utf-8") as f:
            reports.append(json.load(f))
    return out, reports


def event_files(logdir):
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(logdir)
        for name in names
        if name.startswith("events.out.tfevents")
    )


def read_run_table(logdir):
    """Every logged step of the run in ``logdir``, through TensorBoard's own event loader."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        tensor_size_guidance={metadata.PLUGIN_NAME: 0}
    )
    multiplexer.AddRunsFromDirectory(str(logdir))
    multiplexer.Reload()
    runs = multiplexer.Runs()
    assert list(runs) == ["."], f"expected one run at the top of {logdir}, found {list(runs)}"
    return layerdyn_helpers.multiplexer_table(multiplexer, ".")


def single_process_run(logdir):
    """The FSDP2 scenario's training, repeated in this process on the whole batch."""
    from torch.utils.tensorboard import SummaryWriter

    from tb_layerdyn import LayerDynamics

    model = worker.make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=worker.LEARNING_RATE)
    with SummaryWriter(str(logdir)) as writer:
        tracker = LayerDynamics(model, writer, groups=worker.USER_GROUPS)
        for step in range(worker.STEPS):
            inputs, targets = worker.global_batch(step)
            worker.train_step(model, optimizer, inputs, targets)
            tracker.log(step)


def test_ddp_only_rank_zero_writes(launched):
    out, reports = launched
    files = event_files(out / "ddp")
    assert len(files) == 1, f"expected one event file (rank 0's), found {files}"
    # TensorBoard names event files ...<host>.<pid>.<n>: the file must be rank 0's.
    assert f".{reports[0]['pid']}." in os.path.basename(files[0])
    run = read_run_table(out / "ddp")
    assert run.steps.tolist() == list(range(worker.STEPS))
    assert np.isfinite(run.metrics["weight_norm"]).all()


def test_ddp_logging_issues_no_collective(launched):
    _, reports = launched
    for rank, report in enumerate(reports):
        assert report["ddp"] == [{}] * worker.STEPS, f"rank {rank} issued {report['ddp']}"


def test_fsdp2_one_all_reduce_per_call(launched):
    _, reports = launched
    for rank, report in enumerate(reports):
        for step, counts in enumerate(report["fsdp"]):
            assert sum(counts.values()) == 1 and "allreduce" in "".join(counts).replace("_", ""), (
                f"rank {rank}, call {step}: expected exactly one all_reduce, got {counts}"
            )


def test_fsdp2_only_rank_zero_writes(launched):
    out, reports = launched
    files = event_files(out / "fsdp")
    assert len(files) == 1, f"expected one event file (rank 0's), found {files}"
    assert f".{reports[0]['pid']}." in os.path.basename(files[0])


def test_fsdp2_values_equal_single_process(launched, tmp_path):
    out, _ = launched
    single_process_run(tmp_path / "single")
    sharded = read_run_table(out / "fsdp")
    single = read_run_table(tmp_path / "single")
    assert sharded.layers == single.layers == ["0", "2", "4"]
    assert sharded.param_counts == single.param_counts
    assert sharded.steps.tolist() == single.steps.tolist() == list(range(worker.STEPS))
    assert sorted(sharded.metrics) == sorted(single.metrics)
    assert [g["name"] for g in sharded.groups] == [g["name"] for g in single.groups]
    for name in single.metrics:
        np.testing.assert_allclose(
            sharded.metrics[name], single.metrics[name], rtol=1e-5, atol=1e-7,
            err_msg=f"layer metric {name}",
        )
        np.testing.assert_allclose(
            sharded.group_metrics[name], single.group_metrics[name], rtol=1e-5, atol=1e-7,
            err_msg=f"group metric {name}",
        )
    # The comparison means something only if the values moved and are defined.
    assert np.isfinite(single.metrics["rwc"][1:]).all()
    assert (single.metrics["rwc"][1:] > 0).all()
