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
 * A colour as one 32-bit word of RGBA bytes in memory order, opaque.
 * @param {readonly number[]} rgb
 * @returns {number}
 */
function packColor(rgb) {
  const bytes = new Uint8Array([rgb[0], rgb[1], rgb[2], 255]);
  return new Uint32Array(bytes.buffer)[0];
}

/**
 * Paints lines over pixels, each later line over the earlier ones, fully opaque.
 * @param {Pixels} pixels painted in place; pixels no line covers are left as they are.
 * @param {ArrayLike<number>} xs the points' x values, shared by every line, ascending.
 * @param {readonly RasterLine[]} lines
 * @param {PixelMap} map
 * @param {boolean} spanGaps join the points on either side of a gap instead of breaking the line.
 */
export function paintLines(pixels, xs, lines, map, spanGaps) {
  const { width, height } = pixels;
  if (width <= 0 || height <= 0) return;
  const words = new Uint32Array(pixels.data.buffer, pixels.data.byteOffset, width * height);
  // The points' x and column, shared by every line.
  const px = new Float64Array(xs.length);
  const columns = new Int32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    px[i] = map.ax * xs[i] + map.bx;
    // Far outside the pixels, any column past an edge will do (and fits an Int32).
    columns[i] = Math.floor(Math.max(-2, Math.min(width + 1, px[i])));
  }
  // Per column, the lowest and highest y of the line being painted; reset after each line.
  const lo = new Float64Array(width).fill(Infinity);
  const hi = new Float64Array(width).fill(-Infinity);
  const py = new Float64Array(xs.length);
  for (const line of lines) {
    const n = Math.min(line.values.length, xs.length);
    pixelYs(line.values, n, map, py);
    const color = packColor(line.color);
    let first = width;
    let last = -1;
    let joined = false;
    let prevX = 0;
    let prevY = 0;
    let prevC = 0;
    for (let i = 0; i < n; i++) {
      const y = py[i];
      if (!(y > -Infinity && y < Infinity)) {
        if (!spanGaps) joined = false;
        continue;
      }
      const x = px[i];
      const c = columns[i];
      if (c >= 0 && c < width) {
        if (y < lo[c]) lo[c] = y;
        if (y > hi[c]) hi[c] = y;
        if (c < first) first = c;
        if (c > last) last = c;
      }
      if (joined && c !== prevC) {
        // The segment from the previous point: its y where it crosses each column edge counts
        // for the columns on both sides of that edge.
        const forward = prevX <= x;
        const xa = forward ? prevX : x;
        const ya = forward ? prevY : y;
        const slope = forward ? (y - prevY) / (x - prevX) : (prevY - y) / (prevX - x);
        const from = Math.max((forward ? prevC : c) + 1, 0);
        const to = Math.min(forward ? c : prevC, width);
        for (let b = from; b <= to; b++) {
          const yEdge = edgeY(xa, ya, slope, b);
          if (b > 0) {
            if (yEdge < lo[b - 1]) lo[b - 1] = yEdge;
            if (yEdge > hi[b - 1]) hi[b - 1] = yEdge;
          }
          if (b < width) {
            if (yEdge < lo[b]) lo[b] = yEdge;
            if (yEdge > hi[b]) hi[b] = yEdge;
          }
        }
        if (from <= to) {
          if (from - 1 < first) first = Math.max(0, from - 1);
          if (to > last) last = Math.min(width - 1, to);
        }
      }
      prevX = x;
      prevY = y;
      prevC = c;
      joined = true;
    }
    for (let c = first; c <= last; c++) {
      const top = lo[c];
      const bottom = hi[c];
      lo[c] = Infinity;
      hi[c] = -Infinity;
      if (!(top <= bottom) || bottom < 0 || top >= height) continue;
      const r1 = Math.min(height - 1, Math.floor(bottom));
      for (let k = Math.max(0, Math.floor(top)) * width + c, end = r1 * width + c; k <= end; k += width) {
        words[k] = color;
      }
    }
  }
}

/**
 * A line's pixel rows (fractional), NaN or infinite where it has a gap.
 * @param {ArrayLike<number | null | undefined>} values
 * @param {number} n how many.
 * @param {PixelMap} map
 * @param {Float64Array} out
 */
function pixelYs(values, n, map, out) {
  const { ay, by } = map;
  if (map.logY) {
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
