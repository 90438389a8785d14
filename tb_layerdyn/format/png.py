"""Grayscale PNG images, 8 or 16 bits per pixel, to and from numpy arrays; no imaging library.

The pictures payload stores each picture as values quantized to gray levels, so that readers and
the tab can colour them with any scale; a PNG is the smallest container that browsers decode
natively and TensorBoard's blob sequences are made for. Only what the payload needs is written:
one ``IHDR`` (colour type 0, no interlace), one ``IDAT`` and ``IEND``; every row is stored with
filter type 0, which costs nothing to apply and compresses the noise-like pictures of trained
weights as well as the other filters do. The decoder reads any non-interlaced grayscale PNG of
8 or 16 bits (all five row filters, several ``IDAT`` chunks, ancillary chunks skipped), checks
every chunk's CRC-32, and raises ``envelope.FormatError`` naming what is wrong.

See the PNG specification (W3C, second edition), sections 5 (datastream), 9 (filtering) and 11
(chunks), for the byte layout used here.
"""

import struct
import zlib

import numpy as np

from tb_layerdyn.format.envelope import FormatError

SIGNATURE = b"\x89PNG\r\n\x1a\n"
BIT_DEPTHS = (8, 16)
_GRAYSCALE = 0
# Pixel data is deflated with zlib's run-length strategy (Huffman codes plus runs of one repeated
# byte), or only stored in deflate's uncompressed blocks. Pictures of weights, gradients and
# updates are noise to a compressor: on a LeNet-5 in training the run-length strategy saved 2-13%
# of their bytes for about 100 µs a picture, against 10 µs to store them, and that was a quarter of
# a picture call. Activations after a ReLU hold long runs of zeros, which it shortens well.
_STRATEGY = zlib.Z_RLE


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(1, zlib.DEFLATED, 15, 9, _STRATEGY)
    return compressor.compress(data) + compressor.flush()


# A zlib stream of deflate's stored blocks, as ``zlib.compressobj(0)`` writes it (RFC 1950 and
# 1951): a two-byte header, blocks of at most 65,535 bytes each behind a byte that flags the last
# one and the block's length and its complement, then the Adler-32 of the data.
_ZLIB_HEADER = b"\x78\x01"
_STORED_MAX = 0xFFFF


def _stored(data) -> list:
    """The zlib stream of ``data`` in stored blocks, as a list of byte strings to join."""
    parts = [_ZLIB_HEADER]
    length = len(data)
    start = 0
    while True:
        size = min(length - start, _STORED_MAX)
        last = start + size == length
        parts.append(struct.pack("<BHH", 1 if last else 0, size, size ^ 0xFFFF))
        parts.append(data[start:start + size])
        start += size
        if last:
            break
    parts.append(struct.pack(">I", zlib.adler32(data)))
    return parts


def encode(codes, compress=True) -> bytes:
    """A grayscale PNG of a 2-D array of gray levels.

    Args:
        codes: a 2-D ``uint8`` (8-bit PNG) or ``uint16`` (16-bit PNG) array, at least 1x1.
        compress: deflate the pixels with the run-length strategy; ``False`` stores them in
            uncompressed deflate blocks (any PNG decoder reads both).

    Returns:
        The PNG's bytes.

    Raises:
        ValueError: ``codes`` is not a non-empty 2-D ``uint8`` or ``uint16`` array.
    """
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise ValueError(f"codes must be a non-empty 2-D array, got shape {codes.shape}")
    return encode_batch(codes[None], compress)[0]


def encode_batch(codes, compress=True) -> list:
    """``encode`` of several pictures of one size: the rows of all of them are laid out with
    their filter bytes in one array, and only the checksums and the joining are per picture.

    Args:
        codes: a ``(pictures, height, width)`` ``uint8`` or ``uint16`` array, each picture at
            least 1x1.
        compress: as ``encode``'s.

    Returns:
        One PNG's bytes per picture.

    Raises:
        ValueError: ``codes`` is not a 3-D ``uint8`` or ``uint16`` array of non-empty pictures.
    """
    codes = np.asarray(codes)
    if codes.ndim != 3 or 0 in codes.shape[1:]:
        raise ValueError(f"codes must be non-empty 2-D pictures, got shape {codes.shape[1:]}")
    if codes.dtype == np.uint8:
        bits, row_bytes = 8, codes
    elif codes.dtype == np.uint16:
        # PNG stores 16-bit samples most significant byte first.
        bits, row_bytes = 16, codes.astype(">u2").view(np.uint8)
    else:
        raise ValueError(f"codes must be uint8 or uint16, got {codes.dtype}")
    count, height, width = codes.shape
    raw = np.zeros((count, height, row_bytes.shape[2] + 1), dtype=np.uint8)  # column 0: filter type 0
    raw[:, :, 1:] = row_bytes
    head = SIGNATURE + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, _GRAYSCALE, 0, 0, 0))
    tail = _chunk(b"IEND", b"")
    found = []
    data_bytes = height * (row_bytes.shape[2] + 1)
    if not compress and data_bytes <= _STORED_MAX:
        # One stored block each: the stream's fixed bytes are the same for every picture.
        block = _ZLIB_HEADER + struct.pack("<BHH", 1, data_bytes, data_bytes ^ 0xFFFF)
        idat = struct.pack(">I", len(block) + data_bytes + 4) + b"IDAT"
        crc_block = zlib.crc32(block, zlib.crc32(b"IDAT"))
        pack = struct.Struct(">I").pack
        for picture in raw:
            data = picture.tobytes()
            adler = pack(zlib.adler32(data))
            crc = zlib.crc32(adler, zlib.crc32(data, crc_block))
            found.append(b"".join((head, idat, block, data, adler, pack(crc), tail)))
        return found
    for picture in raw:
        data = picture.tobytes()
        if compress:
            found.append(head + _chunk(b"IDAT", _deflate(data)) + tail)
            continue
        stream = _stored(data)
        size = sum(len(part) for part in stream)
        crc = zlib.crc32(b"IDAT")
        for part in stream:
            crc = zlib.crc32(part, crc)
        found.append(b"".join((head, struct.pack(">I", size), b"IDAT", *stream, struct.pack(">I", crc), tail)))
    return found


def size(data: bytes):
    """``(height, width, bit depth)`` from a PNG's header, without decompressing it.

    Raises:
        FormatError: the bytes do not start with a PNG signature and a valid ``IHDR``.
    """
    height, width, bits, _ = _header(data)
    return height, width, bits


def _header(data):
    if not isinstance(data, (bytes, bytearray, memoryview)) or bytes(data[:8]) != SIGNATURE:
        raise FormatError("picture is not a PNG (no PNG signature)")
    if len(data) < 33 or bytes(data[12:16]) != b"IHDR" or struct.unpack(">I", data[8:12])[0] != 13:
        raise FormatError("PNG does not start with a 13-byte IHDR chunk")
    width, height, bits, colour, compression, filtering, interlace = struct.unpack(">IIBBBBB", data[16:29])
    if width == 0 or height == 0:
        raise FormatError(f"PNG is {width}x{height}; pictures have at least one pixel")
    if colour != _GRAYSCALE:
        raise FormatError(f"PNG has colour type {colour}; pictures are grayscale (type 0)")
    if bits not in BIT_DEPTHS:
        raise FormatError(f"PNG has bit depth {bits}; pictures use {BIT_DEPTHS}")
    if compression != 0 or filtering != 0 or interlace != 0:
        raise FormatError("PNG uses a compression, filter method or interlacing this decoder does not read")
    return height, width, bits, 33


def decode(data: bytes) -> np.ndarray:
    """The gray levels of a grayscale PNG.

    Returns:
        A ``(height, width)`` array, ``uint8`` for 8-bit PNGs and ``uint16`` for 16-bit ones.

    Raises:
        FormatError: not a PNG this module reads, a chunk whose CRC fails, truncated data, or
            pixel data of another size than the header states.
    """
    height, width, bits, offset = _header(data)
    data = bytes(data)
    idat = []
    ended = False
    while offset < len(data):
        if offset + 12 > len(data):
            raise FormatError("PNG is truncated inside a chunk header")
        length = struct.unpack(">I", data[offset:offset + 4])[0]
        kind = data[offset + 4:offset + 8]
        end = offset + 12 + length
        if end > len(data):
            raise FormatError(f"PNG chunk {kind!r} is truncated")
        body = data[offset + 8:end - 4]
        if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", data[end - 4:end])[0]:
            raise FormatError(f"PNG chunk {kind!r} fails its CRC")
        if kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            ended = True
            break
        elif not kind[:1].islower():
            raise FormatError(f"PNG has a critical chunk {kind!r} this decoder does not read")
        offset = end
    if not ended:
        raise FormatError("PNG has no IEND chunk (truncated)")
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as error:
        raise FormatError(f"PNG pixel data does not decompress ({error})") from None
    sample_bytes = bits // 8
    stride = width * sample_bytes
    if len(raw) != height * (stride + 1):
        raise FormatError(f"PNG pixel data holds {len(raw)} bytes, not {height} rows of {width} pixels")
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride + 1)
    pixels = _unfilter(rows[:, 0], rows[:, 1:], sample_bytes)
    if bits == 16:
        return pixels.view(">u2").astype(np.uint16)
    return pixels


def _unfilter(filters, rows, bpp):
    """Undoes the per-row filters (PNG spec section 9) of a ``(height, stride)`` byte array."""
    if not filters.any():
        return rows.copy()
    bad = sorted(set(int(f) for f in filters) - {0, 1, 2, 3, 4})
    if bad:
        raise FormatError(f"PNG uses row filter types {bad}; the types are 0 to 4")
    out = np.zeros((rows.shape[0], rows.shape[1]), dtype=np.uint8)
    previous = np.zeros(rows.shape[1], dtype=np.uint8)
    for y, (kind, row) in enumerate(zip(filters, rows)):
        if kind == 0:
            line = row.copy()
        elif kind == 2:
            line = row + previous
        else:
            line = _unfilter_sequential(int(kind), row, previous, bpp)
        out[y] = line
        previous = line
    return out


def _unfilter_sequential(kind, row, previous, bpp):
    """Sub (1), Average (3) and Paeth (4): each byte depends on the reconstructed one ``bpp``
    bytes to its left, so the row is rebuilt byte by byte (PNGs written here use type 0 only)."""
    line = np.zeros(len(row), dtype=np.int32)
    up = previous.astype(np.int32)
    for x, value in enumerate(row.astype(np.int32)):
        left = line[x - bpp] if x >= bpp else 0
        if kind == 1:
            predictor = left
        elif kind == 3:
            predictor = (left + up[x]) // 2
        else:
            upper_left = up[x - bpp] if x >= bpp else 0
            estimate = left + up[x] - upper_left
            distances = (abs(estimate - left), abs(estimate - up[x]), abs(estimate - upper_left))
            predictor = (left, up[x], upper_left)[distances.index(min(distances))]
        line[x] = (value + predictor) & 0xFF
    return line.astype(np.uint8)
