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
 * it, and is filled then, so no column is visited twice. The spans are filled in a copy of the
 * pixels stored column by column, where a span is contiguous memory: filled in place, row by
 * row, a span costs a cache miss per pixel.
 * @param {Pixels} pixels painted in place; pixels no line covers are left as they are.
 * @param {ArrayLike<number>} xs the points' x values, shared by every line, ascending.
 * @param {readonly RasterLine[]} lines
 * @param {PixelMap} map
 * @param {boolean} spanGaps join the points on either side of a gap instead of breaking the line.
 */
export function paintLines(pixels, xs, lines, map, spanGaps) {
  const { width, height } = pixels;
  if (width <= 0 || height <= 0) return;
  const words = new Int32Array(pixels.data.buffer, pixels.data.byteOffset, width * height);
  const byColumn = new Int32Array(width * height);
  for (let r = 0, k = 0; r < height; r++) for (let c = 0; c < width; c++) byColumn[c * height + r] = words[k++];
  // The points' x and column, shared by every line. A column left or right of the pixels is -1
  // or `width`: which one beyond the edge does not change what is painted.
  const px = new Float64Array(xs.length);
  const columns = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    px[i] = map.ax * xs[i] + map.bx;
    columns[i] = Math.floor(Math.max(-1, Math.min(width, px[i])));
  }
  const py = new Float64Array(xs.length);
  for (const line of lines) {
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
          fillSpan(byColumn, width, height, current, Math.min(lo, yEdge), Math.max(hi, yEdge), color);
          current = b;
          lo = yEdge;
          hi = yEdge;
        }
      } else if (c !== current) {
        fillSpan(byColumn, width, height, current, lo, hi, color);
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
    fillSpan(byColumn, width, height, current, lo, hi, color);
  }
  for (let r = 0, k = 0; r < height; r++) for (let c = 0; c < width; c++) words[k++] = byColumn[c * height + r];
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
 * Fills a column's rows from `top` to `bottom` (fractional rows), clipped to the pixels.
 * @param {Int32Array} byColumn pixels stored column by column.
 * @param {number} width
 * @param {number} height
 * @param {number} c the column.
 * @param {number} top
 * @param {number} bottom
 * @param {number} color
 */
function fillSpan(byColumn, width, height, c, top, bottom, color) {
  if (c < 0 || c >= width || bottom < 0 || top >= height) return;
  const end = c * height + Math.min(height - 1, Math.floor(bottom));
  for (let k = c * height + Math.max(0, Math.floor(top)); k <= end; k++) byColumn[k] = color;
}
