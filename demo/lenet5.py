"""LeNet-5 as in Nemcova's paper, on handwritten digits: 5 seeds, every step logged, sweeps.

    python -m demo.lenet5 --logdir runs [--steps 500] [--seeds 5] [--dataset NAME --data-dir DIR]

The variant of "Neural Network Training Process Visualization" (3x3 kernels: conv1 60, conv2 880,
fc1 69240, fc2 10164, fc3 850 parameters), trained by SGD with momentum on scikit-learn's digits
upsampled to 32x32 (or MNIST, Fashion-MNIST, CIFAR from ``--data-dir``). Each seed is one run,
``<logdir>/lenet5/seed<k>``, so the Layer Dynamics tab can average them. Layer dynamics are
logged at every step, with early/middle/late groups and weight histograms; every 10 steps, pictures
of every layer's weights, gradients, updates and travel, and of the activations of one test image;
halfway and at the end the run takes interpolation sweeps from its initial weights, every scope,
with robustness.
"""

import time

import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import LayerDynamics
from tb_layerdyn.sweeps import make_eval_fn
from demo import data
from demo import models
from demo import options

NAME = "lenet5"
STEPS = 500
SEEDS = 5
BATCH_SIZE = 64
LEARNING_RATE = 0.05
GROUPS = {"early": ["conv1", "conv2"], "middle": ["fc1"], "late": ["fc2", "fc3"]}
HISTOGRAM_EVERY = 50
# Pictures at the first step and every 10th: 51 frames of each kind over 500 steps.
IMAGES_EVERY = 10
EVAL_EVERY = 25
# Held-out images the test accuracy and every sweep point are measured on: all 360 digits; a
# subset of larger test sets, to keep evaluation a small part of the run.
TEST_IMAGES = 2000
SWEEP_IMAGES = 512
SWEEP_OPTIONS = dict(scope=("model", "layers", "parameters"), params_per_layer=4, robustness=True)


def train(dataset, run_dir, seed, steps=STEPS):
    """Trains LeNet-5 from ``seed`` and logs it into ``run_dir``; returns the test accuracy."""
    torch.manual_seed(seed)
    channels, size, _ = dataset.image_shape
    model = models.LeNet5(
        num_classes=dataset.num_classes, kernel_size=3, in_channels=channels, image_size=size
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=0.9)
    batches = data.batches(dataset.train_images, dataset.train_labels, BATCH_SIZE, seed=seed)
    test_fn = make_eval_fn(
        F.cross_entropy, [(dataset.test_images[:TEST_IMAGES], dataset.test_labels[:TEST_IMAGES])]
    )
    sweep_fn = make_eval_fn(
        F.cross_entropy,
        [(dataset.test_images[:SWEEP_IMAGES], dataset.test_labels[:SWEEP_IMAGES])],
    )
    sweep_at = {max(1, steps // 2), steps}

    with SummaryWriter(run_dir) as writer:
        # The probe, one held-out digit, shows what each layer makes of it as training goes.
        dynamics = LayerDynamics(
            model, writer, groups=GROUPS, histogram_every=HISTOGRAM_EVERY,
            images_every=IMAGES_EVERY, probe=dataset.test_images[:1],
        )
        # Step 0 records the initial weights: distances and sweeps start from them.
        dynamics.log(0)
        writer.add_scalar("accuracy/test", test_fn(model)["accuracy"], 0)
        for step in range(1, steps + 1):
            images, labels = next(batches)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            # After the step and before the next zero_grad: the gradients are still there.
            dynamics.log(step)
            writer.add_scalar("loss/train", loss.item(), step)
            if step % EVAL_EVERY == 0 or step == steps:
                accuracy = test_fn(model)["accuracy"]
                writer.add_scalar("accuracy/test", accuracy, step)
            if step in sweep_at:
                dynamics.sweep(sweep_fn, step, **SWEEP_OPTIONS)
    return accuracy


def run(logdir, *, steps=STEPS, seeds=SEEDS, dataset="digits", data_dir=None):
    """Trains every seed; prints one line per run. Returns ``{run name: test accuracy}``."""
    images = data.load(dataset, data_dir, image_size=32)
    print(f"LeNet-5 on {images.description}:")
    results = {}
    for seed in range(seeds):
        name = f"{NAME}/seed{seed}"
        started = time.perf_counter()
        results[name] = train(images, f"{logdir}/{name}", seed, steps)
        print(
            f"  {logdir}/{name}: {steps} steps in {time.perf_counter() - started:.1f} s, "
            f"test accuracy {results[name]:.1%}"
        )
    return results


def main(argv=None):
    args = options.parser("demo.lenet5", __doc__, steps=STEPS, seeds=SEEDS).parse_args(argv)
    options.use_threads(args.threads)
    run(args.logdir, steps=args.steps, seeds=args.seeds, dataset=args.dataset,
        data_dir=args.data_dir)
    print(f"\nSee them with: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
