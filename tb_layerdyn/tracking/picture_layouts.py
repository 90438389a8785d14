"""How a tensor becomes a picture a person can read, and how large tensors are reduced to fit.

Pure shape arithmetic (no torch): each rule below yields a ``Plan`` that ``tracking.pictures``
applies to the tensor on every picture call and that the payload's layout records.

Layouts
-------
- **Conv weights** ``(out, in, kh, kw)``: a grid of ``out`` rows by ``in`` columns of ``kh x kw``
  kernel tiles, drawn one pixel apart. Any weight of three or more dimensions is laid out the
  same way, rows and columns by its first two dimensions, the tile the rest (``(out, in, k)`` of a
  1-d conv gives ``1 x k`` tiles; ``(out, in, d, h, w)`` gives ``d*h x w`` tiles).
- **Matrices** (linear weights, embeddings): the matrix itself, ``out`` rows by ``in`` columns.
- **Activations** of one probe element: one map per channel, ``(C, H, W)`` as ``C`` maps of
  ``H x W`` in a near-square grid (``ceil(sqrt(C))`` columns), filled row by row; ``(C, D, H, W)``
  as maps of ``D*H x W``. A 2-D activation ``(T, D)`` (tokens by features) is a matrix.
- **Fallback**: a 1-D tensor (a bias, a norm's scale, a linear layer's activation) is a row; a
  0-D one a single pixel.

Pixel cap
---------
A picture holds at most ``PIXEL_CAP`` values (gaps not counted). A larger tensor is reduced by
pooling blocks, each keeping its element of largest magnitude with its sign (max-|w| pooling, so
that a block's strongest weight, and any NaN, stays visible), in this order:

- weight grids: whole kernels, pooled across ``k x k`` blocks of (out, in) channel pairs with the
  smallest ``k`` that fits; only when a single kernel alone exceeds the cap are the kernels
  themselves pooled, in the smallest ``s x s`` blocks that leave every (out, in) pair a tile of
  its own (or one pixel, when there are more pairs than the cap);
- activation grids: each channel map pooled in ``s x s`` blocks, the smallest ``s`` that fits;
  when even one pixel per channel is too many, consecutive channels are pooled in groups;
- matrices and rows: ``s x s`` blocks (``1 x s`` for a row).

Each description states what was drawn and any reduction, e.g.
``"fc1.weight (120, 400): 120×400 matrix, 4×4 blocks, max-|w| pooled to 30×100"``.
"""

import dataclasses
import math
from typing import Tuple

# Values per picture, gaps not counted: a 64 x 64 picture's worth. Pictures of every layer are
# written at every picture call and each byte costs again in TensorBoard's writer, which checksums
# records in pure Python; at this cap LeNet-5's largest layer, fc1, is drawn in 4 x 4 blocks.
PIXEL_CAP = 4096


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one tensor is drawn.

    Attributes:
        shape: the tensor's shape (for activations, of one probe element).
        grid: ``(rows, columns)`` of tiles before pooling (``(1, 1)`` for a matrix or a row).
        tile: ``(height, width)`` of a tile before pooling.
        grid_block: tiles pooled together per side (weights: channel blocks).
        tile_block: ``(height, width)`` of the blocks pooled inside a tile.
        channel_group: consecutive channels pooled together (activations with too many).
        cells: tiles that hold data after pooling; the rest of the grid is empty.
        pooled_grid: ``(rows, columns)`` of tiles after pooling.
        description: what the picture shows and how it was reduced.
        channels: the grid holds channel maps (``(C, ...)`` activations) filled row by row, not
            the (out, in) pairs of a weight.
    """

    shape: Tuple[int, ...]
    grid: Tuple[int, int]
    tile: Tuple[int, int]
    grid_block: int
    tile_block: Tuple[int, int]
    channel_group: int
    cells: int
    pooled_grid: Tuple[int, int]
    description: str
    channels: bool = False

    @property
    def pooled_tile(self) -> Tuple[int, int]:
        """``(height, width)`` of a tile after pooling."""
        return (_ceil(self.tile[0], self.tile_block[0]), _ceil(self.tile[1], self.tile_block[1]))

    @property
    def picture_shape(self) -> Tuple[int, int]:
        """``(height, width)`` of the stored picture (gaps not counted)."""
        (rows, columns), (height, width) = self.pooled_grid, self.pooled_tile
        return rows * height, columns * width

    @property
    def reduced(self) -> bool:
        return self.grid_block > 1 or self.tile_block != (1, 1) or self.channel_group > 1


def _ceil(a, b):
    return -(-a // b)


def _times(pair):
    return f"{pair[0]}×{pair[1]}"


def _block_for(height, width, budget):
    """The smallest ``s`` with ``ceil(height/s) * ceil(width/s) <= budget`` (``budget >= 1``)."""
    s = 1
    while _ceil(height, s) * _ceil(width, s) > budget:
        s += 1
    return s


def _tile_block(height, width, s):
    """The pooling block of side ``s`` inside a ``height x width`` tile: ``1 x s`` for a row."""
    return (min(s, height), min(s, width))


def weight_plan(name, shape, cap=PIXEL_CAP, symbol="|w|") -> Plan:
    """How to draw a parameter (or its gradient, update or travel) of ``shape``.

    Args:
        name: the tensor's name, for the description (e.g. ``"fc1.weight"``).
        shape: its shape.
        cap: the most values a picture holds.
        symbol: what blocks are pooled by, for the description (``"|w|"``, ``"|g|"`` ...).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) >= 3:
        grid = (shape[0], shape[1])
        tile = (math.prod(shape[2:-1]), shape[-1])
        what = f"{_times(grid)} grid of {_times(tile)} kernels"
    elif len(shape) == 2:
        grid, tile = (1, 1), shape
        what = f"{_times(tile)} matrix"
    else:
        grid, tile = (1, 1), (1, shape[0] if shape else 1)
        what = f"row of {tile[1]}" if shape else "one value"
    # Kernels are pooled only when one alone exceeds the cap, and then only as much as lets every
    # (out, in) pair keep a tile of its own, where the cap allows that many.
    s = 1 if tile[0] * tile[1] <= cap else _block_for(tile[0], tile[1], max(cap // (grid[0] * grid[1]), 1))
    tile_block = _tile_block(tile[0], tile[1], s)
    pooled_tile = (_ceil(tile[0], tile_block[0]), _ceil(tile[1], tile_block[1]))
    k = 1
    per_tile = pooled_tile[0] * pooled_tile[1]
    while _ceil(grid[0], k) * _ceil(grid[1], k) * per_tile > cap:
        k += 1
    pooled_grid = (_ceil(grid[0], k), _ceil(grid[1], k))
    notes = []
    if len(shape) >= 3:
        if k > 1:
            notes.append(f"{k}×{k} channel blocks, max-{symbol} pooled to {_times(pooled_grid)}")
        if s > 1:
            notes.append(f"kernels in {_times(tile_block)} blocks, max-{symbol} pooled to {_times(pooled_tile)}")
    elif s > 1:
        if tile[0] == 1:
            notes.append(f"blocks of {tile_block[1]}, max-{symbol} pooled to {pooled_tile[1]}")
        else:
            notes.append(f"{_times(tile_block)} blocks, max-{symbol} pooled to {_times(pooled_tile)}")
    return Plan(
        shape=shape,
        grid=grid,
        tile=tile,
        grid_block=k,
        tile_block=tile_block,
        channel_group=1,
        cells=pooled_grid[0] * pooled_grid[1],
        pooled_grid=pooled_grid,
        description=_describe(name, shape, what, notes),
    )


def activation_plan(name, shape, cap=PIXEL_CAP) -> Plan:
    """How to draw the activation of one probe element of ``shape`` (its batch dimension dropped)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) <= 2:
        return weight_plan(name, shape, cap, symbol="|a|")
    channels = shape[0]
    tile = (math.prod(shape[1:-1]), shape[-1])
    group = 1 if channels <= cap else _ceil(channels, cap)
    cells = _ceil(channels, group)
    s = _block_for(tile[0], tile[1], cap // cells)
    tile_block = _tile_block(tile[0], tile[1], s)
    pooled_tile = (_ceil(tile[0], tile_block[0]), _ceil(tile[1], tile_block[1]))
    columns = math.ceil(math.sqrt(cells))
    pooled_grid = (_ceil(cells, columns), columns)
    notes = []
    if group > 1:
        notes.append(f"groups of {group} channels, max-|a| pooled to {cells}")
    if s > 1:
        notes.append(f"{_times(tile_block)} blocks, max-|a| pooled to {_times(pooled_tile)}")
    what = f"{channels} channel maps of {_times(tile)} in a {_times(pooled_grid)} grid"
    return Plan(
        shape=shape,
        grid=pooled_grid,
        tile=tile,
        grid_block=1,
        tile_block=tile_block,
        channel_group=group,
        cells=cells,
        pooled_grid=pooled_grid,
        description=_describe(name, shape, what, notes),
        channels=True,
    )


def _describe(name, shape, what, notes):
    return f"{name} {shape}: " + ", ".join([what] + notes)
