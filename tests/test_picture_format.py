"""The pictures payload without torch: PNG codec, levels, colours, scales, layout and events.

Colours are checked against a scalar reference written here from the formulas of
``tb_layerdyn.format.colormaps``' docstring; the PNG codec against a reference filter of each type
written here, and against Pillow where it is installed.
"""

import dataclasses
import io
import json
import math
import os
import struct
import zlib

import numpy as np
import pytest
from tensorboard.compat.proto import summary_pb2, types_pb2

from tb_layerdyn.format import colormaps, envelope, kind_of, png
from tb_layerdyn.format import pictures as payload
from tb_layerdyn.format import tensors

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "frontend", "test", "fixtures", "picture_colormap.json")

# ColorBrewer PiYG, 11 classes, as published (colorbrewer2.org).
PUBLISHED_PIYG = ["#8e0152", "#c51b7d", "#de77ae", "#f1b6da", "#fde0ef", "#f7f7f7",
                  "#e6f5d0", "#b8e186", "#7fbc41", "#4d9221", "#276419"]


def hex_rgb(code):
    return tuple(int(code[i:i + 2], 16) for i in (1, 3, 5))


def reference_diverging(v, s):
    """One value's PiYG colour, straight from the docstring's formula, in plain Python."""
    if not math.isfinite(v):
        return colormaps.NAN_RGB
    x = 0.0 if s == 0 else min(max(v / s, -1.0), 1.0)
    p = (x + 1.0) * 5.0
    i = min(math.floor(p), 9)
    f = p - i
    lo, hi = colormaps.PIYG[i], colormaps.PIYG[i + 1]
    return tuple(math.floor(a + f * (b - a) + 0.5) for a, b in zip(lo, hi))


# ----------------------------------------------------------------------------- colours


def test_piyg_is_colorbrewers_table():
    assert [tuple(c) for c in colormaps.PIYG] == [hex_rgb(c) for c in PUBLISHED_PIYG]


def test_zero_is_the_centre_and_the_scale_ends_are_the_maps_ends():
    out = colormaps.diverging(np.array([0.0, -0.0, -2.5, 2.5, -99.0, 99.0]), 2.5)
    assert tuple(out[0]) == tuple(out[1]) == hex_rgb("#f7f7f7")
    assert tuple(out[2]) == tuple(out[4]) == hex_rgb("#8e0152")  # negative: purple
    assert tuple(out[3]) == tuple(out[5]) == hex_rgb("#276419")  # positive: green


def test_diverging_follows_the_reference_everywhere():
    values = np.linspace(-1.3, 1.3, 2601)
    values[::97] = np.nan
    out = colormaps.diverging(values, 1.1)
    for v, got in zip(values, out):
        assert tuple(got) == tuple(reference_diverging(float(v), 1.1))
    # Exactly between two classes, the colour is halfway.
    half = colormaps.diverging(np.array([0.1]), 1.0)[0]
    assert tuple(half) == tuple(math.floor((a + b) / 2 + 0.5) for a, b in zip(colormaps.PIYG[5], colormaps.PIYG[6]))


def test_a_zero_scale_draws_everything_at_the_centre():
    out = colormaps.diverging(np.array([-3.0, 0.0, 4.0]), 0.0)
    assert (out == np.array(colormaps.PIYG[5], dtype=np.uint8)).all()


def test_opacity_follows_travel_over_white():
    colour = np.array(colormaps.PIYG[0], dtype=np.uint8)
    travel = np.array([0.0, 0.5, 1.0, 2.0, 7.0, np.nan])
    out = colormaps.over_white(np.repeat(colour[None], len(travel), 0), travel, 2.0)
    assert tuple(out[0]) == (255, 255, 255)  # not moved: white
    assert tuple(out[3]) == tuple(out[4]) == tuple(colour)  # moved the scale or more: full colour
    for k, a in ((1, 0.25), (2, 0.5)):
        want = tuple(math.floor(a * c + (1 - a) * 255 + 0.5) for c in colour)
        assert tuple(out[k]) == want
    assert tuple(out[5]) == colormaps.NAN_RGB
    # Opacity grows with travel, channel by channel towards the colour.
    ramp = colormaps.over_white(np.repeat(colour[None], 50, 0), np.linspace(0, 2, 50), 2.0).astype(int)
    assert (np.diff(ramp[:, 1]) <= 0).all() and ramp[0, 1] == 255 and ramp[-1, 1] == colour[1]


def test_gray_spans_its_range():
    out = colormaps.gray(np.array([-1.0, 0.0, 0.5, 1.0, 3.0, np.inf]), 0.0, 1.0)
    assert [tuple(c) for c in out[:5]] == [(0, 0, 0), (0, 0, 0), (128, 128, 128), (255,) * 3, (255,) * 3]
    assert tuple(out[5]) == colormaps.NAN_RGB
    assert (colormaps.gray(np.array([2.0, 9.0]), 2.0, 2.0) == 128).all()


def test_special_colours_never_occur_in_the_maps():
    drawn = np.concatenate([
        colormaps.diverging(np.linspace(-1, 1, 4001), 1.0),
        colormaps.gray(np.linspace(0, 1, 256), 0.0, 1.0),
        colormaps.over_white(colormaps.diverging(np.linspace(-1, 1, 401), 1.0), np.linspace(0, 1, 401), 1.0),
    ])
    for special in (colormaps.NAN_RGB, colormaps.BACKGROUND_RGB):
        assert not (drawn == np.array(special)).all(axis=1).any()


def test_the_tabs_colormap_fixture_is_current():
    """``frontend/test/fixtures/picture_colormap.json`` is what ``colormap.js`` is tested against;
    regenerate it with ``python -c "from tb_layerdyn.format import colormaps; import json;
    print(json.dumps(colormaps.fixture(), indent=1))" > frontend/test/fixtures/picture_colormap.json``."""
    with open(FIXTURE) as f:
        assert json.load(f) == json.loads(json.dumps(colormaps.fixture()))


# ----------------------------------------------------------------------------- PNG


def reference_png(rows, bits, filters):
    """A grayscale PNG with the given filter type per row, filtered by the spec's equations."""
    rows = np.asarray(rows)
    raw_rows = rows.astype(">u2").view(np.uint8) if bits == 16 else rows.astype(np.uint8)
    bpp = bits // 8
    out = bytearray()
    previous = np.zeros(raw_rows.shape[1], dtype=np.int64)
    for kind, row in zip(filters, raw_rows.astype(np.int64)):
        filtered = []
        for x, value in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = previous[x]
            c = previous[x - bpp] if x >= bpp else 0
            if kind == 0:
                pred = 0
            elif kind == 1:
                pred = a
            elif kind == 2:
                pred = b
            elif kind == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            filtered.append((value - pred) % 256)
        out.append(kind)
        out.extend(filtered)
        previous = row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = rows.shape
    return (png.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
            + chunk(b"tEXt", b"Comment\x00ancillary") + chunk(b"IDAT", zlib.compress(bytes(out))[:7])
            + chunk(b"IDAT", zlib.compress(bytes(out))[7:]) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip_is_bit_exact(bits):
    rng = np.random.default_rng(bits)
    dtype = np.uint8 if bits == 8 else np.uint16
    for shape in [(1, 1), (1, 17), (9, 1), (31, 64)]:
        codes = rng.integers(0, 1 << bits, size=shape, dtype=np.int64).astype(dtype)
        data = png.encode(codes)
        assert png.size(data) == shape + (bits,)
        decoded = png.decode(data)
        assert decoded.dtype == dtype
        np.testing.assert_array_equal(decoded, codes)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_decoder_reads_every_row_filter(bits):
    rng = np.random.default_rng(7)
    codes = rng.integers(0, 1 << bits, size=(10, 6), dtype=np.int64)
    data = reference_png(codes, bits, filters=[0, 1, 2, 3, 4, 4, 3, 2, 1, 0])
    np.testing.assert_array_equal(png.decode(data), codes)


def test_pillow_reads_our_pngs():
    image_module = pytest.importorskip("PIL.Image")
    codes = np.arange(5 * 7, dtype=np.uint8).reshape(5, 7) * 7
    image = image_module.open(io.BytesIO(png.encode(codes)))
    assert image.size == (7, 5) and image.mode == "L"
    np.testing.assert_array_equal(np.asarray(image), codes)


def stored_png(codes, bits):
    """A PNG of ``codes`` whose pixels zlib itself stores uncompressed (level 0)."""
    sample = codes.astype(">u2").view(np.uint8).reshape(codes.shape[0], -1) if bits == 16 else codes
    raw = b"".join(b"\x00" + row.tobytes() for row in sample)
    compressor = zlib.compressobj(0, zlib.DEFLATED, 15, 9, zlib.Z_RLE)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = codes.shape
    return (png.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
            + chunk(b"IDAT", compressor.compress(raw) + compressor.flush()) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [8, 16])
def test_stored_pngs_are_zlibs_and_a_batch_is_each_alone(bits):
    rng = np.random.default_rng(bits + 1)
    dtype = np.uint8 if bits == 8 else np.uint16
    for shape in [(1, 1), (3, 1), (30, 100), (64, 64)]:
        codes = rng.integers(0, 1 << bits, size=(3,) + shape, dtype=np.int64).astype(dtype)
        batch = png.encode_batch(codes, compress=False)
        for picture, data in zip(codes, batch):
            assert data == png.encode(picture, compress=False) == stored_png(picture, bits)
        assert png.encode_batch(codes) == [png.encode(picture) for picture in codes]


def blocks_png(codes, bits):
    """A PNG of ``codes`` in stored deflate blocks of 65,535 bytes each but the last, built by
    hand (zlib's level 0 cuts longer data into blocks of its own sizes)."""
    sample = codes.astype(">u2").view(np.uint8).reshape(codes.shape[0], -1) if bits == 16 else codes
    raw = b"".join(b"\x00" + row.tobytes() for row in sample)
    pieces = [raw[i:i + 65535] for i in range(0, len(raw), 65535)]
    stream = b"\x78\x01" + b"".join(
        struct.pack("<BHH", int(i == len(pieces) - 1), len(p), len(p) ^ 0xFFFF) + p for i, p in enumerate(pieces)
    ) + struct.pack(">I", zlib.adler32(raw))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = codes.shape
    return (png.SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, 0, 0, 0, 0))
            + chunk(b"IDAT", stream) + chunk(b"IEND", b""))


@pytest.mark.parametrize("bits", [8, 16])
def test_stored_pngs_cut_their_rows_in_blocks_of_65535_bytes(bits):
    rng = np.random.default_rng(bits + 2)
    dtype = np.uint8 if bits == 8 else np.uint16
    # 65,535 bytes of rows (5 x 13,106 at 8 bits, 5 x 6,553 at 16) fill one block exactly; one
    # byte more or less either side of it; then several blocks.
    for shape in [(1, 1), (30, 100), (5, 13106), (5, 6553), (1, 65534), (1, 65535), (1, 32767), (200, 400)]:
        codes = rng.integers(0, 1 << bits, size=(2,) + shape, dtype=np.int64).astype(dtype)
        for picture, data in zip(codes, png.encode_batch(codes, compress=False)):
            assert data == png.encode(picture, compress=False) == blocks_png(picture, bits)
            np.testing.assert_array_equal(png.decode(data), picture)
    small = rng.integers(0, 1 << bits, size=(30, 100), dtype=np.int64).astype(dtype)
    assert blocks_png(small, bits) == stored_png(small, bits)


@pytest.mark.parametrize("bits", [8, 16])
def test_stored_pngs_longer_than_a_deflate_block_read_back(bits):
    # 2 x 40,001 bytes (8 bits) or 2 x 80,001 (16 bits) of rows: two or three stored blocks.
    dtype = np.uint8 if bits == 8 else np.uint16
    codes = np.random.default_rng(5).integers(0, 1 << bits, size=(2, 40000), dtype=np.int64).astype(dtype)
    data = png.encode(codes, compress=False)
    np.testing.assert_array_equal(png.decode(data), codes)
    image_module = pytest.importorskip("PIL.Image")
    image = image_module.open(io.BytesIO(data))
    assert image.size == (40000, 2)
    if bits == 8:
        np.testing.assert_array_equal(np.asarray(image), codes)


def test_broken_pngs_raise_format_errors():
    good = png.encode(np.zeros((3, 4), dtype=np.uint8))
    with pytest.raises(envelope.FormatError, match="signature"):
        png.decode(b"GIF89a" + good[6:])
    corrupt = bytearray(good)
    corrupt[40] ^= 0xFF
    with pytest.raises(envelope.FormatError, match="CRC"):
        png.decode(bytes(corrupt))
    with pytest.raises(envelope.FormatError, match="truncated|IEND"):
        png.decode(good[:-15])
    with pytest.raises(ValueError, match="uint8 or uint16"):
        png.encode(np.zeros((2, 2), dtype=np.int32))
    with pytest.raises(ValueError, match="2-D"):
        png.encode(np.zeros(4, dtype=np.uint8))


# ----------------------------------------------------------------------------- levels


@pytest.mark.parametrize("bits", [8, 16])
def test_levels_keep_zero_exact_and_reach_the_ends(bits):
    values = np.array([[-0.5, 0.0, 0.25, 2.0], [np.nan, np.inf, -1.0, 1e-3]])
    levels, plane = payload.quantize(values, "diverging", bits)
    top = (1 << bits) - 1
    assert plane.interval == (-2.0, 2.0)
    assert levels[0, 1] == 1 + (top - 1) // 2 and levels[0, 3] == top
    assert levels[1, 0] == 0 and levels[1, 1] == 0  # not finite
    back = payload.dequantize(levels, plane.interval, bits)
    assert back[0, 1] == 0.0 and back[0, 3] == 2.0
    assert np.isnan(back[1, :2]).all()
    step = 4.0 / (top - 1)
    finite = np.isfinite(values)
    assert np.abs(back[finite] - values[finite]).max() <= step / 2 + 1e-12


def test_levels_of_gray_planes_span_min_to_max():
    values = np.array([[0.0, 3.0, 1.5], [0.75, 2.0, 3.0]])
    levels, plane = payload.quantize(values, "gray", 8)
    assert plane.interval == (0.0, 3.0)
    assert levels.min() == 1 and levels.max() == 255
    np.testing.assert_allclose(payload.dequantize(levels, plane.interval), values, atol=3.0 / 254 / 2)


def test_constant_and_empty_planes():
    levels, plane = payload.quantize(np.zeros((2, 3)), "diverging")
    assert plane.interval == (0.0, 0.0) and (payload.dequantize(levels, plane.interval) == 0).all()
    levels, plane = payload.quantize(np.full((2, 2), np.nan), "gray")
    assert (levels == 0).all() and plane.interval == (0.0, 0.0)


def reference_quantize(values, map_name, bits, quantiles=payload.DEFAULT_QUANTILES):
    """``quantize`` of one picture value by value, from the module docstring, in plain Python."""
    top = (1 << bits) - 1
    flat = [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]
    finite = [v for v in flat if math.isfinite(v)]
    if not finite:
        return [0] * len(flat), (0.0, 0.0), (0.0, 0.0)
    low, high = min(finite), max(finite)
    if map_name == "diverging":
        high = max(-low, high)
        low = -high
    ordered = sorted(finite)
    stats = tuple(ordered[math.floor(q * (len(ordered) - 1))] for q in quantiles)
    levels = [
        0 if not math.isfinite(v)
        else math.floor((v - low) / (high - low) * (top - 1) + 1.5) if high > low
        else 1 + (top - 1) // 2
        for v in flat
    ]
    return levels, (low, high), stats


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_batch_quantizes_each_picture_as_the_reference(bits, dtype):
    rng = np.random.default_rng(bits)
    values = rng.normal(size=(7, 9, 13)) * np.array([1e-6, 1.0, 1e4, 1.0, 1.0, 1.0, 1.0])[:, None, None]
    values[3] = 2.5  # constant
    values[4] = 0.0
    values[5, 0, :4] = [np.nan, np.inf, -np.inf, np.nan]  # some values not finite
    values[6] = np.nan  # none finite
    values = values.astype(dtype)
    maps = ["diverging", "gray", "opacity", "diverging", "diverging", "gray", "diverging"]
    levels, planes = payload.quantize_batch(values, maps, bits)
    assert levels.shape == values.shape and levels.dtype == (np.uint8 if bits == 8 else np.uint16)
    for picture, map_name, got, plane in zip(values, maps, levels, planes):
        expected, interval, stats = reference_quantize(picture, map_name, bits)
        assert got.ravel().tolist() == expected
        assert plane.interval == interval and plane.quantiles == stats
    encoded = payload.encode_batch(values, maps, bits, compress=False)
    for picture, map_name, plane in zip(values, maps, encoded):
        assert plane == payload.encode(picture, map_name, bits, compress=False)


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spoil", [False, True])
def test_groups_in_one_buffer_encode_each_picture_as_the_reference(bits, dtype, spoil):
    rng = np.random.default_rng(bits + 7)
    shapes = [(3, 30, 5), (1, 1, 1), (2, 12, 40), (4, 6, 7)]
    pictures = [rng.normal(size=shape) * scale for shape, scale in zip(shapes, [1e-5, 1.0, 3e3, 1.0])]
    pictures[2][1] = -0.75  # constant
    pictures[3][0] = 0.0
    pictures[3][2] = np.abs(pictures[3][2])
    if spoil:  # a value not finite sends every group the long way
        pictures[0][1, 2, 3] = np.nan
        pictures[3][3] = np.inf
    maps = ["diverging", "opacity", "diverging", "gray", "diverging", "diverging",
            "diverging", "opacity", "diverging", "gray"]
    flat = np.concatenate([p.astype(dtype).ravel() for p in pictures])
    got = payload.encode_groups(flat, shapes, maps, bits, compress=False)
    expected = []
    names = iter(maps)
    for group in pictures:
        for picture in group.astype(dtype):
            map_name = next(names)
            expected.append(payload.encode(picture, map_name, bits, compress=False))
            levels, interval, stats = reference_quantize(picture, map_name, bits)
            assert payload.Plane(b"", interval, stats) == dataclasses.replace(expected[-1], png=b"")
            assert png.decode(expected[-1].png).ravel().tolist() == levels
    assert got == expected
    with pytest.raises(ValueError):
        payload.encode_groups(flat[:-1], shapes, maps, bits)
    with pytest.raises(ValueError):
        payload.encode_groups(flat, shapes, maps[:-1], bits)


def test_quantiles_are_order_statistics():
    rng = np.random.default_rng(3)
    values = rng.normal(size=(37, 29))
    values[0, :5] = np.nan
    _, plane = payload.quantize(values, "diverging", quantiles=(0.01, 0.99))
    finite = np.sort(values[np.isfinite(values)])
    n = len(finite)
    assert plane.quantiles == (finite[math.floor(0.01 * (n - 1))], finite[math.floor(0.99 * (n - 1))])


def test_scales_fixed_and_per_frame():
    frames = [(-0.5, 0.2), (-0.1, 0.9), (-0.3, 0.4)]
    assert payload.fixed_scale("diverging", frames) == (-0.9, 0.9)
    assert payload.frame_scale("diverging", frames[0]) == (-0.5, 0.5)
    assert payload.fixed_scale("opacity", [(0.0, 0.3), (0.0, 0.7)]) == (0.0, 0.7)
    assert payload.fixed_scale("gray", frames) == (-0.5, 0.9)


# ----------------------------------------------------------------------------- layout and events


def small_layout(**changes):
    options = dict(
        picture="weights",
        layers=["conv", "fc"],
        shapes=[(4, 6), (2, 5)],
        tiles=[(2, 3), (2, 5)],
        cells=[4, 1],
        descriptions=["conv.weight (2, 2, 2, 3): 2×2 grid of 2×3 kernels", "fc.weight (2, 5): 2×5 matrix"],
    )
    options.update(changes)
    return payload.layout(**options)


def test_layout_round_trips_and_names_its_tag():
    content = small_layout(model="net")
    parsed = payload.parse_layout(dict(content, kind=payload.KIND, version=payload.VERSION))
    assert parsed.layers == ("conv", "fc") and parsed.planes == ("value",) and parsed.maps == ("diverging",)
    assert parsed.grid(0) == (2, 2) and parsed.drawn_shape(0) == (5, 7) and parsed.drawn_shape(1) == (2, 5)
    assert parsed.model == "net" and parsed.elements == 3
    name = payload.tag(content)
    assert name.startswith("layer_dynamics/pictures/weights/") and kind_of(name) is payload
    travel = small_layout(picture="travel")
    assert travel["planes"] == ["travel", "weight"] and travel["maps"] == ["opacity", "diverging"]


@pytest.mark.parametrize("changes, message", [
    ({"picture": "histograms"}, "picture must be one of"),
    ({"tiles": [(3, 3), (2, 5)]}, "does not divide"),
    ({"cells": [5, 1]}, "cells do not fit"),
    ({"shapes": [(4, 6)]}, "'shapes' must be 2"),
    ({"descriptions": ["x"]}, "'descriptions' has 1 entries"),
    ({"quantiles": (0.9, 0.1)}, "'quantiles'"),
])
def test_bad_layouts_are_refused_by_name(changes, message):
    with pytest.raises(ValueError, match=message):
        small_layout(**changes)


def test_parse_layout_names_what_is_wrong():
    content = dict(small_layout(), kind=payload.KIND, version=1)
    with pytest.raises(envelope.FormatError, match="'maps'"):
        payload.parse_layout(dict(content, maps=["gray", "gray"]))
    with pytest.raises(envelope.FormatError, match="'picture' is missing"):
        payload.parse_layout({k: v for k, v in content.items() if k != "picture"})


def encoded_pictures(rng):
    conv = rng.normal(size=(4, 6))
    fc = rng.normal(size=(2, 5))
    return (conv, fc), [[payload.encode(conv, "diverging")], [payload.encode(fc, "diverging")]]


def test_summary_decodes_back_to_the_same_pictures():
    rng = np.random.default_rng(0)
    content = small_layout()
    (conv, fc), pictures = encoded_pictures(rng)
    pictures[1] = None  # e.g. no gradient for that layer at this step
    proto = payload.summary(pictures, content)
    value = proto.value[0]
    assert value.metadata.data_class == summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    assert value.tensor.dtype == types_pb2.DT_STRING and tensors.shape_of(value.tensor) == (3,)
    parsed = payload.parse_layout(envelope.parse_content(value.metadata, payload.KIND, payload.VERSION))
    decoded = payload.decode(parsed, value)
    assert decoded[1] is None
    plane = decoded[0].planes[0]
    assert plane.interval == pictures[0][0].interval and plane.quantiles == pictures[0][0].quantiles
    np.testing.assert_allclose(plane.values(), conv, atol=np.abs(conv).max() / 254 + 1e-12)
    assert json.loads(value.tensor.string_val[0]) == {"facts": [[*plane.interval, *plane.quantiles], None]}
    no_metadata = payload.summary(pictures, content, with_metadata=False)
    assert not no_metadata.value[0].HasField("metadata")


def test_summary_refuses_pictures_that_do_not_fit():
    rng = np.random.default_rng(1)
    content = small_layout()
    _, pictures = encoded_pictures(rng)
    with pytest.raises(ValueError, match="2 layers"):
        payload.summary(pictures[:1], content)
    swapped = [pictures[1], pictures[0]]
    with pytest.raises(ValueError, match="layout says 4x6"):
        payload.summary(swapped, content)


def test_decode_names_what_is_wrong():
    rng = np.random.default_rng(2)
    content = small_layout()
    _, pictures = encoded_pictures(rng)
    value = payload.summary(pictures, content).value[0]
    parsed = payload.parse_layout(dict(content, kind=payload.KIND, version=1))
    short = summary_pb2.Summary.Value()
    short.CopyFrom(value)
    del short.tensor.string_val[-1]
    with pytest.raises(envelope.FormatError, match="elements"):
        payload.decode(parsed, short)
    floats = summary_pb2.Summary.Value(tensor=tensors.proto(np.zeros(3), types_pb2.DT_FLOAT))
    with pytest.raises(envelope.FormatError, match="string tensor"):
        payload.decode(parsed, floats)
    bad_facts = summary_pb2.Summary.Value()
    bad_facts.CopyFrom(value)
    bad_facts.tensor.string_val[0] = b'{"facts": [[1, 2, 3], null]}'
    with pytest.raises(envelope.FormatError, match="facts"):
        payload.decode(parsed, bad_facts)
    content = small_layout(shapes=[(4, 6), (2, 10)], tiles=[(2, 3), (2, 10)])
    other = payload.parse_layout(dict(content, kind=payload.KIND, version=1))
    with pytest.raises(envelope.FormatError, match="layout says 2x10"):
        payload.decode(other, value)


def test_rgb_lays_tiles_out_one_pixel_apart():
    content = small_layout(layers=["conv", "acts"], shapes=[(4, 6), (4, 6)], cells=[4, 3], tiles=[(2, 3), (2, 3)])
    parsed = payload.parse_layout(dict(content, kind=payload.KIND, version=1))
    values = np.arange(24, dtype=np.float64).reshape(4, 6) - 12.0
    out = payload.rgb(parsed, 0, [values], [(-12.0, 12.0)])
    assert out.shape == (5, 7, 3)
    background = np.array(colormaps.BACKGROUND_RGB)
    assert (out[2, :] == background).all() and (out[:, 3] == background).all()
    colours = colormaps.diverging(values, 12.0)
    for (row, column) in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        np.testing.assert_array_equal(
            out[row * 3:row * 3 + 2, column * 4:column * 4 + 3],
            colours[row * 2:row * 2 + 2, column * 3:column * 3 + 3],
        )
    # Three cells of four: the last one is background, not colour.
    partial = payload.rgb(parsed, 1, [values], [(-12.0, 12.0)])
    assert (partial[3:5, 4:7] == background).all()
    np.testing.assert_array_equal(partial[3:5, 0:3], colours[2:4, 0:3])


def test_travel_rgb_colours_the_weight_by_its_travel():
    content = small_layout(
        picture="travel", layers=["fc"], shapes=[(1, 3)], tiles=[(1, 3)], cells=[1], descriptions=["fc"]
    )
    parsed = payload.parse_layout(dict(content, kind=payload.KIND, version=1))
    weight = np.array([[-1.0, 0.5, 1.0]])
    travel = np.array([[0.0, 0.2, 0.4]])
    out = payload.rgb(parsed, 0, [travel, weight], [(0.0, 0.4), (-1.0, 1.0)])
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 2]) == hex_rgb("#276419")
    half = colormaps.over_white(colormaps.diverging(np.array([0.5]), 1.0), np.array([0.5]), 1.0)[0]
    assert tuple(out[0, 1]) == tuple(half)
