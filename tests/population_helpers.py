"""A small population of real training runs, logged by the tracker with weight sketches, and
the weights it had at every step saved beside it (``torch.save`` of each state dict), so tests
compute exact distances from the saved weights.

Runs ``pop/seed00`` .. ``pop/seedNN`` train one MLP architecture from different seeds;
``pop/short`` stops before the last step; ``other/wide`` has another hidden width (another
architecture, never compared with the rest).
"""

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from tb_layerdyn import LayerDynamics

SEEDS = 12
STEPS = 6
LAYERS = ("0", "2", "4")
SKETCH_SIZE = 128


def mlp(hidden=64):
    # 16*64+64 = 1088 and 64*32+32 = 2080 parameters (sketched to 128), 32*3+3 = 99 (kept exactly).
    return nn.Sequential(nn.Linear(16, hidden), nn.ReLU(), nn.Linear(hidden, 32), nn.ReLU(), nn.Linear(32, 3))


def train(run_dir, weights_dir, seed, steps=STEPS, hidden=64, **options):
    """Trains one run for ``steps`` steps, logging every step and saving its weights."""
    torch.manual_seed(seed)
    model = mlp(hidden)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    generator = torch.Generator().manual_seed(1000 + seed)
    x = torch.randn(64, 16, generator=generator)
    y = torch.randint(0, 3, (64,), generator=generator)
    tracker = LayerDynamics(model, run_dir, histogram_every=None, sketch_size=SKETCH_SIZE, sketch_every=1, **options)
    os.makedirs(weights_dir, exist_ok=True)
    for step in range(steps):
        F.cross_entropy(model(x), y).backward()
        opt.step()
        tracker.log(step)
        opt.zero_grad()
        torch.save(model.state_dict(), os.path.join(weights_dir, f"{step}.pt"))
    tracker.flush()


def write_population(root):
    """Writes the logdir under ``root/logs`` and the weights under ``root/weights``; returns the
    logdir."""
    logdir = os.path.join(root, "logs")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for seed in range(SEEDS):
            name = f"pop/seed{seed:02d}"
            train(os.path.join(logdir, name), os.path.join(root, "weights", name), seed)
        train(os.path.join(logdir, "pop/short"), os.path.join(root, "weights", "pop/short"), 99,
              steps=STEPS - 1)
        train(os.path.join(logdir, "other/wide"), os.path.join(root, "weights", "other/wide"), 7,
              hidden=48)
    finally:
        torch.set_num_threads(threads)
    return logdir


def saved_layer(root, run, step, layer):
    """The saved weights of one layer (its parameters flattened in registration order), float64."""
    state = torch.load(os.path.join(root, "weights", run, f"{step}.pt"))
    parts = [state[f"{layer}.weight"].reshape(-1), state[f"{layer}.bias"].reshape(-1)]
    return torch.cat(parts).double().numpy()


def exact_distances(root, runs, step, layer=None):
    """Slow reference: the exact Euclidean distances between the saved weights of ``runs``."""
    layers = LAYERS if layer is None else (layer,)
    vectors = [np.concatenate([saved_layer(root, run, step, name) for name in layers]) for run in runs]
    n = len(runs)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            out[i, j] = float(np.sqrt(((vectors[i] - vectors[j]) ** 2).sum()))
    return out
