// @ts-check
/**
 * @file One layer's picture, from gray levels to pixels: levels back to values, the scale (fixed
 * across steps or the frame's own), and the colours laid out in tiles one pixel apart. The same
 * arithmetic as `rgb` and `frame_scale` in tb_layerdyn/format/pictures.py; a test checks both
 * against one fixture. Pure functions: no DOM.
 */

import { BACKGROUND_RGB, NAN_RGB, diverging, gray } from './colormap.js';

/**
 * @typedef {[number, number]} Pair
 * @typedef {'diverging' | 'gray' | 'opacity'} MapName
 * @typedef {{interval: Pair, quantiles: Pair, bytes?: number}} PlaneFacts one plane of a frame:
 *   the `[low, high]` its levels span and the frame's `[q_low, q_high]`.
 * @typedef {{description: string, shape: Pair, tile: Pair, cells: number, planes: PlaneFacts[]}}
 *   PictureInfo a layer's picture in a `frame` answer (http_api.md).
 * @typedef {'fixed' | 'frame'} ScaleMode the scale fixed across steps, or each frame's own.
 */

/** Gray levels of the pictures the tracker writes. */
export const BITS = 8;

/**
 * The value of a gray level: level 0 is a value that was not finite (or an empty cell); levels
 * 1 .. 2^bits − 1 map `[low, high]` linearly.
 * @param {number} level
 * @param {Pair} interval
 * @param {number} [bits]
 * @returns {number} NaN for level 0.
 */
export function levelValue(level, interval, bits = BITS) {
  if (level === 0) return NaN;
  const top = 2 ** bits - 1;
  const [low, high] = interval;
  return low + ((level - 1) / (top - 1)) * (high - low);
}

/**
 * The scale of one plane of one frame, from its quantiles: symmetric for diverging planes, from 0
 * for opacity, the quantiles themselves for gray.
 * @param {MapName} map
 * @param {Pair} quantiles
 * @returns {Pair}
 */
export function frameScale(map, quantiles) {
  const [low, high] = quantiles;
  if (map === 'diverging') {
    const spread = Math.max(Math.abs(low), Math.abs(high));
    return [-spread, spread];
  }
  if (map === 'opacity') return [0, Math.max(high, 0)];
  return [low, high];
}

/**
 * The scales a frame's picture is coloured with, per plane.
 * @param {ScaleMode} mode
 * @param {Pair[]} fixed the layer's scales fixed across steps (the `pictures` listing's).
 * @param {PictureInfo} picture
 * @param {readonly MapName[]} maps
 * @returns {Pair[]}
 */
export function chooseScales(mode, fixed, picture, maps) {
  if (mode === 'fixed') return fixed;
  return maps.map((map, p) => frameScale(map, picture.planes[p].quantiles));
}

/**
 * `[height, width]` of a picture as drawn: its tiles one pixel apart.
 * @param {PictureInfo} picture
 * @returns {Pair}
 */
export function drawnShape(picture) {
  const [height, width] = picture.shape;
  const rows = height / picture.tile[0];
  const columns = width / picture.tile[1];
  return [height + rows - 1, width + columns - 1];
}

/**
 * The colour of each gray level of a plane (a table of 2^bits entries), so that a picture costs
 * one look-up per pixel; colours of values, as `colormap.js` computes them.
 * @param {MapName} map 'diverging' or 'gray'.
 * @param {Pair} interval
 * @param {Pair} scale
 * @returns {import('./colormap.js').Rgb[]}
 */
function levelColours(map, interval, scale) {
  const colours = [];
  for (let level = 0; level < 2 ** BITS; level++) {
    const value = levelValue(level, interval);
    colours.push(map === 'gray' ? gray(value, scale[0], scale[1]) : diverging(value, scale[1]));
  }
  return colours;
}

/**
 * The colour of each pixel of a stored picture (gaps not counted), `[r, g, b]` per pixel.
 * @param {PictureInfo} picture
 * @param {readonly MapName[]} maps
 * @param {ArrayLike<number>[]} levels per plane, row by row (`shape[0] × shape[1]`).
 * @param {Pair[]} scales per plane.
 * @returns {Uint8ClampedArray} 3 bytes per stored pixel.
 */
function storedColours(picture, maps, levels, scales) {
  const count = picture.shape[0] * picture.shape[1];
  const out = new Uint8ClampedArray(3 * count);
  if (maps.length === 1) {
    const table = levelColours(maps[0], picture.planes[0].interval, scales[0]);
    const plane = levels[0];
    for (let i = 0; i < count; i++) {
      const rgb = table[plane[i]];
      out[3 * i] = rgb[0];
      out[3 * i + 1] = rgb[1];
      out[3 * i + 2] = rgb[2];
    }
    return out;
  }
  // Travel: plane 0's opacity over plane 1's diverging colour, as `overWhite` computes it (one
  // call per travel level and weight level would cost 65,536 colours; this is its formula inline).
  const weights = levelColours('diverging', picture.planes[1].interval, scales[1]);
  const opaqueAt = scales[0][1];
  const alphas = [];
  for (let level = 0; level < 2 ** BITS; level++) {
    const travel = levelValue(level, picture.planes[0].interval);
    alphas.push(opaqueAt > 0 ? Math.min(Math.max(travel / opaqueAt, 0), 1) : 0);
  }
  const [travelLevels, weightLevels] = levels;
  for (let i = 0; i < count; i++) {
    const colour = weights[weightLevels[i]];
    const a = alphas[travelLevels[i]];
    const notFinite = travelLevels[i] === 0 || weightLevels[i] === 0;
    for (let c = 0; c < 3; c++) {
      out[3 * i + c] = notFinite ? NAN_RGB[c] : Math.floor(a * colour[c] + (1 - a) * 255 + 0.5);
    }
  }
  return out;
}

/**
 * A picture as drawn, ready for an `ImageData`: RGBA, tiles one background pixel apart, the
 * empty cells of a grid in the background colour.
 * @param {PictureInfo} picture
 * @param {readonly MapName[]} maps
 * @param {ArrayLike<number>[]} levels per plane, row by row.
 * @param {Pair[]} scales per plane.
 * @returns {{width: number, height: number, data: Uint8ClampedArray<ArrayBuffer>}}
 */
export function pictureRgba(picture, maps, levels, scales) {
  const [height, width] = drawnShape(picture);
  const data = new Uint8ClampedArray(4 * width * height);
  for (let i = 0; i < width * height; i++) {
    data[4 * i] = BACKGROUND_RGB[0];
    data[4 * i + 1] = BACKGROUND_RGB[1];
    data[4 * i + 2] = BACKGROUND_RGB[2];
    data[4 * i + 3] = 255;
  }
  const colours = storedColours(picture, maps, levels, scales);
  const [tileH, tileW] = picture.tile;
  const storedW = picture.shape[1];
  const columns = storedW / tileW;
  for (let cell = 0; cell < picture.cells; cell++) {
    const row = Math.floor(cell / columns);
    const column = cell % columns;
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        const from = 3 * ((row * tileH + y) * storedW + column * tileW + x);
        const to = 4 * ((row * (tileH + 1) + y) * width + column * (tileW + 1) + x);
        data[to] = colours[from];
        data[to + 1] = colours[from + 1];
        data[to + 2] = colours[from + 2];
      }
    }
  }
  return { width, height, data };
}

/**
 * What lies under a pixel of the drawn picture: the stored pixel and each plane's value there,
 * or `null` over a gap between tiles or an empty cell.
 * @param {PictureInfo} picture
 * @param {ArrayLike<number>[]} levels per plane, row by row.
 * @param {number} x drawn column.
 * @param {number} y drawn row.
 * @returns {{row: number, column: number, tile: Pair, values: number[]} | null} `row` and
 *   `column` of the stored picture, `tile` the grid cell's (row, column).
 */
export function valueAt(picture, levels, x, y) {
  const [tileH, tileW] = picture.tile;
  const columns = picture.shape[1] / tileW;
  const tileRow = Math.floor(y / (tileH + 1));
  const tileColumn = Math.floor(x / (tileW + 1));
  const inY = y % (tileH + 1);
  const inX = x % (tileW + 1);
  const [height, width] = drawnShape(picture);
  if (x < 0 || y < 0 || x >= width || y >= height || inY === tileH || inX === tileW) return null;
  if (tileRow * columns + tileColumn >= picture.cells) return null;
  const row = tileRow * tileH + inY;
  const column = tileColumn * tileW + inX;
  const index = row * picture.shape[1] + column;
  const values = picture.planes.map((plane, p) => levelValue(levels[p][index], plane.interval));
  return { row, column, tile: [tileRow, tileColumn], values };
}
