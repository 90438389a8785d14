"""The pictures payload: per-layer pictures of weights, gradients, updates, travel and activations.

Pictures store values, not colours: each is a grayscale PNG of quantized values plus the interval
those levels span, so that a reader or the tab can colour any frame with a scale fixed across
steps, or with the frame's own (``colormaps`` says how). Numpy, zlib and protobuf only.

Granularity
-----------
One value per picture kind and logging call, holding the picture of every layer at that step, under
``layer_dynamics/pictures/<kind>/<digest>``, where the digest names the layout
(``envelope.digest``): layers, picture sizes and tiling. One value is one frame of the filmstrip
(every layer side by side at one step), fetched alone. The tracker writes the values of one call's
kinds in one event (one record to checksum and append instead of one per kind); readers take a
tag's value from among its event's values, as they do for events of one value.

Layout (``plugin_data.content``)
--------------------------------
``picture``       the kind: ``"weights"``, ``"gradients"``, ``"updates"`` (the change since the
                  previous picture call), ``"travel"`` (``|w_t - w_0|``) or ``"activations"``
``layers``        layer names in depth order (module names for activations, in the order they ran)
``shapes``        per layer ``[height, width]`` of its stored picture, gaps left out
``tiles``         per layer ``[height, width]`` of one tile: the picture is a grid of
                  ``height / tile_h`` x ``width / tile_w`` tiles (kernels of a conv layer, channel
                  maps of activations); a matrix is a single tile
``cells``         per layer how many grid cells hold a tile, row by row (an activation grid may
                  end with empty cells)
``descriptions``  per layer what the picture shows and how it was reduced, such as
                  ``"fc1.weight (120, 400): 120×400 matrix, 4×4 blocks, max-|w| pooled to 30×100"``
``planes``        the planes of each picture: ``["value"]``, or ``["travel", "weight"]``
``maps``          per plane how it is drawn: ``"diverging"`` (PiYG, symmetric scale),
                  ``"gray"``, or ``"opacity"`` (travel as the opacity of the next plane's colour)
``quantiles``     ``[q_low, q_high]``, the quantiles of each frame's values that scales come from
``model``         the tracker's name when several models share a writer, else absent

Tensor
------
A rank-1 string tensor of ``1 + len(layers) * len(planes)`` elements, data class
``DATA_CLASS_BLOB_SEQUENCE``. That is TensorBoard's class for encoded binary data: both loaders
keep it as a sequence of blobs that they hand out one at a time by key (``read_blob``) rather than
sending every picture of every kept step in one tensor answer, and it has their smallest default
retention. Element 0 is UTF-8 JSON ``{"facts": [...]}`` with one entry per picture plane, layer by
layer and plane by plane: ``[low, high, q_low, q_high]``, or ``null`` where the layer has no
picture at this step (e.g. no gradient). Element ``1 + layer * len(planes) + plane`` is that
plane's PNG (``png``: grayscale, 8 or 16 bits), empty where its fact is ``null``.

Levels (``quantize``): with ``top = 2**bits - 1``, level 0 marks a value that is not finite (NaN,
+-Inf) or an empty cell, and levels ``1 .. top`` map ``[low, high]`` linearly:
``v = low + (level - 1) / (top - 1) * (high - low)``. Diverging planes quantize over the
symmetric interval ``[-m, m]``, ``m = max |v|``, so that zero is a level exactly (the middle one);
other planes over ``[min v, max v]``. ``q_low`` and ``q_high`` are order statistics of the
finite values as logged: the ``floor(q * (n - 1))``-th smallest of the ``n`` values.

Scales (``frame_scale``, ``fixed_scale``): a diverging plane is drawn over ``[-s, s]`` with
``s = max(|q_low|, |q_high|)`` (the symmetric high quantile the videos of Doran's "Inside Neural
Network Training" used); an opacity plane is opaque from ``q_high`` on; a gray plane spans
``[q_low, q_high]``. The fixed scale of a layer and kind is the widest of its frames' (the largest
``s``, the largest ``q_high``, the lowest ``q_low``): it stays fixed across the steps logged so far.

Reading
-------
A reader keeps each tag's ``Layout`` (``parse_layout`` of the first event's content) and, per
event, where its record is; ``decode`` turns a record's value into each layer's ``Picture`` (PNG
headers checked, pixels decoded only on demand). One layer's series of one kind is then: the steps
whose picture is not ``None``; ``picture.planes[0].values()`` as logged (for travel, plane 0 is
the travel and plane 1 the weight it colours); per plane ``fixed_scale(map, quantiles of every
frame)``, or ``frame_scale`` for the per-frame toggle; and ``rgb(layout, index, values, scales)``
for the picture as drawn (``picture_rgb`` with the frame's own scales by default). The tab gets the
same from a route: the PNGs, the facts and the layout, and colours them with ``colormap.js``.
"""

import dataclasses
import json
import math
from typing import Optional, Sequence, Tuple

import numpy as np
from tensorboard.compat.proto import summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

from tb_layerdyn.format import checks, colormaps, envelope, png, tensors

KIND = "pictures"
VERSION = 1
TAG_PREFIX = envelope.TAG_PREFIX + "pictures/"
# Readers keep where these records lie and decode them when asked (``check`` when reading them).
STORAGE = "records"

# Each picture kind and its planes: (name, map).
PLANES = {
    "weights": (("value", "diverging"),),
    "gradients": (("value", "diverging"),),
    "updates": (("value", "diverging"),),
    "travel": (("travel", "opacity"), ("weight", "diverging")),
    "activations": (("value", "gray"),),
}
PICTURES = tuple(PLANES)
# The plane combinations ``rgb`` draws.
MAP_SETS = (("diverging",), ("gray",), ("opacity", "diverging"))
DEFAULT_QUANTILES = (0.01, 0.99)
BIT_DEPTHS = png.BIT_DEPTHS


@dataclasses.dataclass(frozen=True)
class Layout:
    """A checked layout, as readers use it (see the module docstring for each field)."""

    picture: str
    layers: Tuple[str, ...]
    shapes: Tuple[Tuple[int, int], ...]
    tiles: Tuple[Tuple[int, int], ...]
    cells: Tuple[int, ...]
    descriptions: Tuple[str, ...]
    planes: Tuple[str, ...]
    maps: Tuple[str, ...]
    quantiles: Tuple[float, float]
    model: Optional[str]
    version: int

    @property
    def elements(self) -> int:
        """The tensor's length: the facts, then one PNG per layer and plane."""
        return 1 + len(self.layers) * len(self.planes)

    def grid(self, index) -> Tuple[int, int]:
        """``(rows, columns)`` of tiles of layer ``index``'s picture."""
        (height, width), (tile_h, tile_w) = self.shapes[index], self.tiles[index]
        return height // tile_h, width // tile_w

    def drawn_shape(self, index) -> Tuple[int, int]:
        """``(height, width)`` of layer ``index``'s picture as drawn: tiles apart by one pixel."""
        (height, width), (rows, columns) = self.shapes[index], self.grid(index)
        return height + rows - 1, width + columns - 1


@dataclasses.dataclass(frozen=True)
class Plane:
    """One plane of one layer's picture at one step.

    Attributes:
        png: the PNG's bytes (decoded on demand by ``levels`` and ``values``).
        interval: ``(low, high)`` that the levels span.
        quantiles: ``(q_low, q_high)`` of the values (the layout's ``quantiles``).
    """

    png: bytes
    interval: Tuple[float, float]
    quantiles: Tuple[float, float]

    def levels(self) -> np.ndarray:
        """The gray levels, ``uint8`` or ``uint16`` ``(height, width)``."""
        return png.decode(self.png)

    def values(self) -> np.ndarray:
        """The values as logged, float64 ``(height, width)``; NaN where level 0."""
        return dequantize(self.levels(), self.interval, png.size(self.png)[2])


@dataclasses.dataclass(frozen=True)
class Picture:
    """One layer's picture at one step: its planes, in the layout's order."""

    layer: str
    planes: Tuple[Plane, ...]


def layout(*, picture, layers, shapes, tiles, cells, descriptions, quantiles=DEFAULT_QUANTILES, model=None):
    """The content dict of a pictures tag, for the writer.

    Args:
        picture: the kind, one of ``PICTURES``.
        layers: layer (or module) names in depth order.
        shapes: per layer ``(height, width)`` of the stored picture.
        tiles: per layer ``(height, width)`` of a tile; each divides the shape.
        cells: per layer the tiles that are filled, at most the grid's.
        descriptions: per layer what the picture shows and how it was reduced.
        quantiles: ``(q_low, q_high)`` of the frames' values that scales come from.
        model: the tracker's name, when several models share one writer.

    Returns:
        The dict (without ``kind`` and ``version``, which ``summary`` adds).

    Raises:
        ValueError: an argument breaks the layout's rules; the message names it.
    """
    if picture not in PLANES:
        raise ValueError(f"picture must be one of {list(PICTURES)}, got {picture!r}")
    content = {
        "picture": picture,
        "layers": [str(n) for n in layers],
        "shapes": [[int(h), int(w)] for h, w in shapes],
        "tiles": [[int(h), int(w)] for h, w in tiles],
        "cells": [int(n) for n in cells],
        "descriptions": [str(d) for d in descriptions],
        "planes": [name for name, _ in PLANES[picture]],
        "maps": [kind for _, kind in PLANES[picture]],
        "quantiles": [float(q) for q in quantiles],
    }
    if model is not None:
        content["model"] = str(model)
    return checks.built(content, parse_layout, KIND, VERSION)


def parse_layout(content) -> Layout:
    """The ``Layout`` of a content dict (``envelope.parse_content``'s), checked.

    Raises:
        envelope.FormatError: a key is missing or breaks the layout's rules.
    """
    picture = checks.optional_string(content, "picture")
    if picture is None:
        raise envelope.FormatError("content key 'picture' is missing")
    layers = checks.names(content, "layers")
    shapes = _pairs(content, "shapes", len(layers))
    tiles = _pairs(content, "tiles", len(layers))
    for name, (height, width), (tile_h, tile_w) in zip(layers, shapes, tiles):
        if height % tile_h or width % tile_w:
            raise envelope.FormatError(
                f"layer {name!r}: tile {tile_h}x{tile_w} does not divide its {height}x{width} picture"
            )
    cells = checks.counts(content, "cells", len(layers))
    for name, count, (height, width), (tile_h, tile_w) in zip(layers, cells, shapes, tiles):
        if not 1 <= count <= (height // tile_h) * (width // tile_w):
            raise envelope.FormatError(f"layer {name!r}: {count} cells do not fit its grid of tiles")
    descriptions = checks.names(content, "descriptions", unique=False)
    if len(descriptions) != len(layers):
        raise envelope.FormatError(
            f"content key 'descriptions' has {len(descriptions)} entries for {len(layers)} layers"
        )
    planes = checks.names(content, "planes")
    maps = tuple(checks.names(content, "maps", unique=False))
    if maps not in MAP_SETS or len(maps) != len(planes):
        raise envelope.FormatError(
            f"content keys 'planes' {planes} and 'maps' {list(maps)} are not one of the drawable "
            f"sets {[list(m) for m in MAP_SETS]}"
        )
    quantiles = checks.numbers(content, "quantiles")
    if len(quantiles) != 2 or not 0.0 <= quantiles[0] < quantiles[1] <= 1.0:
        raise envelope.FormatError(f"content key 'quantiles' must be [low, high] in [0, 1], got {quantiles}")
    return Layout(
        picture=picture,
        layers=tuple(layers),
        shapes=shapes,
        tiles=tiles,
        cells=tuple(cells),
        descriptions=tuple(descriptions),
        planes=tuple(planes),
        maps=maps,
        quantiles=(quantiles[0], quantiles[1]),
        model=checks.optional_string(content, "model"),
        version=int(content["version"]),
    )


def _pairs(content, key, length):
    value = content.get(key)
    if (
        not isinstance(value, list)
        or len(value) != length
        or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in pair)
            for pair in value
        )
    ):
        raise envelope.FormatError(
            f"content key {key!r} must be {length} [height, width] pairs of positive integers"
        )
    return tuple((pair[0], pair[1]) for pair in value)


def tag(content) -> str:
    """The tag of a layout's events: ``layer_dynamics/pictures/<kind>/<digest>``."""
    return f"{TAG_PREFIX}{content['picture']}/{envelope.digest(content)}"


def metadata(content):
    """The ``SummaryMetadata`` of a layout's tag."""
    return envelope.summary_metadata(
        KIND, VERSION, content, data_class=summary_pb2.DATA_CLASS_BLOB_SEQUENCE
    )


# ----------------------------------------------------------------------------- levels


def _order_statistics(values, ranks) -> Tuple[np.ndarray, ...]:
    """The values of ascending ``ranks`` in each row of ``values`` (``(rows, n)``) sorted,
    exactly. One selection per rank, each in the part left below the previous one: numpy's
    partition with several ranks at once took 5 to 10 times as long (150 µs against 26 µs on a
    96x100 picture)."""
    found = {}
    part = values
    for rank in sorted(set(ranks), reverse=True):
        part = np.partition(part, rank, axis=-1)
        found[rank] = part[:, rank]
        part = part[:, : rank + 1]
    return tuple(found[rank] for rank in ranks)


def _levels(rows, low, high, top, dtype):
    """Levels of ``(rows, n)`` finite values over per-row intervals ``[low, high]``."""
    levels = np.full(rows.shape, 1 + (top - 1) // 2, dtype=dtype)  # a constant row: the middle
    varying = high > low
    if varying.all():
        picked, low, high = rows, low, high
    else:
        picked, low, high = rows[varying], low[varying], high[varying]
    if not picked.size:
        return levels
    shifted = np.subtract(picked, low[:, None], dtype=np.float64)
    shifted /= (high - low)[:, None]
    shifted *= top - 1
    shifted += 1.5  # level 1 is low; + 0.5 rounds to the nearest level
    found = shifted.astype(dtype)  # truncation is the floor: every value here is at least 1.5
    if picked is rows:
        return found
    levels[varying] = found
    return levels


def _intervals(low, high, diverging):
    """Per row ``(low, high)``, made symmetric ``[-m, m]`` where ``diverging``."""
    # max(-low, high) as Python's max picks it, so that a plane of zeros keeps its signs.
    spread = np.where(high > -low, high, -low)
    return np.where(diverging, -spread, low), np.where(diverging, spread, high)


def quantize(values, map_name, bits=8, quantiles=DEFAULT_QUANTILES) -> Tuple[np.ndarray, Plane]:
    """Gray levels of a picture's values, and the facts that come with them.

    Args:
        values: a 2-D float array as logged; NaN marks an empty cell as well as a NaN value.
        map_name: ``"diverging"`` (levels over ``[-max|v|, max|v|]``), ``"gray"`` or
            ``"opacity"`` (levels over ``[min v, max v]``).
        bits: 8 or 16.
        quantiles: ``(q_low, q_high)`` to report.

    Returns:
        ``(levels, plane)``: ``uint8`` or ``uint16`` levels, and a ``Plane`` with the interval and
        quantiles (its ``png`` still empty: ``encode`` fills it).

    Raises:
        ValueError: ``bits`` or ``map_name`` is not one of the allowed values.
    """
    values = np.asarray(values, dtype=np.float64)
    levels, planes = quantize_batch(values[None], [map_name], bits, quantiles)
    return levels[0], planes[0]


def _checked_maps(bits, map_names) -> list:
    """``map_names`` as a list, once ``bits`` and every name are ones the format allows."""
    if bits not in BIT_DEPTHS:
        raise ValueError(f"bits must be one of {BIT_DEPTHS}, got {bits!r}")
    map_names = list(map_names)
    for map_name in map_names:
        if map_name not in ("diverging", "gray", "opacity"):
            raise ValueError(f"map_name must be 'diverging', 'gray' or 'opacity', got {map_name!r}")
    return map_names


def quantize_batch(values, map_names, bits=8, quantiles=DEFAULT_QUANTILES) -> Tuple[np.ndarray, list]:
    """``quantize`` of several pictures of one shape at once, each over its own interval.

    Args:
        values: a ``(pictures, height, width)`` float array.
        map_names: one map per picture.
        bits: 8 or 16.
        quantiles: ``(q_low, q_high)`` to report.

    Returns:
        ``(levels, planes)``: the levels of every picture, ``(pictures, height, width)``, and one
        ``Plane`` per picture (``png`` still empty), equal to ``quantize``'s of each alone.

    Raises:
        ValueError: ``bits`` or a map name is not one of the allowed values, or there is not one
            map per picture.
    """
    map_names = _checked_maps(bits, map_names)
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float64)
    count = values.shape[0]
    if len(map_names) != count:
        raise ValueError(f"map_names has {len(map_names)} entries for {count} pictures")
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    flat = values.reshape(count, -1)
    diverging = np.array([m == "diverging" for m in map_names], dtype=bool)
    # Extremes and order statistics are exact in the values' own type (float32 from the tracker,
    # half the bytes to go through); levels are computed in float64.
    if flat.shape[1]:
        smallest, largest = flat.min(axis=1), flat.max(axis=1)  # NaN where a row holds one
        finite_rows = np.isfinite(smallest) & np.isfinite(largest)
    else:
        smallest = largest = np.zeros(count, dtype=flat.dtype)
        finite_rows = np.zeros(count, dtype=bool)
    if finite_rows.all():  # the usual case: one set of array operations for every picture
        levels, facts = _quantize_rows(flat, smallest, largest, diverging, top, dtype, quantiles)
        return levels.reshape(values.shape), [Plane(b"", (a, b), (c, d)) for a, b, c, d in facts.T.tolist()]
    levels = np.zeros(flat.shape, dtype=dtype)
    facts = np.zeros((4, count))
    whole = np.flatnonzero(finite_rows)
    if whole.size:
        levels[whole], facts[:, whole] = _quantize_rows(
            flat[whole], smallest[whole], largest[whole], diverging[whole], top, dtype, quantiles
        )
    # The others one at a time: their finite values differ in number.
    empty = np.zeros(count, dtype=bool)
    for i in np.flatnonzero(~finite_rows):
        mask = np.isfinite(flat[i])
        finite = flat[i][mask][None]
        if not finite.size:
            empty[i] = True
            continue
        _, facts[:, i:i + 1] = _quantize_rows(
            finite, finite.min(axis=1), finite.max(axis=1), diverging[i:i + 1], top, dtype, quantiles
        )
        low, high = facts[:2, i:i + 1]
        row = _levels(np.where(mask, flat[i], low[0])[None], low, high, top, dtype)[0]
        row[~mask] = 0
        levels[i] = row
    planes = [
        Plane(b"", (0.0, 0.0), (0.0, 0.0)) if gone else Plane(b"", (low, high), (q_low, q_high))
        for gone, (low, high, q_low, q_high) in zip(empty.tolist(), facts.T.tolist())
    ]
    return levels.reshape(values.shape), planes


def _quantize_rows(rows, smallest, largest, diverging, top, dtype, quantiles):
    """Levels of ``(rows, n)`` finite values with their extremes, and ``(4, rows)`` facts: low,
    high, q_low, q_high."""
    low, high = _intervals(smallest.astype(np.float64), largest.astype(np.float64), diverging)
    n = rows.shape[1]
    q_low, q_high = _order_statistics(rows, [int(math.floor(q * (n - 1))) for q in quantiles])
    return _levels(rows, low, high, top, dtype), np.stack([low, high, q_low, q_high])


def dequantize(levels, interval, bits=8) -> np.ndarray:
    """The values of gray levels over ``interval`` (float64; NaN at level 0)."""
    top = (1 << bits) - 1
    low, high = interval
    levels = np.asarray(levels)
    values = low + (levels.astype(np.float64) - 1.0) / (top - 1) * (high - low)
    values[levels == 0] = np.nan
    return values


def encode(values, map_name, bits=8, quantiles=DEFAULT_QUANTILES, compress=True) -> Plane:
    """A ``Plane`` of a 2-D array of values: its PNG, interval and quantiles (see ``quantize``);
    ``compress`` as ``png.encode``'s."""
    return encode_batch(np.asarray(values)[None], [map_name], bits, quantiles, compress)[0]


def encode_batch(values, map_names, bits=8, quantiles=DEFAULT_QUANTILES, compress=True) -> list:
    """``encode`` of several pictures of one shape, ``(pictures, height, width)``, one map each:
    quantized and PNG-encoded together (``quantize_batch``, ``png.encode_batch``)."""
    levels, planes = quantize_batch(values, map_names, bits, quantiles)
    return [
        dataclasses.replace(plane, png=data)
        for plane, data in zip(planes, png.encode_batch(levels, compress))
    ]


def encode_groups(flat, groups, map_names, bits=8, quantiles=DEFAULT_QUANTILES, compress=True) -> list:
    """``encode_batch`` of several groups of pictures laid end to end in one flat buffer: the
    pictures of one call, every layer's, quantized in one set of array operations.

    Args:
        flat: a 1-D float array, the groups' pictures one after another, each row-major.
        groups: per group ``(pictures, height, width)``; a group's pictures share a shape.
        map_names: one map per picture, group after group.
        bits, quantiles, compress: as ``encode_batch``'s.

    Returns:
        One ``Plane`` per picture, group after group, equal to ``encode_batch``'s of each group
        (and so to ``encode``'s of each picture alone).

    Raises:
        ValueError: as ``encode_batch``'s, or ``flat`` is not the groups' size.
    """
    map_names = _checked_maps(bits, map_names)
    flat = np.asarray(flat)
    if flat.dtype not in (np.float32, np.float64):
        flat = flat.astype(np.float64)
    groups = [(int(c), int(h), int(w)) for c, h, w in groups]
    sizes = [c * h * w for c, h, w in groups]
    if flat.ndim != 1 or flat.size != sum(sizes):
        raise ValueError(f"flat holds {flat.size} values; the groups need {sum(sizes)}")
    if len(map_names) != sum(c for c, _, _ in groups):
        raise ValueError(f"map_names has {len(map_names)} entries for {sum(c for c, _, _ in groups)} pictures")
    if not groups:
        return []
    lengths = np.repeat([h * w for _, h, w in groups], [c for c, _, _ in groups])
    if lengths.min() == 0:
        return _encode_groups_apart(flat, groups, map_names, bits, quantiles, compress)
    starts = np.zeros(lengths.size, dtype=np.intp)
    np.cumsum(lengths[:-1], out=starts[1:])
    smallest, largest = np.minimum.reduceat(flat, starts), np.maximum.reduceat(flat, starts)
    if not (np.isfinite(smallest).all() and np.isfinite(largest).all()):
        # A NaN or an infinity: each group the long way, as encode_batch does it.
        return _encode_groups_apart(flat, groups, map_names, bits, quantiles, compress)
    top = (1 << bits) - 1
    dtype = np.uint8 if bits == 8 else np.uint16
    diverging = np.array([m == "diverging" for m in map_names], dtype=bool)
    low, high = _intervals(smallest.astype(np.float64), largest.astype(np.float64), diverging)
    # The levels of every picture at once: the same operations, value by value, as _levels'.
    span = high - low
    varying = span > 0
    shifted = np.subtract(flat, np.repeat(low, lengths), dtype=np.float64)
    shifted /= np.repeat(np.where(varying, span, 1.0), lengths)
    shifted *= top - 1
    shifted += 1.5
    levels = shifted.astype(dtype)
    if not varying.all():
        levels[np.repeat(~varying, lengths)] = 1 + (top - 1) // 2
    q_low = np.empty(lengths.size)
    q_high = np.empty(lengths.size)
    planes, offset, first = [], 0, 0
    for (count, height, width), size in zip(groups, sizes):
        n = height * width
        rows = flat[offset:offset + size].reshape(count, n)
        q_low[first:first + count], q_high[first:first + count] = _order_statistics(
            rows, [int(math.floor(q * (n - 1))) for q in quantiles]
        )
        blobs = png.encode_batch(levels[offset:offset + size].reshape(count, height, width), compress)
        planes.extend(zip(blobs, range(first, first + count)))
        offset += size
        first += count
    facts = np.stack([low, high, q_low, q_high]).T.tolist()
    return [Plane(blob, (facts[i][0], facts[i][1]), (facts[i][2], facts[i][3])) for blob, i in planes]


def _encode_groups_apart(flat, groups, map_names, bits, quantiles, compress):
    found, offset, first = [], 0, 0
    for count, height, width in groups:
        size = count * height * width
        found.extend(encode_batch(
            flat[offset:offset + size].reshape(count, height, width), map_names[first:first + count],
            bits, quantiles, compress,
        ))
        offset += size
        first += count
    return found


# ----------------------------------------------------------------------------- events


def summary(pictures: Sequence[Optional[Sequence[Plane]]], content, *, with_metadata=True, tag_name=None):
    """The ``Summary`` of one picture kind at one logging call.

    Args:
        pictures: per layer of the layout, its planes (``encode``'s, in the layout's plane order),
            or ``None`` where the layer has no picture at this step.
        content: a dict from ``layout``.
        with_metadata: attach the layout (needed on the first event of a tag in each event file).
        tag_name: ``tag(content)`` when the caller has it already.

    Returns:
        A ``summary_pb2.Summary`` with one value.

    Raises:
        ValueError: ``pictures`` do not fit the layout (count, planes, or PNG sizes).
    """
    layers, shapes, num_planes = content["layers"], content["shapes"], len(content["planes"])
    if len(pictures) != len(layers):
        raise ValueError(f"pictures has {len(pictures)} entries for {len(layers)} layers")
    facts, blobs = [], []
    for name, shape, planes in zip(layers, shapes, pictures):
        if planes is None:
            facts.extend([None] * num_planes)
            blobs.extend([b""] * num_planes)
            continue
        if len(planes) != num_planes:
            raise ValueError(f"pictures[{name!r}] has {len(planes)} planes; the layout needs {num_planes}")
        for plane in planes:
            height, width, _ = png.size(plane.png)
            if [height, width] != shape:
                raise ValueError(f"pictures[{name!r}] is {height}x{width}; the layout says {shape[0]}x{shape[1]}")
            facts.append([*map(float, plane.interval), *map(float, plane.quantiles)])
            blobs.append(plane.png)
    head = json.dumps({"facts": facts}, separators=(",", ":"), allow_nan=False).encode("utf-8")
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[head] + blobs)
    tensor.tensor_shape.dim.append(tensor_shape_pb2.TensorShapeProto.Dim(size=1 + len(blobs)))
    value = summary_pb2.Summary.Value(tag=tag(content) if tag_name is None else tag_name, tensor=tensor)
    if with_metadata:
        value.metadata.CopyFrom(metadata(content))
    return summary_pb2.Summary(value=[value])


def check(parsed: Layout, value):
    """Raises ``envelope.FormatError`` when a value does not fit its layout (``decode``: the
    facts and the PNG headers, not the pixels)."""
    decode(parsed, value)


def decode(parsed: Layout, value):
    """The pictures one event holds for a tag.

    Args:
        parsed: the tag's ``Layout``.
        value: the ``Summary.Value`` under the tag (or its ``TensorProto``).

    Returns:
        Per layer of the layout, a ``Picture`` or ``None`` where it has none at this step. PNG
        headers are checked against the layout; pixels are decoded only when asked for.

    Raises:
        envelope.FormatError: not a string tensor of the layout's length, facts that are not
            JSON of the layout's shape, or a PNG of another size than the layout says.
    """
    tensor = value.tensor if hasattr(value, "tensor") else value
    if tensor.dtype != types_pb2.DT_STRING:
        raise envelope.FormatError(f"tensor is dtype {tensor.dtype}, expected a string tensor")
    shape = tensors.shape_of(tensor)
    if shape != (parsed.elements,) or len(tensor.string_val) != parsed.elements:
        raise envelope.FormatError(
            f"tensor has shape {shape} and {len(tensor.string_val)} elements; the layout needs "
            f"({parsed.elements},)"
        )
    facts = _facts(tensor.string_val[0], parsed.elements - 1)
    num_planes = len(parsed.planes)
    result = []
    for index, name in enumerate(parsed.layers):
        entries = facts[index * num_planes:(index + 1) * num_planes]
        blobs = tensor.string_val[1 + index * num_planes:1 + (index + 1) * num_planes]
        if all(entry is None for entry in entries):
            result.append(None)
            continue
        if any(entry is None for entry in entries):
            raise envelope.FormatError(f"layer {name!r} has facts for some of its planes only")
        planes = []
        for entry, blob in zip(entries, blobs):
            height, width, _ = png.size(blob)
            if (height, width) != parsed.shapes[index]:
                raise envelope.FormatError(
                    f"layer {name!r}: picture is {height}x{width}, the layout says "
                    f"{parsed.shapes[index][0]}x{parsed.shapes[index][1]}"
                )
            planes.append(Plane(bytes(blob), (entry[0], entry[1]), (entry[2], entry[3])))
        result.append(Picture(name, tuple(planes)))
    return result


def _facts(head, count):
    try:
        body = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise envelope.FormatError("the pictures' facts are not JSON") from None
    facts = body.get("facts") if isinstance(body, dict) else None
    if not isinstance(facts, list) or len(facts) != count:
        raise envelope.FormatError(f"the pictures' facts must be a list of {count} entries")
    for entry in facts:
        if entry is None:
            continue
        if (
            not isinstance(entry, list)
            or len(entry) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in entry)
        ):
            raise envelope.FormatError("a picture's facts must be [low, high, q_low, q_high] of finite numbers")
    return facts


# ----------------------------------------------------------------------------- scales and colours


def frame_scale(map_name, quantiles) -> Tuple[float, float]:
    """The ``(low, high)`` scale of one frame's plane, from its ``(q_low, q_high)``."""
    return fixed_scale(map_name, [quantiles])


def fixed_scale(map_name, quantiles) -> Tuple[float, float]:
    """The ``(low, high)`` scale shared by frames of one plane, from each frame's quantiles.

    Args:
        map_name: the plane's map (``"diverging"``, ``"gray"`` or ``"opacity"``).
        quantiles: ``(q_low, q_high)`` of every frame (at least one).

    Returns:
        ``(-s, s)`` for diverging planes, ``(0, t)`` for opacity, ``(low, high)`` for gray (see
        the module docstring).
    """
    pairs = np.asarray(list(quantiles), dtype=np.float64).reshape(-1, 2)
    if pairs.size == 0:
        raise ValueError("fixed_scale needs the quantiles of at least one frame")
    if map_name == "diverging":
        spread = float(np.abs(pairs).max())
        return (-spread, spread)
    if map_name == "opacity":
        return (0.0, float(max(pairs[:, 1].max(), 0.0)))
    return (float(pairs[:, 0].min()), float(pairs[:, 1].max()))


def rgb(parsed: Layout, index: int, values: Sequence[np.ndarray], scales: Sequence[Tuple[float, float]]) -> np.ndarray:
    """The picture of layer ``index`` as drawn: coloured, tiles one ``BACKGROUND_RGB`` pixel apart.

    Args:
        parsed: the tag's ``Layout``.
        index: the layer's position in it.
        values: one 2-D array per plane (``Plane.values()``), the layout's stored shape.
        scales: one ``(low, high)`` per plane (``fixed_scale`` or ``frame_scale``).

    Returns:
        ``uint8`` array ``parsed.drawn_shape(index) + (3,)``.
    """
    if parsed.maps == ("diverging",):
        colours = colormaps.diverging(values[0], scales[0][1])
    elif parsed.maps == ("gray",):
        colours = colormaps.gray(values[0], *scales[0])
    else:
        colours = colormaps.over_white(colormaps.diverging(values[1], scales[1][1]), values[0], scales[0][1])
    rows, columns = parsed.grid(index)
    tile_h, tile_w = parsed.tiles[index]
    out = np.empty(parsed.drawn_shape(index) + (3,), dtype=np.uint8)
    out[...] = colormaps.BACKGROUND_RGB
    for cell in range(parsed.cells[index]):
        row, column = divmod(cell, columns)
        top, left = row * (tile_h + 1), column * (tile_w + 1)
        out[top:top + tile_h, left:left + tile_w] = colours[
            row * tile_h:(row + 1) * tile_h, column * tile_w:(column + 1) * tile_w
        ]
    return out


def picture_rgb(parsed: Layout, index: int, picture: Picture, scales=None) -> np.ndarray:
    """``rgb`` of a decoded ``Picture``, with the given per-plane scales or, by default, its own."""
    if scales is None:
        scales = [frame_scale(m, plane.quantiles) for m, plane in zip(parsed.maps, picture.planes)]
    return rgb(parsed, index, [plane.values() for plane in picture.planes], scales)
