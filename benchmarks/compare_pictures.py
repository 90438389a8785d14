"""Picture calls of two checkouts side by side: time inside a training loop, and identical bytes.

Usage (from the repository root)::

    python -m benchmarks.compare_pictures /path/to/other/checkout [--rounds 4] [--repetitions 20]

Each round runs one fresh interpreter per checkout, in turn (its ``tb_layerdyn`` from that
checkout, the heap's thresholds fixed by ``timing.steady_heap``, one torch thread). Each trains
``bench_pictures``' LeNet-5 and times, in interleaved repetitions of 40 steps, a loop that logs the
metrics every step without pictures beside one with the default picture kinds every 10 steps:
the loop overhead (wall and CPU), the step, and the median time of ``PictureCapture.draw`` and
``write`` inside the loop. Then both checkouts draw every kind for 13 calls of LeNet-5 and of the
stripe net (the last with a NaN weight) into event records, and the digests of those records are
compared: a change meant to be faster must write the same bytes. Prints one line per interpreter,
the load average, and whether the records are identical.

Not one of the ``python -m benchmarks`` modules: it needs a second checkout.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40


def _loop(repetitions):
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from benchmarks import timing
    timing.steady_heap()
    torch.set_num_threads(1)
    from benchmarks.bench_pictures import Trainer
    from tb_layerdyn import LayerDynamics
    from tb_layerdyn.tracking import pictures as capture

    calls = {"draw": [], "write": []}
    for name in calls:
        original = getattr(capture.PictureCapture, name)

        def timed(self, *args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            result = _original(self, *args, **kwargs)
            calls[_name].append(time.perf_counter() - started)
            return result

        setattr(capture.PictureCapture, name, timed)
    trainer = Trainer("LeNet-5")
    with tempfile.TemporaryDirectory() as logdir:
        writers = {k: SummaryWriter(f"{logdir}/{k}") for k in ("plain", "pictures")}
        trackers = {
            "plain": LayerDynamics(trainer.model, writers["plain"], histogram_every=None),
            "pictures": LayerDynamics(trainer.model, writers["pictures"], histogram_every=None, images_every=10),
        }
        counts = {k: [0] for k in trackers}

        def hook(k):
            def log():
                trackers[k].log(counts[k][0])
                counts[k][0] += 1
            return log

        def loop(k):
            def run():
                trainer.steps(STEPS, hook(k))
                writers[k].flush()
            return run

        for k in trackers:
            trainer.steps(2, hook(k))
        for found in calls.values():
            found.clear()
        cpu = {}
        seconds = timing.interleaved({k: loop(k) for k in trackers}, repetitions, cpu=cpu)
        for writer in writers.values():
            writer.close()
    return {
        "tb_layerdyn": os.path.dirname(capture.__file__),
        "overhead %": timing.overhead_percent(seconds["pictures"], seconds["plain"]),
        "CPU %": timing.overhead_percent(cpu["pictures"], cpu["plain"]),
        "step ms": 1e3 * timing.median(seconds["plain"]) / STEPS,
        "draw ms": 1e3 * timing.median(calls["draw"]),
        "write ms": 1e3 * timing.median(calls["write"]),
    }


def _records():
    import torch
    torch.set_num_threads(1)
    from benchmarks.bench_pictures import Trainer, _BuildOnly
    from tb_layerdyn import LayerDynamics
    from tb_layerdyn.tracking import layers as layers_mod
    from tb_layerdyn.tracking import pictures as capture

    digest = hashlib.sha256()
    for name in ("LeNet-5", "stripe"):
        trainer = Trainer(name)
        model = trainer.model
        found = layers_mod.find_layers(model)
        tracker = LayerDynamics(model, None, histogram_every=None)
        tracker._reducer.prepare(found, [True] * len(found))
        pictures = capture.PictureCapture(model, 1, capture.PICTURE_KINDS, probe=trainer.probe)
        sink, step = _BuildOnly(), [0]

        def hook():
            pictures.log(sink, model, found, tracker._reducer, False, step[0])
            step[0] += 1

        trainer.steps(12, hook)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
        trainer.steps(1, hook)
        digest.update(b"".join(sink.records))
    return digest.hexdigest()


def _child(checkout, *args):
    env = dict(os.environ, PYTHONPATH=checkout)
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", *args],
        cwd=checkout, env=env, check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", nargs="?")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repetitions", type=int, default=20)
    parser.add_argument("--child", choices=["loop", "records"])
    options = parser.parse_args()
    if options.child == "loop":
        print(json.dumps(_loop(options.repetitions)))
        return
    if options.child == "records":
        print(json.dumps(_records()))
        return
    checkouts = {"other": os.path.abspath(options.other), "this": ROOT}
    for _ in range(options.rounds):
        for label, checkout in checkouts.items():
            row = _child(checkout, "loop", "--repetitions", str(options.repetitions))
            if not row.pop("tb_layerdyn").startswith(checkout):
                raise SystemExit(f"the {label} interpreter did not import {checkout}'s tb_layerdyn")
            figures = ", ".join(f"{k} {v:.2f}" for k, v in row.items())
            print(f"{label}: {figures}, load {os.getloadavg()[0]:.2f}", flush=True)
    digests = {label: _child(checkout, "records") for label, checkout in checkouts.items()}
    print("records identical:", digests["other"] == digests["this"])


if __name__ == "__main__":
    main()
