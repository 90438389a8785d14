#!/usr/bin/env bash
# Sets up tb_layerdyn from a source checkout on a fresh machine (Python 3.11+, Node 18+).
#
#   bash scripts/setup.sh          the package, its frontend bundle, TensorBoard and scikit-learn
#                                  (for the demo)
#   bash scripts/setup.sh --test   also the test tools: pytest, pandas and pyarrow (the long table's
#                                  tests), Playwright's Python driver and Debian's Chromium for the
#                                  browser test, the frontend's npm packages, transformers and
#                                  lightning (for the callbacks' tests) and build (for the wheel test)
#
# torch is pinned to the CPU build this kind of machine carries; an unpinned torch would pull
# several GB of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

PY=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYTHON_MIN=3.11  # as setup.py's python_requires and README say

if ! "$PY" -c "import sys; sys.exit(0 if sys.version_info >= tuple(map(int, '$PYTHON_MIN'.split('.'))) else 1)"; then
  echo "tb_layerdyn needs Python $PYTHON_MIN or newer; $("$PY" --version) is older (set PYTHON=...)" >&2
  exit 1
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  "$PY" -m pip install --quiet "torch==$TORCH_VERSION"
fi
# The demo's default dataset, scikit-learn's bundled handwritten digits (optional: without it the
# demo says so and trains on digits it draws itself). It needs numpy and scipy, never torch.
"$PY" -c "import sklearn" 2>/dev/null || "$PY" -m pip install --quiet scikit-learn

# Every later install keeps the pinned torch: transformers and lightning accept it as it is.
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
echo "torch==$TORCH_VERSION" > "$constraints"

if [ "$with_tests" = 1 ]; then
  "$PY" -m pip install --quiet -c "$constraints" -e ".[test]"
  if ! command -v chromium >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  fi
  (cd frontend && npm ci --no-audit --no-fund --silent)
else
  "$PY" -m pip install --quiet -c "$constraints" -e .
fi
# The editable install registers the plugin; this (re)builds the bundle it serves.
(cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund --silent; } && node build.mjs)
# The metrics' pass in one loop on the CPU (tb_layerdyn/tracking/native): compiled once for this
# torch, about 30 s. Optional: without a C++ compiler logging uses the eager pass.
"$PY" -m tb_layerdyn.tracking.native || true
