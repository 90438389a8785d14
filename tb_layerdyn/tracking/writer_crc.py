"""A faster checksum for TensorBoard's event writer, equal to its own.

TensorBoard's record writer (``tensorboard.summary.writer.record_writer``, which
``torch.utils.tensorboard.SummaryWriter`` writes through) checksums every record with a pure-Python
CRC-32C, about 0.12 µs per byte in its writer thread. That thread holds the GIL while it runs, so
the training loop waits for it: a LeNet-5 picture call of four kinds (44 kB) cost 5 ms of checksum,
as much as drawing the pictures. ``install()`` points the record writer at
``framing.masked_crc32c_of``, which gives the same checksum for every input (it is checked against
TensorBoard's on test buffers before anything is replaced) and is 2x faster on a 1.4 kB record,
8x on 9 kB and 18x on 44 kB (``benchmarks/bench_pictures.py``).

It changes how fast every event of the process is checksummed, the user's own scalars included,
and nothing that is written. ``TB_LAYERDYN_FAST_CRC=0`` keeps TensorBoard's own function.
"""

import logging
import os

from tb_layerdyn.format import framing

logger = logging.getLogger(__name__)

ENV = "TB_LAYERDYN_FAST_CRC"


def _record_writer_module():
    try:
        from tensorboard.summary.writer import record_writer
    except ImportError:  # a TensorBoard without this module: nothing to replace
        return None
    return record_writer


def _same_on_samples(theirs) -> bool:
    samples = [bytes(range(256)) * k + bytes(k) for k in (0, 1, 5, 17, 40)]
    samples += [b"", b"\x00", b"tb_layerdyn" * 333]
    return all(theirs(s) == framing.masked_crc32c_of(s) for s in samples)


def install() -> bool:
    """Makes TensorBoard's record writer use ``framing.masked_crc32c_of``; says whether it does.

    Idempotent. Leaves the writer as it is when ``TB_LAYERDYN_FAST_CRC=0``, when its checksum is
    not the pure-Python one this replaces (another library or a TensorFlow install changed it), or
    when the two disagree on a sample.
    """
    module = _record_writer_module()
    if module is None:
        return False
    current = getattr(module, "masked_crc32c", None)
    if current is framing.masked_crc32c_of:
        return True
    if os.environ.get(ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure
    except ImportError:
        return False
    if current is not pure or not _same_on_samples(pure):
        logger.debug("TensorBoard's record writer checksum left as it is: %r", current)
        return False
    module.masked_crc32c = framing.masked_crc32c_of
    return True


def uninstall() -> None:
    """Gives TensorBoard's record writer its own checksum back (tests and benchmarks use this)."""
    module = _record_writer_module()
    if module is not None and getattr(module, "masked_crc32c", None) is framing.masked_crc32c_of:
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure

        module.masked_crc32c = pure
