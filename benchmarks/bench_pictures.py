"""What pictures cost: encoding per layer and per call, and inside a training loop, beside the step.

Two models, on CPU with one torch thread (restored after):

``LeNet-5``  1x32x32 inputs, batch 64, SGD (61.7K parameters, 5 layers).
``stripe``   the 4-layer conv net of Doran's "Inside Neural Network Training": 3x3 convolutions
             with padding, 1 -> 8 -> 8 -> 8 -> 1 channels, ReLU between and tanh at the end, fed one
             16x16 noise image and trained by Adam on the squared error to a black vertical stripe
             on white (batch 1, 1.8K parameters).

Rows (``what``):

``layer <name>``   one layer's weights picture (pool, quantize, PNG-encode), alone: its median
                   time (``ms``), as a multiple of the training step (``x step``), and its bytes.
``call <kinds>``   one picture call of those kinds for every layer, encoding and building the
                   event but not writing it (the probe's forward included for activations);
                   ``bytes`` is the event's size, ``writer CRC ms`` what TensorBoard's writer
                   thread then spends checksumming it with the CRC-32C tb_layerdyn gives it
                   (``tracking/writer_crc.py``) and ``TensorBoard's CRC ms`` with its own
                   pure-Python one.
``loop <kinds>``   a training loop that logs the metrics every step and pictures of those kinds
                   every 10 steps, beside the same loop without pictures: ``overhead %`` is the
                   extra wall time (median of paired repetitions), ``CPU %`` the same in this
                   process's CPU time (the writer thread included); ``target met`` compares
                   LeNet-5's overhead with issue 10's 5%. ``default, TensorBoard's CRC`` is the
                   default kinds with TensorBoard's own checksum put back for that loop.

The process's heap thresholds are fixed first (``timing.steady_heap``): with glibc's moving
ones, a LeNet-5 step alone took 8.2 or 10.7 ms of CPU depending on the process. Every loop trains
the same model copy in turns (as ``bench_logging`` does) and flushes its writer
inside the timed region, so the writer thread's work is counted; each tracker counts its own
calls, so each draws pictures at its own first call and every tenth after.
"""

import tempfile
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

from benchmarks import timing
from demo import models
from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.format.framing import masked_crc32c_of
from tb_layerdyn.tracking import layers as layers_mod
from tb_layerdyn.tracking import picture_layouts
from tb_layerdyn.tracking import pictures as capture
from tb_layerdyn.tracking import writer_crc

EVERY = 10
# The default kinds again, with TensorBoard's own pure-Python checksum in its writer.
PURE_CRC = "default, TensorBoard's CRC"
TARGET_PERCENT = {"LeNet-5": 5.0}
KIND_SETS = {
    "weights": ("weights",),
    "default": capture.DEFAULT_KINDS,
    "all": capture.PICTURE_KINDS,
}
# (steps per repetition, repetitions) of the loops; calls timed for the per-call rows
PLANS = {False: ((40, 15), 30), True: ((20, 3), 8)}


class Stripe(nn.Module):
    def __init__(self, channels=8):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv3 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv4 = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x))
        return torch.tanh(self.conv4(x))


def stripe_target(side=16, width=4):
    target = torch.ones(1, 1, side, side)
    start = (side - width) // 2
    target[..., start:start + width] = -1.0
    return target


class Trainer:
    """One model, its optimizer and fixed data; ``steps(n, hook)`` trains ``n`` steps."""

    def __init__(self, name):
        torch.manual_seed(0)
        if name == "LeNet-5":
            self.model = models.FunctionalLeNet5()
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
            self.inputs = torch.randn(64, 1, 32, 32)
            targets = torch.randint(0, 10, (64,))
            self.loss = lambda out: F.cross_entropy(out, targets)
        else:
            self.model = Stripe()
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=2e-3, eps=0.01)
            self.inputs = torch.rand(1, 1, 16, 16)
            target = stripe_target()
            self.loss = lambda out: F.mse_loss(out, target, reduction="sum")
        self.probe = self.inputs[:1]

    def steps(self, count, hook=None):
        for _ in range(count):
            self.loss(self.model(self.inputs)).backward()
            self.optimizer.step()
            if hook is not None:
                hook()
            self.optimizer.zero_grad(set_to_none=True)


class _BuildOnly:
    """A sink that builds each event but writes nothing: the encoding cost alone."""

    def __init__(self):
        self.bytes = 0
        self.records = []

    def needs_metadata(self, tag):
        return False

    def write_summary(self, proto, step):
        data = proto.SerializeToString()
        self.bytes += len(data)
        self.records.append(data)


def _median_time(fn, count):
    fn()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return timing.median(times)


def measure_calls(name, trainer, step_s, calls):
    """Rows ``layer <name>`` and ``call <kinds>``; calls are timed inside training steps, after
    the optimizer step and before ``zero_grad``, where the tracker runs them."""
    rows = []
    model = trainer.model
    found = layers_mod.find_layers(model)
    for layer in found:
        param_name, param = capture.drawn_parameter(layer)
        plan = picture_layouts.weight_plan(param_name, param.shape)

        def one_layer():
            (values,) = capture.mosaic([param], plan)
            return payload.encode(values.numpy(), "diverging", capture.BITS)

        seconds = _median_time(one_layer, calls)
        rows.append({
            "model": name, "what": f"layer {layer.name}", "ms": 1e3 * seconds, "x step": seconds / step_s,
            "bytes": len(one_layer().png),
        })
    tracker = LayerDynamics(model, None, histogram_every=None)
    tracker._reducer.prepare(found, [True] * len(found))
    sets = list(KIND_SETS.items()) + [(kind, (kind,)) for kind in capture.PICTURE_KINDS[1:]]
    for label, kinds in sets:
        pictures = capture.PictureCapture(model, 1, kinds, probe=trainer.probe)
        sink = _BuildOnly()
        seconds = []

        def timed():
            started = time.perf_counter()
            pictures.log(sink, model, found, tracker._reducer, False, 1)
            seconds.append(time.perf_counter() - started)

        trainer.steps(2, timed)
        seconds.clear()
        sink.bytes, sink.records = 0, []
        trainer.steps(calls, timed)
        call_s = timing.median(seconds)
        last = sink.records[-(len(sink.records) // calls):]  # the last call's records
        crc_s = min(_median_time(lambda: [masked_crc32c_of(r) for r in last], 1) for _ in range(7))
        pure_s = min(_median_time(lambda: [masked_crc32c(r) for r in last], 1) for _ in range(7))
        rows.append({
            "model": name, "what": f"call {label}", "ms": 1e3 * call_s, "x step": call_s / step_s,
            "bytes": round(sink.bytes / calls), "writer CRC ms": 1e3 * crc_s,
            "TensorBoard's CRC ms": 1e3 * pure_s,
        })
    return rows


def measure_loops(name, trainer, steps, repetitions, logdir):
    variants = {"no pictures": {}}
    variants.update({
        label: dict(images_every=EVERY, images=kinds, probe=trainer.probe if "activations" in kinds else None)
        for label, kinds in KIND_SETS.items()
    })
    variants[PURE_CRC] = variants["default"]
    writers = {label: SummaryWriter(f"{logdir}/{name}-{label}") for label in variants}
    trackers = {
        label: LayerDynamics(trainer.model, writers[label], histogram_every=None, **options)
        for label, options in variants.items()
    }

    def hook_for(label):
        tracker, count = trackers[label], [0]

        def hook():
            tracker.log(count[0])
            count[0] += 1

        return hook

    hooks = {label: hook_for(label) for label in variants}
    hooks["plain"] = None

    def loop(label):
        def run():
            if label == PURE_CRC:
                writer_crc.uninstall()
            try:
                trainer.steps(steps, hooks[label])
                if label in writers:
                    writers[label].flush()  # the writer thread's checksums happen in here
            finally:
                writer_crc.install()

        return run

    for label in hooks:
        trainer.steps(2, hooks[label])
    cpu = {}
    seconds = timing.interleaved({label: loop(label) for label in hooks}, repetitions, cpu=cpu)
    for writer in writers.values():
        writer.close()
    step_s = timing.median(seconds["plain"]) / steps
    rows = [{
        "model": name, "what": "loop metrics every step, no pictures", "ms": 1e3 * step_s,
        "overhead %": timing.overhead_percent(seconds["no pictures"], seconds["plain"]),
        "CPU %": timing.overhead_percent(cpu["no pictures"], cpu["plain"]),
    }]
    for label in list(KIND_SETS) + [PURE_CRC]:
        overhead = timing.overhead_percent(seconds[label], seconds["no pictures"])
        target = TARGET_PERCENT.get(name)
        rows.append({
            "model": name, "what": f"loop {label}, every {EVERY}",
            "overhead %": overhead,
            "CPU %": timing.overhead_percent(cpu[label], cpu["no pictures"]),
            "target met": "-" if target is None else ("yes" if overhead <= target else "no"),
        })
    return rows, step_s


def run(quick):
    (steps, repetitions), calls = PLANS[bool(quick)]
    timing.steady_heap()  # else page faults of the plain step outweigh what is measured
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_pictures_") as logdir:
            for name in ("LeNet-5", "stripe"):
                trainer = Trainer(name)
                loop_rows, step_s = measure_loops(name, trainer, steps, repetitions, logdir)
                rows.extend(measure_calls(name, trainer, step_s, calls))
                rows.extend(loop_rows)
    finally:
        torch.set_num_threads(threads)
    return rows
