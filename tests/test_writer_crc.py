"""The faster CRC-32C given to TensorBoard's record writer: equal checksums, files TensorBoard reads."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.summary.writer import record_writer

from tb_layerdyn import LayerDynamics
from tb_layerdyn.format import framing
from tb_layerdyn.tracking import native, writer_crc

from picture_helpers import LeNet


def slow_masked_crc32c(data: bytes) -> int:
    """CRC-32C bit by bit (Castagnoli, reflected), then TFRecord's mask: no tables, no lanes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_the_known_check_value():
    # CRC-32C of "123456789" is 0xE3069283 (the catalogue's check value); masked as TFRecord does.
    crc = 0xE3069283
    assert framing.masked_crc32c_of(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@pytest.mark.parametrize(
    "length",
    # Around the switch to lanes, lane lengths and their multiples, with tails of every size mod 4.
    [0, 1, 3, 4, 5, 255, 1023, 1024, 1025, 1027, 2047, 4096, 4099, 8191, 9000, 20011, 65537],
)
@pytest.mark.parametrize("ours", ["lanes", "native"])
def test_equal_to_a_bitwise_reference(length, ours):
    checksum = _checksum(ours)
    data = np.random.default_rng(length).integers(0, 256, length, dtype=np.uint8).tobytes()
    assert checksum(data) == slow_masked_crc32c(data)
    if length > 3:  # a record that starts off an 8-byte boundary
        assert checksum(memoryview(data)[3:]) == slow_masked_crc32c(data[3:])


@pytest.mark.parametrize("ours", ["lanes", "native"])
def test_equal_to_tensorboards_own_on_structured_bytes(ours):
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    checksum = _checksum(ours)
    for data in (bytes(5000), b"\xff" * 7777, bytes(range(256)) * 40 + b"abc", memoryview(b"xy" * 3000)):
        assert checksum(data) == masked_crc32c(bytes(data))


def _checksum(ours):
    """framing's numpy lanes, or the native kernels' (built here when they are not yet)."""
    if ours == "lanes":
        return framing.masked_crc32c_of
    if native.kernels() is None and native.build() is None:
        pytest.skip("the native kernels could not be built here (no C++ compiler?)")
    return native.kernels().masked_crc32c


def test_the_native_checksum_is_installed_when_built():
    _checksum("native")
    writer_crc.uninstall()
    assert writer_crc.fastest() is native.kernels().masked_crc32c
    assert writer_crc.install() and record_writer.masked_crc32c is native.kernels().masked_crc32c
    writer_crc.uninstall()
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c as pure

    assert record_writer.masked_crc32c is pure
    writer_crc.install()


def test_a_tracker_installs_it_and_tensorboard_reads_what_it_wrote(tmp_path):
    writer_crc.uninstall()
    model = LeNet()
    tracker = LayerDynamics(model, str(tmp_path), histogram_every=1, images_every=1)
    assert record_writer.masked_crc32c is writer_crc.fastest()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(3):
        model(torch.randn(4, 1, 32, 32)).square().mean().backward()
        opt.step()
        tracker.log(step)
        opt.zero_grad()
    tracker.flush()
    (name,) = [n for n in os.listdir(tmp_path) if "tfevents" in n]
    path = str(tmp_path / name)
    sizes = []
    # TensorBoard's Python reader checks every frame with its own pure-Python CRC-32C.
    for event in event_file_loader.RawEventFileLoader(path).Load():
        sizes.append(len(event))
    assert max(sizes) > 4096  # pictures and histograms: records long enough to take the lanes
    with open(path, "rb") as f:
        frames = framing.scan(f.read())
    assert not frames.corrupt and len(frames.starts) == len(sizes)


def test_switched_off_by_the_environment(tmp_path):
    code = (
        "from tb_layerdyn.tracking import writer_crc\n"
        "from tensorboard.summary.writer import record_writer as r\n"
        "from tensorboard.compat.tensorflow_stub import pywrap_tensorflow as p\n"
        "assert not writer_crc.install() and r.masked_crc32c is p.masked_crc32c\n"
    )
    env = dict(os.environ, TB_LAYERDYN_FAST_CRC="0")
    subprocess.run([sys.executable, "-c", code], env=env, check=True)


def test_another_checksum_is_left_alone(monkeypatch):
    writer_crc.uninstall()

    def theirs(data):
        return 0

    monkeypatch.setattr(record_writer, "masked_crc32c", theirs)
    assert not writer_crc.install()
    assert record_writer.masked_crc32c is theirs
