"""``python -m tb_layerdyn.tracking.native``: builds the native flat-pass kernel for this torch (once)."""

import sys
import time

from tb_layerdyn.tracking import native


def main() -> int:
    started = time.perf_counter()
    path = native.build(verbose="-v" in sys.argv[1:])
    if path is None or native.kernels() is None:
        print("tb_layerdyn: the native kernel was not built; logging uses the eager pass")
        return 1
    print(f"tb_layerdyn: native kernel ready in {time.perf_counter() - started:.1f} s: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
