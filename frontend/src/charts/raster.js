// @ts-check
/**
 * @file Paints many solid 1-pixel lines straight into RGBA pixels, a pixel column at a time.
 *
 * Stroking thousands of canvas paths is what made a chart of every layer of every run slow: the
 * browser rasterises each path on its own, anti-aliased (measured: 4,000 lines of 2,000 points,
 * seconds per draw). A line one pixel wide covers, in each pixel column, the rows between the
 * lowest and the highest point of the polyline within that column. That span is exact and cheap:
 * the polyline's points that fall in the column, and where its segments cross the column's edges
 * (a segment is straight, so its extremes within a column lie at those ends). Each line is one pass
 * over its points plus a fill of its spans; no path is built.
 *
 * Coordinates: pixel column `c` holds x in `[c, c + 1)`, pixel row `r` holds y in `[r, r + 1)`,
 * row 0 at the top. `pixelMap` puts the view's range on the pixels' centres, so the first and the
 * last point of a chart stay inside it.
 */

/**
 * @typedef {{xMin: number, xMax: number, yMin: number, yMax: number, logY: boolean}} View the data
 *   range shown; on a log axis `yMin`, `yMax` are values, not their logarithms.
 * @typedef {{ax: number, bx: number, ay: number, by: number, logY: boolean}} PixelMap a point
 *   `(x, v)` lies at `px = ax * x + bx`, `py = ay * (logY ? Math.log10(v) : v) + by`.
 * @typedef {{values: ArrayLike<number | null | undefined>, color: readonly number[]}} RasterLine `values` on the
 *   shared xs, a gap where `null`, NaN or not drawable (not positive on a log axis); `color` is
 *   `[r, g, b]`.
 * @typedef {{width: number, height: number, data: Uint8ClampedArray}} Pixels an `ImageData`, or
 *   anything shaped like one.
 */

/**
 * Where a view's data lies in pixels: the range's ends at the centres of the first and the last
 * column (and row), y growing downwards.
 * @param {View} view
 * @param {number} width pixel columns.
 * @param {number} height pixel rows.
 * @returns {PixelMap}
 */
export function pixelMap(view, width, height) {
  const y0 = view.logY ? Math.log10(view.yMin) : view.yMin;
  const y1 = view.logY ? Math.log10(view.yMax) : view.yMax;
  const dx = view.xMax - view.xMin;
  const dy = y1 - y0;
  // A range of one value (a single step, a flat line) is drawn in the middle.
  const ax = dx > 0 ? (width - 1) / dx : 0;
  const ay = dy > 0 ? -(height - 1) / dy : 0;
  return {
    ax,
    bx: dx > 0 ? 0.5 - ax * view.xMin : width / 2,
    ay,
    by: dy > 0 ? 0.5 - ay * y1 : height / 2,
    logY: view.logY,
  };
}

/**
 * A colour as one 32-bit word of RGBA bytes in memory order, opaque: signed, so that it stays a
 * small integer to the JavaScript engine (an unsigned one past 2^31 would not).
 * @param {readonly number[]} rgb
 * @returns {number}
 */
function packColor(rgb) {
  const bytes = new Uint8Array([rgb[0], rgb[1], rgb[2], 255]);
  return new Int32Array(bytes.buffer)[0];
}

/**
 * Paints lines over pixels, each later line over the earlier ones, fully opaque.
 *
 * One walk along each line, left to right: a column's span is complete once the line has left
 * it, and is filled then, so no column is visited twice. The lines are walked last first, and a
 * pixel takes the colour of the first span that covers it (`ColumnPixels`): the same picture as
 * painting them in order, without painting over a pixel thousands of times.
 * @param {Pixels} pixels painted in place; pixels no line covers are left as they are.
 * @param {ArrayLike<number>} xs the points' x values, shared by every line, ascending.
 * @param {readonly RasterLine[]} lines
 * @param {PixelMap} map
 * @param {boolean} spanGaps join the points on either side of a gap instead of breaking the line.
 */
export function paintLines(pixels, xs, lines, map, spanGaps) {
  const { width, height } = pixels;
  if (width <= 0 || height <= 0) return;
  const canvas = new ColumnPixels(width, height);
  // The points' x and column, shared by every line. A column left or right of the pixels is -1
  // or `width`: which one beyond the edge does not change what is painted.
  const px = new Float64Array(xs.length);
  const columns = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    px[i] = map.ax * xs[i] + map.bx;
    columns[i] = Math.floor(Math.max(-1, Math.min(width, px[i])));
  }
  const py = new Float64Array(xs.length);
  for (let l = lines.length - 1; l >= 0; l--) {
    const line = lines[l];
    const n = Math.min(line.values.length, xs.length);
    pixelYs(line.values, n, map, py);
    const color = packColor(line.color);
    // The column being walked through and its span so far.
    let current = -1;
    let lo = Infinity;
    let hi = -Infinity;
    let joined = false;
    let prevX = 0;
    let prevY = 0;
    let prevC = -1;
    for (let i = 0; i < n; i++) {
      const y = py[i];
      if (!(y > -Infinity && y < Infinity)) {
        if (!spanGaps) joined = false;
        continue;
      }
      const c = columns[i];
      if (c !== prevC && joined) {
        // The segment from the previous point crosses the edges between the columns: its y at
        // each edge belongs to the columns on both sides, and the one left of it is complete.
        const x = px[i];
        const slope = (y - prevY) / (x - prevX);
        for (let b = prevC + 1; b <= c; b++) {
          const yEdge = edgeY(prevX, prevY, slope, b);
          canvas.fill(current, Math.min(lo, yEdge), Math.max(hi, yEdge), color);
          current = b;
          lo = yEdge;
          hi = yEdge;
        }
      } else if (c !== current) {
        canvas.fill(current, lo, hi, color);
        current = c;
        lo = Infinity;
        hi = -Infinity;
      }
      if (y < lo) lo = y;
      if (y > hi) hi = y;
      prevX = px[i];
      prevY = y;
      prevC = c;
      joined = true;
    }
    canvas.fill(current, lo, hi, color);
  }
  canvas.paintOver(new Int32Array(pixels.data.buffer, pixels.data.byteOffset, width * height));
}

/** `log2(1 + k / 2^LOG_BITS)` for every `k`, the mantissa's part of a float32's logarithm. */
const LOG_BITS = 12;
const LOG_TABLE = Float64Array.from({ length: (1 << LOG_BITS) + 1 }, (_, k) => Math.log2(1 + k / (1 << LOG_BITS)));
const SMALLEST_NORMAL = 0x00800000;
const INFINITE = 0x7f800000;

/**
 * A line's pixel rows (fractional), NaN or infinite where it has a gap. Exported for the tests'
 * reference painter.
 *
 * On a log axis a float32 column (as the binary routes send them) takes its logarithm from the
 * number's bits: exponent, and the mantissa's logarithm interpolated in a table, within 2e-8 of
 * `Math.log2` (far below a pixel), at a fraction of its cost, which over millions of values is
 * a good part of the painting.
 * @param {ArrayLike<number | null | undefined>} values
 * @param {number} n how many.
 * @param {PixelMap} map
 * @param {Float64Array} out
 */
export function pixelYs(values, n, map, out) {
  const { ay, by } = map;
  if (map.logY && values instanceof Float32Array) {
    const bits = new Int32Array(values.buffer, values.byteOffset, n);
    const perLog2 = ay / Math.log2(10);
    for (let i = 0; i < n; i++) {
      const b = bits[i];
      if (b >= SMALLEST_NORMAL && b < INFINITE) {
        const m = b & 0x7fffff;
        const k = m >>> (23 - LOG_BITS);
        const f = (m & ((1 << (23 - LOG_BITS)) - 1)) / (1 << (23 - LOG_BITS));
        const low = LOG_TABLE[k];
        out[i] = perLog2 * ((b >>> 23) - 127 + low + (LOG_TABLE[k + 1] - low) * f) + by;
      } else {
        // Zero, negative, NaN, infinite: a gap, as `Math.log10` would make them; subnormal: rare.
        out[i] = b > 0 && b < SMALLEST_NORMAL ? ay * Math.log10(values[i]) + by : NaN;
      }
    }
  } else if (map.logY) {
    for (let i = 0; i < n; i++) {
      const v = values[i];
      out[i] = v === null || v === undefined ? NaN : ay * Math.log10(v) + by;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const v = values[i];
      out[i] = v === null || v === undefined ? NaN : ay * v + by;
    }
  }
}

/**
 * The y at `x` of the segment that starts at `(xa, ya)` with the given slope. Exported so that a
 * reference painter can evaluate edges by the same arithmetic, to the last bit.
 * @param {number} xa
 * @param {number} ya
 * @param {number} slope
 * @param {number} x
 */
export function edgeY(xa, ya, slope, x) {
  return ya + (x - xa) * slope;
}

/**
 * Pixels painted front to back: a pixel keeps the first colour it is given. Stored column by
 * column, so that a column's span is contiguous memory (row by row, each pixel of a span would
 * be a cache miss), with a bit per pixel saying it is taken.
 */
class ColumnPixels {
  /**
   * @param {number} width
   * @param {number} height
   */
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.wordsPerColumn = (height + 31) >>> 5;
    this.colors = new Int32Array(width * height);
    this.taken = new Int32Array(width * this.wordsPerColumn);
  }

  /**
   * Gives the rows `top` to `bottom` (fractional rows) of column `c`, clipped to the pixels, the
   * colour where they have none yet.
   * @param {number} c
   * @param {number} top
   * @param {number} bottom
   * @param {number} color
   */
  fill(c, top, bottom, color) {
    const { width, height } = this;
    if (c < 0 || c >= width || bottom < 0 || top >= height) return;
    const r0 = Math.max(0, Math.floor(top));
    const r1 = Math.min(height - 1, Math.floor(bottom));
    const base = c * height;
    const words = c * this.wordsPerColumn;
    for (let w = r0 >>> 5, last = r1 >>> 5; w <= last; w++) {
      // The span's rows within this word of 32, less those taken.
      const from = w === r0 >>> 5 ? r0 & 31 : 0;
      const to = w === last ? r1 & 31 : 31;
      const span = (to === 31 ? -1 : (1 << (to + 1)) - 1) & ~((1 << from) - 1);
      let fresh = span & ~this.taken[words + w];
      if (fresh === 0) continue;
      this.taken[words + w] |= fresh;
      const row = base + (w << 5);
      while (fresh !== 0) {
        const bit = 31 - Math.clz32(fresh & -fresh);
        this.colors[row + bit] = color;
        fresh &= fresh - 1;
      }
    }
  }

  /**
   * Copies the taken pixels into row-major RGBA words; the others keep what they hold.
   * @param {Int32Array} words
   */
  paintOver(words) {
    const { width, height } = this;
    for (let c = 0; c < width; c++) {
      const words0 = c * this.wordsPerColumn;
      for (let r = 0; r < height; r++) {
        if (this.taken[words0 + (r >>> 5)] & (1 << (r & 31))) words[r * width + c] = this.colors[c * height + r];
      }
    }
  }
}
