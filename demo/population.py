"""A population of small MLPs, as in "Neural Network Weights Visualization": many runs to compare.

    python -m demo.population --logdir runs [--population 20] [--steps 200] [--dataset digits]

Tens of one-hidden-layer perceptrons (100 hidden units and 10 outputs, as in the slides), alike
but for their seed, trained by SGD on the handwritten digits (8x8, 64 inputs; 784 with
``--dataset mnist``). Each is one run, ``<logdir>/population/mlp-seed<k>``: the tab overlays
them, lays them out as small multiples, or averages them (their names differ only in the seed)
with a band from the minimum to the maximum across the runs: how alike its layers learn.
"""

import statistics
import time

import torch
from torch.nn import functional as F
from torch.utils.tensorboard import SummaryWriter

from tb_layerdyn import LayerDynamics
from tb_layerdyn.sweeps import make_eval_fn
from demo import data
from demo import models
from demo import options

NAME = "population/mlp"
STEPS = 200
POPULATION = 20
HIDDEN = 100
BATCH_SIZE = 32
LEARNING_RATE = 0.1
HISTOGRAM_EVERY = 50
EVAL_EVERY = 25
TEST_IMAGES = 2000


def train(dataset, run_dir, seed, steps=STEPS):
    """Trains one member of the population from ``seed``; returns its test accuracy."""
    torch.manual_seed(seed)
    channels, height, width = dataset.image_shape
    model = models.one_hidden_layer_mlp(channels * height * width, HIDDEN, dataset.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    batches = data.batches(dataset.train_images, dataset.train_labels, BATCH_SIZE, seed=seed)
    test_fn = make_eval_fn(
        F.cross_entropy, [(dataset.test_images[:TEST_IMAGES], dataset.test_labels[:TEST_IMAGES])]
    )

    with SummaryWriter(run_dir) as writer:
        dynamics = LayerDynamics(model, writer, histogram_every=HISTOGRAM_EVERY, sketch_every=1)
        dynamics.log(0)
        writer.add_scalar("accuracy/test", test_fn(model)["accuracy"], 0)
        for step in range(1, steps + 1):
            images, labels = next(batches)
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            dynamics.log(step)
            writer.add_scalar("loss/train", loss.item(), step)
            if step % EVAL_EVERY == 0 or step == steps:
                accuracy = test_fn(model)["accuracy"]
                writer.add_scalar("accuracy/test", accuracy, step)
    return accuracy


def run(logdir, *, steps=STEPS, population=POPULATION, dataset="digits", data_dir=None):
    """Trains the population; prints a summary line. Returns ``{run name: test accuracy}``."""
    images = data.load(dataset, data_dir)
    print(f"A population of {population} MLPs ({HIDDEN} hidden units) on {images.description}:")
    started = time.perf_counter()
    results = {}
    for seed in range(population):
        name = f"{NAME}-seed{seed}"
        results[name] = train(images, f"{logdir}/{name}", seed, steps)
    accuracies = sorted(results.values())
    print(
        f"  {logdir}/{NAME}-seed0..{population - 1}: {steps} steps each in "
        f"{time.perf_counter() - started:.1f} s, test accuracy {accuracies[0]:.1%} (worst), "
        f"{statistics.median(accuracies):.1%} (median), {accuracies[-1]:.1%} (best)"
    )
    return results


def main(argv=None):
    parser = options.parser("demo.population", __doc__, steps=STEPS)
    parser.add_argument(
        "--population", type=options.positive, default=POPULATION,
        help=f"how many MLPs (seeds 0..N-1; default: {POPULATION})",
    )
    args = parser.parse_args(argv)
    options.use_threads(args.threads)
    run(args.logdir, steps=args.steps, population=args.population, dataset=args.dataset,
        data_dir=args.data_dir)
    print(f"\nSee them with: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
