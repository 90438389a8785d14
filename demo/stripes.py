"""The stripe task of "Inside Neural Network Training": noise in, a black vertical stripe out.

    python -m demo.stripes --logdir runs [--steps 600] [--seeds 3]

Small all-convolutional nets (kevindoran/dip) are trained with Adam by mean squared error to turn
one fixed 16x16 noisy image into a black vertical stripe on white: the 4-layer net (three 3x3
convolutions of 8 channels, then a 3x3 one to the output), its variant with 10 inner channels and
a 1x1 last filter, and the 6-layer net. The question the source asked: which layers stabilise
first? Each net and seed is one run, ``<logdir>/stripes-<net>/seed<k>``; layer dynamics and the
training loss are logged at every step, pictures of every layer (its weights, gradients, updates,
travel, and its activations of the noise image) every 5 steps, as in the source's videos, and at
the end a sweep from the initial weights (whole model and one layer at a time) shows which layers
the learned mapping needs.
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

NETS = {
    "stripes-4layer": models.stripe_4layer,
    "stripes-4layer-10ch-1x1": models.stripe_4layer_wide,
    "stripes-6layer": models.stripe_6layer,
}
STEPS = 600
SEEDS = 3
# The source's Adam settings: a large epsilon damps the first steps; a little weight decay
# stands in for its L2 penalty on every weight.
LEARNING_RATE = 0.005
EPSILON = 0.01
WEIGHT_DECAY = 1e-3
HISTOGRAM_EVERY = 50
# Pictures at the first step and every 5th: 121 frames of each kind over 600 steps.
IMAGES_EVERY = 5


def train(net, run_dir, seed, steps=STEPS):
    """Trains ``NETS[net]`` from ``seed`` on the stripe task; returns the last loss."""
    noise, target = data.stripe_task()
    torch.manual_seed(seed)
    model = NETS[net]()
    optimizer = torch.optim.Adam(
        model.parameters(), lr=LEARNING_RATE, eps=EPSILON, weight_decay=WEIGHT_DECAY
    )
    eval_fn = make_eval_fn(F.mse_loss, [(noise, target)], accuracy=False)

    with SummaryWriter(run_dir) as writer:
        dynamics = LayerDynamics(
            model, writer, histogram_every=HISTOGRAM_EVERY, images_every=IMAGES_EVERY, probe=noise,
        )
        dynamics.log(0)
        for step in range(1, steps + 1):
            loss = F.mse_loss(model(noise), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            dynamics.log(step)
            writer.add_scalar("loss/train", loss.item(), step)
        dynamics.sweep(eval_fn, steps, scope=("model", "layers"))
    return loss.item()


def run(logdir, *, steps=STEPS, seeds=SEEDS):
    """Trains every net for every seed; prints one line per run. Returns ``{run name: loss}``."""
    print("Stripe task: a fixed 16x16 noise image to a black vertical stripe on white, by MSE:")
    results = {}
    for net in NETS:
        for seed in range(seeds):
            name = f"{net}/seed{seed}"
            started = time.perf_counter()
            results[name] = train(net, f"{logdir}/{name}", seed, steps)
            print(
                f"  {logdir}/{name}: {steps} steps in {time.perf_counter() - started:.1f} s, "
                f"loss {results[name]:.2g}"
            )
    return results


def main(argv=None):
    parser = options.parser("demo.stripes", __doc__, steps=STEPS, seeds=SEEDS, dataset=False)
    args = parser.parse_args(argv)
    options.use_threads(args.threads)
    run(args.logdir, steps=args.steps, seeds=args.seeds)
    print(f"\nSee them with: tensorboard --logdir {args.logdir}")


if __name__ == "__main__":
    main()
