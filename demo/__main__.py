"""The demo: run every example training script, then open TensorBoard on what they logged.

Usage::

    python -m demo [--logdir runs] [--steps N] [--seeds N] [--population N] [--quick]
                   [--dataset digits] [--data-dir DIR] [--no-tensorboard] [--port PORT]

Runs, in turn (each is also a script of its own, ``python -m demo.<name>``):

- ``lenet5``: LeNet-5 as in Nemcova's paper on handwritten digits, 5 seeds, with sweeps;
- ``stripes``: the stripe task's three small convolutional nets, 3 seeds each;
- ``resnet``: a small ResNet with named stages, 3 seeds;
- ``population``: 20 small MLPs.

Then serves the logdir with TensorBoard on 127.0.0.1 until interrupted, printing the URL.
Nothing is downloaded: the digits ship with scikit-learn, the stripe task is drawn in code, and
MNIST, Fashion-MNIST and CIFAR are read from ``--data-dir`` only when asked for.
"""

import argparse
import socket
import subprocess
import sys
import time

from demo import lenet5
from demo import options
from demo import population
from demo import resnet
from demo import stripes

DEFAULT_PORT = 6006
# --quick (for CI): enough steps for halfway and final sweeps, two seeds, a population of three.
QUICK_STEPS = 12
QUICK_SEEDS = 2
QUICK_POPULATION = 3


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n")[0])
    options.add_common(parser, steps=None)
    parser.add_argument(
        "--seeds", type=options.positive, default=None,
        help="seeds per experiment (default: each experiment's own: 5 LeNet-5, 3 otherwise)",
    )
    parser.add_argument(
        "--population", type=options.positive, default=None,
        help=f"MLPs in the population (default: {population.POPULATION})",
    )
    options.add_dataset(parser)
    parser.add_argument(
        "--quick", action="store_true",
        help=f"a smoke run for CI: {QUICK_STEPS} steps, {QUICK_SEEDS} seeds, a population of "
        f"{QUICK_POPULATION} (unless --steps, --seeds or --population say otherwise)",
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="train and log only; do not start TensorBoard"
    )
    parser.add_argument(
        "--port", type=options.positive, default=None,
        help=f"TensorBoard's port (default: the first free one from {DEFAULT_PORT})",
    )
    return parser.parse_args(argv)


def train_all(args):
    """Runs every experiment with the options given; returns ``{run name: final metric}``."""
    quick = args.quick

    def pick(given, quick_value, default):
        if given is not None:
            return given
        return quick_value if quick else default

    dataset = dict(dataset=args.dataset, data_dir=args.data_dir)
    results = {}
    results.update(lenet5.run(
        args.logdir,
        steps=pick(args.steps, QUICK_STEPS, lenet5.STEPS),
        seeds=pick(args.seeds, QUICK_SEEDS, lenet5.SEEDS),
        **dataset,
    ))
    results.update(stripes.run(
        args.logdir,
        steps=pick(args.steps, QUICK_STEPS, stripes.STEPS),
        seeds=pick(args.seeds, QUICK_SEEDS, stripes.SEEDS),
    ))
    results.update(resnet.run(
        args.logdir,
        steps=pick(args.steps, QUICK_STEPS, resnet.STEPS),
        seeds=pick(args.seeds, QUICK_SEEDS, resnet.SEEDS),
        **dataset,
    ))
    results.update(population.run(
        args.logdir,
        steps=pick(args.steps, QUICK_STEPS, population.STEPS),
        population=pick(args.population, QUICK_POPULATION, population.POPULATION),
        **dataset,
    ))
    return results


# Seconds TensorBoard has to exit after Ctrl+C before the demo kills it.
STOP_TIMEOUT_S = 10


def free_port(start):
    """The first port from ``start`` that nothing on 127.0.0.1 listens on."""
    for port in range(start, start + 100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{start + 99}; pass --port")


def wait_for(server, every_s=0.2):
    """Waits for ``server`` to exit, looking again every ``every_s`` seconds.

    Ctrl+C is delivered to one thread of this process, any that does not block it: torch's own
    threads are candidates. Python then raises ``KeyboardInterrupt`` in the main thread at its next
    bytecode, which a blocking ``Popen.wait()`` does not reach before TensorBoard has exited.
    """
    while server.poll() is None:
        time.sleep(every_s)


def serve(logdir, port):
    """Runs TensorBoard on 127.0.0.1 over ``logdir`` until Ctrl+C."""
    port = port or free_port(DEFAULT_PORT)
    command = [
        sys.executable, "-m", "tensorboard.main",
        "--logdir", logdir, "--host", "127.0.0.1", "--port", str(port),
    ]
    server = subprocess.Popen(command)
    print(f"\nTensorBoard: http://127.0.0.1:{port}/#layer_dynamics  (Ctrl+C to stop)")
    try:
        wait_for(server)
    except KeyboardInterrupt:
        # Ctrl+C reached TensorBoard too (one process group); asked again, it has a few seconds
        # to exit before it is killed, so that the demo never hangs on its way out.
        server.terminate()
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    options.use_threads(args.threads)
    started = time.perf_counter()
    results = train_all(args)
    print(f"\nTrained {len(results)} runs in {time.perf_counter() - started:.0f} s.")
    if not args.no_tensorboard:
        serve(args.logdir, args.port)


if __name__ == "__main__":
    main()
