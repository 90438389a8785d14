"""A faster checksum for TensorBoard's event writer, equal to its own.

TensorBoard's record writer (``tensorboard.summary.writer.record_writer``, which
``torch.utils.tensorboard.SummaryWriter`` writes through) checksums every record with a pure-Python
CRC-32C, about 0.12 µs per byte in its writer thread. That thread holds the GIL while it runs, so
the training loop waits for it: a LeNet-5 picture call of four kinds (44 kB) cost 5 ms of checksum,
as much as drawing the pictures. ``install()`` points the record writer at ``fastest()``: the
native kernels' ``masked_crc32c`` when they are built (eight bytes a step from eight tables: about
1 µs for a 2 kB record), else ``framing.masked_crc32c_of`` (numpy lanes: 2x faster than
TensorBoard's on a 1.4 kB record, 8x on 9 kB and 18x on 44 kB, ``benchmarks/bench_pictures.py``).
Either is checked against TensorBoard's own on sample buffers before anything is replaced.

Inside a LeNet-5 training loop with two torch threads the writer thread spent 110-160 µs of CPU on
the numpy checksum of each 1-2 kB packed or sketch record (2026-12-07), time taken from the step's
own threads; the native one takes a few microseconds there.

It changes how fast every event of the process is checksummed, the user's own scalars included,
and nothing that is written. ``TB_LAYERDYN_FAST_CRC=0`` keeps TensorBoard's own function.
"""

import logging
import os

from tb_layerdyn.format import framing
from tb_layerdyn.tracking import native

logger = logging.getLogger(__name__)

ENV = "TB_LAYERDYN_FAST_CRC"


def _record_writer_module():
    try:
        from tensorboard.summary.writer import record_writer
    except ImportError:  # a TensorBoard without this module: nothing to replace
        return None
    return record_writer


def _same_on_samples(theirs, ours) -> bool:
    samples = [bytes(range(256)) * k + bytes(k) for k in (0, 1, 5, 17, 40)]
    samples += [b"", b"\x00", b"tb_layerdyn" * 333, bytes(range(1, 200, 3)) * 7]
    return all(theirs(s) == ours(s) for s in samples)


def fastest():
    """The checksum ``install`` gives the writer: the native kernels' when they are built, else
    ``framing.masked_crc32c_of``."""
    kernels = native.kernels()
    checksum = getattr(kernels, "masked_crc32c", None)
    return framing.masked_crc32c_of if checksum is None else checksum


def _ours(checksum) -> bool:
    return checksum is framing.masked_crc32c_of or checksum is fastest()


def install() -> bool:
    """Makes TensorBoard's record writer use ``fastest()``; says whether it does.

    Idempotent. Leaves the writer as it is when ``TB_LAYERDYN_FAST_CRC=0``, when its checksum is
    neither the pure-Python one this replaces nor one of ours (another library or a TensorFlow
    install changed it), or when the two disagree on a sample.
    """
    module = _record_writer_module()
    if module is None:
        return False
    current = getattr(module, "masked_crc32c", None)
    ours = fastest()
    if current is ours:
        return True
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure
    except ImportError:
        return False
    if not (current is pure or _ours(current)) or not _same_on_samples(pure, ours):
        logger.debug("TensorBoard's record writer checksum left as it is: %r", current)
        return False
    module.masked_crc32c = ours
    return True


def uninstall() -> None:
    """Gives TensorBoard's record writer its own checksum back (tests and benchmarks use this)."""
    module = _record_writer_module()
    if module is not None and _ours(getattr(module, "masked_crc32c", None)):
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure

        module.masked_crc32c = pure
