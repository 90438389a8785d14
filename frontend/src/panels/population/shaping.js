// @ts-check
/**
 * @file The population panel's pure half: the answers of the `sketches`, `distances` and
 * `trajectories` routes (tb_layerdyn/plugin/http_api.md, "Distances between runs") decoded into
 * typed arrays, the runs to ask for, the matrix's pixels in clustering order, and what lies under
 * the cursor. Nothing here touches the DOM, so it is tested on fixture answers in node.
 */

import { entryName } from '../../core/names.js';

/**
 * @typedef {{
 *   model: string | null, architecture: string, layers: string[], param_counts: number[],
 *   dims: number[], exact: boolean[], runs: string[], steps: number[], counts: number[],
 *   missing: number[][], rms: number, bound_95: number
 * }} Population one entry of `sketches`.
 * @typedef {{
 *   model: string | null, architecture: string, layer: string | null, step: number,
 *   runs: string[], missing: string[], order: number[], max: number | null, rms: number,
 *   bound_95: number, points: number, matrix: Float32Array
 * }} Distances `matrix` row after row, `points × points`, NaN where the route says `null`.
 * @typedef {{
 *   model: string | null, architecture: string, layer: string | null, runs: string[],
 *   steps: number[], explained: Array<number | null>, mean_distance: number | null,
 *   points: number, x: Float32Array, y: Float32Array
 * }} Trajectories `x` and `y` run after run, `runs × points` (`points` = steps), NaN for none.
 */

/**
 * Splits a binary answer into its JSON header and the bytes after it (http_api.md: a uint32
 * length, that many bytes of JSON padded so the arrays start at a multiple of 8).
 * @param {ArrayBuffer} buffer
 * @returns {{header: any, offset: number}}
 */
function binaryHeader(buffer) {
  if (buffer.byteLength < 4) throw new Error('the binary answer is shorter than its length field');
  const length = new DataView(buffer).getUint32(0, true);
  if (4 + length > buffer.byteLength) throw new Error('the binary answer is shorter than its header');
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  return { header, offset: 4 + length };
}

/**
 * Float32 values out of a buffer, copied when they do not start on a 4-byte boundary.
 * @param {ArrayBuffer} buffer
 * @param {number} offset
 * @param {number} count
 */
function floats(buffer, offset, count) {
  if (offset + 4 * count > buffer.byteLength) throw new Error('the binary answer is shorter than its arrays');
  if (offset % 4 === 0) return new Float32Array(buffer, offset, count);
  return new Float32Array(buffer.slice(offset, offset + 4 * count));
}

/**
 * Rows of numbers or `null` as one flat float32 array, NaN for `null`.
 * @param {ReadonlyArray<ReadonlyArray<number | null>>} rows
 * @param {number} width
 */
function flatten(rows, width) {
  const out = new Float32Array(rows.length * width).fill(NaN);
  rows.forEach((row, i) => {
    for (let j = 0; j < width; j++) {
      const v = row[j];
      if (typeof v === 'number') out[i * width + j] = v;
    }
  });
  return out;
}

/**
 * A `distances` answer, JSON or binary, as `Distances`.
 * @param {ArrayBuffer | any} answer
 * @returns {Distances}
 */
export function decodeDistances(answer) {
  if (answer instanceof ArrayBuffer) {
    const { header, offset } = binaryHeader(answer);
    const n = header.points;
    return { ...header, matrix: floats(answer, offset, n * n) };
  }
  const n = answer.runs.length;
  return { ...answer, points: n, matrix: flatten(answer.matrix, n) };
}

/**
 * A `trajectories` answer, JSON or binary, as `Trajectories`.
 * @param {ArrayBuffer | any} answer
 * @returns {Trajectories}
 */
export function decodeTrajectories(answer) {
  if (answer instanceof ArrayBuffer) {
    const { header, offset } = binaryHeader(answer);
    const count = header.runs.length * header.points;
    return { ...header, x: floats(answer, offset, count), y: floats(answer, offset + 4 * count, count) };
  }
  const points = answer.steps.length;
  return { ...answer, points, x: flatten(answer.x, points), y: flatten(answer.y, points) };
}

/**
 * The tab's entry name of each run of a population (`run · model` for a named tracker), so the
 * panel colours and ticks runs as the run list does.
 * @param {Pick<Population, 'model'>} population
 * @param {readonly string[]} runs server run names.
 * @returns {string[]}
 */
export function entryNames(population, runs) {
  return runs.map((run) => entryName(run, population.model));
}

/**
 * The `run` parameters that choose the ticked runs of a population: `null` when every run is
 * ticked (the route then takes them all, and the URL stays short for a thousand runs).
 * @param {Population} population
 * @param {ReadonlySet<string>} ticked entry names of the ticked runs that pass the filter.
 * @returns {string[] | null}
 */
export function chosenRuns(population, ticked) {
  const names = entryNames(population, population.runs);
  const chosen = population.runs.filter((_, i) => ticked.has(names[i]));
  return chosen.length === population.runs.length ? null : chosen;
}

/**
 * A population's label in the menu: its model, its first layers and how many runs.
 * @param {Population} p
 */
export function populationLabel(p) {
  const layers = p.layers.length > 3 ? `${p.layers.slice(0, 3).join(', ')}, …` : p.layers.join(', ');
  return `${p.model === null ? '' : `${p.model} · `}${layers} (${p.runs.length} runs)`;
}

/**
 * The matrix's cells as RGBA pixels, `n × n`, cell `(a, b)` (row `a`, column `b`) holding the
 * distance between runs `order[a]` and `order[b]`; the colour from `table` (`rampTable`'s r g b
 * entries) placed linearly between 0 and `max`.
 * @param {Float32Array} matrix `n × n`, row after row, NaN where undefined.
 * @param {number} n
 * @param {readonly number[]} order a permutation of `0 .. n − 1`.
 * @param {number | null} max the colour scale's top; `null` or 0 paints every finite cell the
 *   ramp's start.
 * @param {Uint8ClampedArray} table
 * @param {readonly [number, number, number]} missing colour of an undefined cell.
 * @returns {Uint8ClampedArray<ArrayBuffer>}
 */
export function matrixPixels(matrix, n, order, max, table, missing) {
  const pixels = new Uint8ClampedArray(n * n * 4);
  const top = table.length / 3 - 1;
  const scale = max !== null && max > 0 ? top / max : 0;
  for (let a = 0; a < n; a++) {
    const row = order[a] * n;
    let p = a * n * 4;
    for (let b = 0; b < n; b++, p += 4) {
      const v = matrix[row + order[b]];
      if (Number.isNaN(v)) {
        pixels[p] = missing[0];
        pixels[p + 1] = missing[1];
        pixels[p + 2] = missing[2];
      } else {
        const k = 3 * Math.max(0, Math.min(top, Math.round(v * scale)));
        pixels[p] = table[k];
        pixels[p + 1] = table[k + 1];
        pixels[p + 2] = table[k + 2];
      }
      pixels[p + 3] = 255;
    }
  }
  return pixels;
}

/**
 * The cell under a point of the drawn matrix.
 * @param {Distances} d
 * @param {number} x CSS pixels from the matrix's left edge.
 * @param {number} y CSS pixels from its top edge.
 * @param {number} side the matrix's side in CSS pixels.
 * @returns {{row: string, column: string, distance: number | null, a: number, b: number} | null}
 *   `row` and `column` are run names; `distance` `null` where undefined; `null` outside.
 */
export function cellAt(d, x, y, side) {
  const n = d.points;
  if (n === 0 || !(side > 0) || x < 0 || y < 0 || x >= side || y >= side) return null;
  const a = Math.min(n - 1, Math.floor((y / side) * n));
  const b = Math.min(n - 1, Math.floor((x / side) * n));
  const i = d.order[a];
  const j = d.order[b];
  const v = d.matrix[i * n + j];
  return { row: d.runs[i], column: d.runs[j], distance: Number.isNaN(v) ? null : v, a, b };
}

/**
 * Where a population's steps put a slider: the index of `step` (or of the nearest step before
 * it, else the first), or the last step when `step` is `null`.
 * @param {readonly number[]} steps ascending.
 * @param {number | null} step
 */
export function stepIndex(steps, step) {
  if (steps.length === 0) return -1;
  if (step === null) return steps.length - 1;
  let best = 0;
  for (let i = 0; i < steps.length; i++) if (steps[i] <= step) best = i;
  return best;
}

/**
 * The trajectory point nearest a position in data units, among the runs' points at one step.
 * @param {Trajectories} t
 * @param {number} column index into `t.steps`.
 * @param {number} x
 * @param {number} y
 * @param {number} xPerY how many x units make one y unit on screen (so "nearest" is on screen).
 * @returns {{run: number, distance: number} | null} `distance` in y units.
 */
export function nearestPoint(t, column, x, y, xPerY) {
  let best = null;
  let bestD = Infinity;
  for (let r = 0; r < t.runs.length; r++) {
    const px = t.x[r * t.points + column];
    const py = t.y[r * t.points + column];
    if (Number.isNaN(px) || Number.isNaN(py)) continue;
    const dx = (px - x) / (xPerY || 1);
    const dy = py - y;
    const d = dx * dx + dy * dy;
    if (d < bestD) {
      bestD = d;
      best = r;
    }
  }
  return best === null ? null : { run: best, distance: Math.sqrt(bestD) };
}

/**
 * The range of the trajectories' coordinates over every run and step, padded by a twentieth on
 * each side; a degenerate range (one point, all zeros) opens to ±1 around it.
 * @param {Float32Array} values
 * @returns {[number, number]}
 */
export function paddedRange(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (Number.isNaN(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) return [-1, 1];
  if (!(hi > lo)) return [lo - 1, hi + 1];
  const pad = (hi - lo) / 20;
  return [lo - pad, hi + pad];
}

/**
 * Longest query the tab sends naming runs one by one: Python's HTTP server, under TensorBoard,
 * refuses request lines over 64 KiB (414), so a longer choice asks for the whole population and
 * keeps the chosen runs here (`subsetDistances`, `subsetTrajectories`).
 */
export const RUN_QUERY_BUDGET = 32_000;

/**
 * The length the `run` parameters of some runs take in a query.
 * @param {readonly string[]} runs
 */
export function runQueryLength(runs) {
  let n = 0;
  for (const run of runs) n += 5 + encodeURIComponent(run).length;
  return n;
}

/**
 * A matrix answer cut down to some of its runs: their rows and columns, in the answer's own
 * (clustering) order with the others left out, and the scale's top over what is left.
 * @param {Distances} d
 * @param {ReadonlySet<string>} keep server run names.
 * @returns {Distances}
 */
export function subsetDistances(d, keep) {
  const n = d.points;
  const kept = [];
  for (let i = 0; i < n; i++) if (keep.has(d.runs[i])) kept.push(i);
  const m = kept.length;
  const at = new Map(kept.map((i, k) => [i, k]));
  const matrix = new Float32Array(m * m);
  let max = null;
  for (let a = 0; a < m; a++) {
    for (let b = 0; b < m; b++) {
      const v = d.matrix[kept[a] * n + kept[b]];
      matrix[a * m + b] = v;
      if (!Number.isNaN(v) && (max === null || v > max)) max = v;
    }
  }
  const order = d.order.filter((i) => at.has(i)).map((i) => /** @type {number} */ (at.get(i)));
  return {
    ...d, runs: kept.map((i) => d.runs[i]), points: m, matrix, order, max,
    missing: d.missing.filter((run) => keep.has(run)),
  };
}

/**
 * A trajectories answer cut down to some of its runs (their coordinates stay those of the
 * directions of every run asked for).
 * @param {Trajectories} t
 * @param {ReadonlySet<string>} keep server run names.
 * @returns {Trajectories}
 */
export function subsetTrajectories(t, keep) {
  const kept = [];
  for (let r = 0; r < t.runs.length; r++) if (keep.has(t.runs[r])) kept.push(r);
  const x = new Float32Array(kept.length * t.points);
  const y = new Float32Array(kept.length * t.points);
  kept.forEach((r, k) => {
    x.set(t.x.subarray(r * t.points, (r + 1) * t.points), k * t.points);
    y.set(t.y.subarray(r * t.points, (r + 1) * t.points), k * t.points);
  });
  return { ...t, runs: kept.map((r) => t.runs[r]), x, y };
}
