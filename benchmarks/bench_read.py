"""How long ``tb_layerdyn.read`` takes for a long ResNet-18 run, beside TensorBoard's own loader.

The logdir holds what ``log_layer_dynamics`` writes for ResNet-18 at its default per-layer
granularity with ``rwc="both"``: 41 layers (every module that owns parameters), 4 blocks
(``layer1`` .. ``layer4``, the top-level children that hold two or more layers), all 7 metrics, one
tensor summary per logged step, the layout on the first event only. It is written once with
TensorBoard's ``EventFileWriter`` from random values; reading does not depend on the values.

Columns:

``steps``          logged steps in the run;
``layers``, ``groups``, ``metrics``: what ``read`` found in it;
``file MiB``       size of the event file;
``read s``         median wall time of ``tb_layerdyn.read(logdir)``, everything included (walking
                   the logdir, checksums, parsing, merging into step x layer arrays);
``fresh process s`` the same in a new interpreter, from ``import tb_layerdyn`` to the end of
                   ``read`` (what a script pays once: importing TensorBoard's protos included);
``tb loader s``    median wall time of the same result built with TensorBoard's Python
                   ``EventFileLoader`` (which checks each record's checksum in pure Python) and
                   ``tensor_util.make_ndarray``, then the same merge;
``speedup x``      median of the paired ratios ``tb loader s / read s`` (see ``timing``);
``target s``       issue 5's bound, 2 s for a run of 10,000 steps (empty for other lengths);
``meets target``   whether ``fresh process s``, the slower of the two read figures, is under it.

Run alone with ``python -m benchmarks.bench_read [--quick]`` or with every benchmark through
``python -m benchmarks``.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.compat.proto import event_pb2
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

import tb_layerdyn
from benchmarks import timing
from tb_layerdyn.format import envelope as metadata
from tb_layerdyn.format import layer_metrics
from tb_layerdyn.reading import table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_SECONDS = 2.0
TARGET_STEPS = 10_000

# (steps of each run, repetitions)
PLANS = {False: ([1_000, 10_000], 5), True: ([10_000], 2)}

STAGES = [("layer1", 2), ("layer2", 2), ("layer3", 2), ("layer4", 2)]


def resnet18_layout():
    """The layout ``log_layer_dynamics`` logs for ResNet-18, built without torch."""
    blocks = {"conv1": ["conv1"], "bn1": ["bn1"]}
    for stage_index, (stage, num_blocks) in enumerate(STAGES):
        members = []
        for block in range(num_blocks):
            prefix = f"{stage}.{block}."
            members += [prefix + name for name in ("conv1", "bn1", "conv2", "bn2")]
            # The first block of every stage but the first changes the shape: a 1x1 shortcut.
            if block == 0 and stage_index > 0:
                members += [prefix + "downsample.0", prefix + "downsample.1"]
        blocks[stage] = members
    blocks["fc"] = ["fc"]
    layers = [layer for members in blocks.values() for layer in members]
    return layer_metrics.layout(
        metrics=layer_metrics.METRIC_NAMES,
        layers=layers,
        param_counts=[1000] * len(layers),
        order="forward",
        granularity="layer",
        rwc="both",
        groups=[
            {"name": name, "kind": "block", "members": members}
            for name, members in blocks.items()
            if len(members) > 1
        ],
    )


def write_run(run_dir, layout, num_steps, seed=0):
    """Writes ``num_steps`` logging calls of ``layout`` into one event file; returns its path."""
    os.makedirs(run_dir)
    rng = np.random.default_rng(seed)
    shape = (len(layout["metrics"]), len(layout["layers"]) + len(layout["groups"]))
    writer = EventFileWriter(run_dir, max_queue_size=1024, flush_secs=3600)
    for step in range(num_steps):
        pb = layer_metrics.summary(
            rng.random(shape, dtype=np.float32), layout, with_metadata=(step == 0)
        )
        writer.add_event(event_pb2.Event(step=step, wall_time=float(step), summary=pb))
    writer.close()
    [name] = os.listdir(run_dir)
    return os.path.join(run_dir, name)


def read_with_tensorboard_loader(path):
    """The same tables as ``read`` gives, through TensorBoard's Python event-file loader."""
    contents, events = {}, {}
    for event in event_file_loader.EventFileLoader(path).Load():
        for value in event.summary.value:
            if not value.tag.startswith(layer_metrics.TAG_PREFIX):
                continue
            if value.HasField("metadata"):
                contents.setdefault(
                    value.tag, json.loads(value.metadata.plugin_data.content)
                )
            events.setdefault(value.tag, []).append(
                (event.step, tensor_util.make_ndarray(value.tensor))
            )
    layouts = [
        table.LayoutEvents(contents[tag], *table.stack_events(tag_events))
        for tag, tag_events in events.items()
    ]
    return table.build_run_table(layouts)


def _wall_time(function, argument):
    """Calls ``function(argument)``; returns ``None`` so that ``timing`` counts its wall time."""
    function(argument)


def _read_in_fresh_process(logdir):
    """Seconds from ``import tb_layerdyn`` to the end of ``read`` in a new interpreter."""
    script = (
        "import sys, time\n"
        "started = time.perf_counter()\n"
        "import tb_layerdyn\n"
        "tb_layerdyn.read(sys.argv[1])\n"
        "print(time.perf_counter() - started)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, logdir], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(result.stdout)


def run(quick):
    """Rows of the table described in the module docstring."""
    step_counts, repetitions = PLANS[bool(quick)]
    layout = resnet18_layout()
    rows = []
    for num_steps in step_counts:
        logdir = tempfile.mkdtemp(prefix="bench_read_")
        try:
            path = write_run(os.path.join(logdir, "resnet18"), layout, num_steps)
            ours = tb_layerdyn.read(logdir)["resnet18"]
            reference = read_with_tensorboard_loader(path)
            # Both paths must give the same arrays, or the comparison means nothing.
            for name, values in reference.metrics.items():
                np.testing.assert_array_equal(ours.metrics[name], values)
            seconds = timing.interleaved(
                {
                    "read": lambda: _wall_time(tb_layerdyn.read, logdir),
                    "tb": lambda: _wall_time(read_with_tensorboard_loader, path),
                    "fresh": lambda: _read_in_fresh_process(logdir),
                },
                repetitions,
            )
            read_s = timing.median(seconds["read"])
            rows.append(
                {
                    "steps": num_steps,
                    "layers": len(ours.layers),
                    "groups": len(ours.groups),
                    "metrics": len(ours.metrics),
                    "file MiB": os.path.getsize(path) / 2**20,
                    "read s": read_s,
                    "fresh process s": timing.median(seconds["fresh"]),
                    "tb loader s": timing.median(seconds["tb"]),
                    "speedup x": timing.median(
                        [t / r for t, r in zip(seconds["tb"], seconds["read"])]
                    ),
                    "target s": TARGET_SECONDS if num_steps == TARGET_STEPS else None,
                    "meets target": (
                        timing.median(seconds["fresh"]) < TARGET_SECONDS
                        if num_steps == TARGET_STEPS
                        else None
                    ),
                }
            )
        finally:
            shutil.rmtree(logdir, ignore_errors=True)
    return rows


if __name__ == "__main__":
    from benchmarks import report

    print(report.markdown_table(run(quick="--quick" in sys.argv[1:])))
