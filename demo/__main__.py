"""The demo: train small models on synthetic digits, log their layer dynamics, open TensorBoard.

Usage::

    python -m demo [--logdir runs] [--steps 400] [--no-sweeps] [--no-tensorboard]

Trains LeNet-5 and an MLP for three seeds each on seven-segment digits drawn in code (nothing is
downloaded), logging into ``<logdir>/<model>-seed<k>``; each LeNet run also takes interpolation
sweeps (every scope, robustness included) halfway and at its end. Then serves the logdir with
TensorBoard on 127.0.0.1 until interrupted.
"""

import argparse
import os
import socket
import subprocess
import sys
import time

from demo import data
from demo import train

SEEDS = (0, 1, 2)
TRAIN_IMAGES = 4096
TEST_IMAGES = 1024
DEFAULT_PORT = 6006


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--logdir", default="runs", help="where runs are written (default: runs)")
    parser.add_argument(
        "--steps", type=int, default=400, help="training steps per run (default: 400)"
    )
    parser.add_argument(
        "--no-sweeps", action="store_true", help="skip the interpolation sweeps of the LeNet runs"
    )
    parser.add_argument(
        "--no-tensorboard", action="store_true", help="train and log only; do not start TensorBoard"
    )
    parser.add_argument(
        "--port", type=int, default=None,
        help=f"TensorBoard's port (default: the first free one from {DEFAULT_PORT})",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    return args


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


def train_all(logdir, steps, sweeps=True):
    """Trains every demo model for every seed; prints one line per run."""
    print(f"Task: {data.describe()}.")
    train_set = data.glyphs(TRAIN_IMAGES, seed=0)
    test_set = data.glyphs(TEST_IMAGES, seed=1)
    for name in train.DEMO_MODELS:
        for seed in SEEDS:
            run_dir = os.path.join(logdir, f"{name}-seed{seed}")
            started = time.perf_counter()
            accuracy = train.train_run(
                name, seed, run_dir, train_set, test_set, steps=steps, sweeps=sweeps
            )
            print(
                f"  {run_dir}: {steps} steps in {time.perf_counter() - started:.1f} s, "
                f"test accuracy {accuracy:.1%}"
            )


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
        server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    train_all(args.logdir, args.steps, sweeps=not args.no_sweeps)
    if not args.no_tensorboard:
        serve(args.logdir, args.port)


if __name__ == "__main__":
    main()
