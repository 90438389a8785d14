// @ts-check
/**
 * @file Pure data shaping between route payloads and charts: filters, column picks, run joins,
 * log-scale cleaning and heatmap pixels. Nothing here touches the DOM.
 *
 * Series stay in uPlot's column layout (`[steps, series1, series2, ...]`), and columns are passed
 * by reference wherever no value changes, so a deep model does not cost a copy. A column is an
 * array with `null` for gaps, or (as the binary routes are decoded) a typed array with NaN for them.
 */

import { hexToRgb, rampTable } from './colors.js';
import { logPosition } from './scales.js';

/**
 * @typedef {ReadonlyArray<number | null> | Float32Array | Float64Array} Column
 * @typedef {Array<Column>} Columns
 */

/**
 * Whether a value of a column is a gap: `null` (or absent) in an array, NaN in a typed array.
 * @param {number | null | undefined} v
 * @returns {v is null | undefined}
 */
export function isGap(v) {
  return v === null || v === undefined || v !== v;
}

/**
 * Compiles a user's filter text into a case-insensitive regex.
 * @param {string} text empty (or blank) matches everything.
 * @returns {{regex: RegExp | null, error: string | null}} `error` says why the text is no regex.
 */
export function compileFilter(text) {
  const trimmed = text.trim();
  if (!trimmed) return { regex: null, error: null };
  try {
    return { regex: new RegExp(trimmed, 'i'), error: null };
  } catch (e) {
    return { regex: null, error: `Not a valid regular expression: ${e instanceof Error ? e.message : e}` };
  }
}

/**
 * Indices of the names that match a regex and, when given, belong to a set of members.
 * @param {readonly string[]} names
 * @param {RegExp | null} regex `null` matches every name.
 * @param {ReadonlySet<string> | null} members `null` keeps every name.
 * @returns {number[]}
 */
export function matchingIndices(names, regex, members) {
  const out = [];
  for (let i = 0; i < names.length; i++) {
    if (members && !members.has(names[i])) continue;
    if (regex && !regex.test(names[i])) continue;
    out.push(i);
  }
  return out;
}

/**
 * Keeps the steps column and the series columns at `indices` (series numbering, 0 = first series).
 * @param {Columns} columns
 * @param {readonly number[]} indices
 * @returns {Columns}
 */
export function pickColumns(columns, indices) {
  return [columns[0], ...indices.map((i) => columns[i + 1])];
}

/**
 * Names from several lists in first-seen order, each once.
 * @param {ReadonlyArray<readonly string[]>} lists
 * @returns {string[]}
 */
export function unionNames(lists) {
  /** @type {Set<string>} */
  const seen = new Set();
  for (const list of lists) for (const name of list) seen.add(name);
  return [...seen];
}

/**
 * @param {Column} a
 * @param {Column} b
 */
function sameSteps(a, b) {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Puts several runs' column tables on one shared steps column so they can be overlaid in one
 * chart. Runs logged at the same steps (the usual case) are concatenated without copying; otherwise
 * the steps are merged and each series gets `null` where its run has no step.
 * @param {Columns[]} tables each `[steps, ...series]` with ascending steps.
 * @returns {Columns}
 */
export function joinColumns(tables) {
  if (tables.length === 0) return [[]];
  if (tables.every((t) => sameSteps(t[0], tables[0][0]))) {
    return [tables[0][0], ...tables.flatMap((t) => t.slice(1))];
  }
  /** @type {Set<number>} */
  const all = new Set();
  for (const t of tables) for (const s of t[0]) if (s !== null) all.add(s);
  const steps = Float64Array.from(all).sort();
  /** @type {Columns} */
  const out = [Array.from(steps)];
  for (const t of tables) {
    const where = new Int32Array(t[0].length);
    let j = 0;
    for (let i = 0; i < t[0].length; i++) {
      const s = /** @type {number} */ (t[0][i]);
      while (steps[j] < s) j++;
      where[i] = j;
    }
    for (let c = 1; c < t.length; c++) {
      const column = new Array(steps.length).fill(null);
      const source = t[c];
      for (let i = 0; i < source.length; i++) column[where[i]] = source[i];
      out.push(column);
    }
  }
  return out;
}

/**
 * A series ready for a log axis: values that are not positive become gaps (a log scale has no
 * place for them, and one zero would otherwise flatten the chart).
 * @template {Column} C
 * @param {C} values
 * @returns {C | Array<number | null> | Float64Array} `values` itself when nothing needed to change;
 *   else an array with `null`, or for a typed array a `Float64Array` with NaN, in those places.
 */
export function positiveOnly(values) {
  let clean = true;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isGap(v) && !(v > 0)) {
      clean = false;
      break;
    }
  }
  if (clean) return values;
  if (ArrayBuffer.isView(values)) {
    const out = new Float64Array(values.length);
    for (let i = 0; i < values.length; i++) {
      const v = values[i];
      out[i] = v !== null && v > 0 ? v : NaN;
    }
    return out;
  }
  return Array.from(values, (v) => (v !== null && v > 0 ? v : null));
}

/**
 * Fills RGBA pixels for a heatmap, one pixel per (row, step) cell, on a log colour scale.
 * @param {ReadonlyArray<Column>} rows row-major values, each of `width`.
 * @param {number} width number of steps.
 * @param {{min: number, max: number}} scale positive bounds of the log scale.
 * @param {{ramp: readonly string[], zero: string, missing: string}} colours
 * @returns {Uint8ClampedArray<ArrayBuffer>} `rows.length * width * 4` bytes.
 */
export function heatmapPixels(rows, width, scale, colours) {
  const levels = 256;
  const table = rampTable(colours.ramp, levels);
  const zero = hexToRgb(colours.zero);
  const missing = hexToRgb(colours.missing);
  const pixels = new Uint8ClampedArray(rows.length * width * 4);
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r];
    for (let c = 0; c < width; c++) {
      const v = row[c];
      const o = (r * width + c) * 4;
      /** @type {ArrayLike<number>} */
      let rgb = missing;
      let k = 0;
      if (v !== null && v !== undefined && Number.isFinite(v)) {
        if (v > 0) {
          const t = logPosition(v, scale.min, scale.max);
          rgb = table;
          k = Math.round(t * (levels - 1)) * 3;
        } else if (v === 0) {
          rgb = zero;
        }
      }
      pixels[o] = rgb[k];
      pixels[o + 1] = rgb[k + 1];
      pixels[o + 2] = rgb[k + 2];
      pixels[o + 3] = 255;
    }
  }
  return pixels;
}
