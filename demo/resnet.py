"""A small ResNet with named stages, so that the tab's block view has blocks to compare.

    python -m demo.resnet --logdir runs [--steps 300] [--seeds 3] [--dataset NAME --data-dir DIR]

``models.SmallResNet``: a stem, three stages of two residual blocks (``stage1`` .. ``stage3``,
8, 16 and 32 channels) and a linear head, trained by SGD with momentum and weight decay (the
RWC paper's ResNet recipe) on the handwritten digits at 16x16 (or MNIST, Fashion-MNIST, CIFAR from
``--data-dir`` at their own size). ``LayerDynamics`` groups the layers of each top-level child
(``block_groups=True``, its default), so the stem and each stage get their own curves, as the
RWC paper's per-block figures do. Each seed is one run, ``<logdir>/resnet/seed<k>``.
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

NAME = "resnet"
STEPS = 300
SEEDS = 3
BATCH_SIZE = 64
LEARNING_RATE = 0.05
WEIGHT_DECAY = 1e-4
HISTOGRAM_EVERY = 50
EVAL_EVERY = 25
TEST_IMAGES = 1000
# The digits are 8x8 at heart; at 16x16 the last stage still sees 4x4 feature maps.
DIGITS_SIZE = 16


def train(dataset, run_dir, seed, steps=STEPS):
    """Trains the small ResNet from ``seed`` and logs it into ``run_dir``; returns test accuracy."""
    torch.manual_seed(seed)
    model = models.SmallResNet(num_classes=dataset.num_classes, in_channels=dataset.image_shape[0])
    optimizer = torch.optim.SGD(
        model.parameters(), lr=LEARNING_RATE, momentum=0.9, weight_decay=WEIGHT_DECAY
    )
    batches = data.batches(dataset.train_images, dataset.train_labels, BATCH_SIZE, seed=seed)
    test_fn = make_eval_fn(
        F.cross_entropy, [(dataset.test_images[:TEST_IMAGES], dataset.test_labels[:TEST_IMAGES])]
    )

    def test_accuracy():
        model.eval()  # BatchNorm uses its running statistics
        accuracy = test_fn(model)["accuracy"]
        model.train()
        return accuracy

    with SummaryWriter(run_dir) as writer:
        dynamics = LayerDynamics(model, writer, histogram_every=HISTOGRAM_EVERY)
        dynamics.log(0)
        writer.add_scalar("accuracy/test", test_accuracy(), 0)
        for step in range(1, steps + 1):
            images, labels = next(batches)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            dynamics.log(step)
            writer.add_scalar("loss/train", loss.item(), step)
            if step % EVAL_EVERY == 0 or step == steps:
                accuracy = test_accuracy()
                writer.add_scalar("accuracy/test", accuracy, step)
    return accuracy


def run(logdir, *, steps=STEPS, seeds=SEEDS, dataset="digits", data_dir=None):
    """Trains every seed; prints one line per run. Returns ``{run name: test accuracy}``."""
    image_size = DIGITS_SIZE if dataset == "digits" else None
    images = data.load(dataset, data_dir, image_size=image_size)
    print(f"Small ResNet on {images.description}:")
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
    args = options.parser("demo.resnet", __doc__, steps=STEPS, seeds=SEEDS).parse_args(argv)
    options.use_threads(args.threads)
    run(args.logdir, steps=args.steps, seeds=args.seeds, dataset=args.dataset,
        data_dir=args.data_dir)
    print(f"\nSee them with: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
