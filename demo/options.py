"""Command-line options shared by the demo's scripts, and the one-thread default they run with."""

import argparse

import torch

from demo import data


def parser(module, doc, *, steps, seeds=None, dataset=True):
    """An ``ArgumentParser`` with the options every experiment script takes.

    Args:
        module: the script's module name, e.g. ``"demo.lenet5"``, for the usage line.
        doc: the script's module docstring; its first line becomes the description.
        steps: the script's default number of training steps per run.
        seeds: its default number of seeds, or ``None`` for a script without ``--seeds``.
        dataset: whether the script trains on a classification dataset (``--dataset``,
            ``--data-dir``).
    """
    result = argparse.ArgumentParser(
        prog=f"python -m {module}", description=doc.strip().split("\n")[0]
    )
    add_common(result, steps=steps)
    if seeds is not None:
        result.add_argument(
            "--seeds", type=positive, default=seeds,
            help=f"runs with seeds 0..N-1 (default: {seeds})",
        )
    if dataset:
        add_dataset(result)
    return result


def add_common(parser_, *, steps):
    parser_.add_argument("--logdir", default="runs", help="where runs are written (default: runs)")
    steps_default = "each experiment's own" if steps is None else str(steps)
    parser_.add_argument(
        "--steps", type=positive, default=steps,
        help=f"training steps per run (default: {steps_default})",
    )
    parser_.add_argument(
        "--threads", type=positive, default=1,
        help="torch intra-op threads (default: 1; these models are too small to gain from more, "
        "and on a busy 2-core machine two threads are many times slower)",
    )


def add_dataset(parser_):
    parser_.add_argument(
        "--dataset", choices=data.DATASETS, default="digits",
        help="digits: scikit-learn's bundled handwritten digits (default); the others are read "
        "from --data-dir, never downloaded",
    )
    parser_.add_argument(
        "--data-dir", default=None,
        help="directory holding MNIST/, FashionMNIST/, cifar-10-batches-py/ or cifar-100-python/ "
        "in torchvision's layout",
    )


def positive(text):
    """``argparse`` type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def use_threads(threads):
    """Sets torch's intra-op threads (the demo's models are small: one thread is fastest)."""
    torch.set_num_threads(threads)
