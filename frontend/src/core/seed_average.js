// @ts-check
/**
 * @file Runs that differ only by seed, taken together: grouping run names by a user's pattern and
 * averaging the group's series step by step, with the spread across its runs (min and max, and
 * the standard deviation). Pure: nothing here touches the DOM.
 *
 * Standard deviations here are the population's (dividing by the number of runs, not one less),
 * as in the reader's `tb_layerdyn/reading/settling.py`.
 */

import { compileFilter } from './shaping.js';

/**
 * @typedef {import('./shaping.js').Columns} Columns
 * @typedef {{name: string, runs: string[]}} SeedGroup
 * @typedef {{
 *   name: string, mean: Array<number | null>, low: Array<number | null>,
 *   high: Array<number | null>, std: Array<number | null>, count: number[]
 * }} AveragedSeries `count[i]` is how many runs had a value at step i (0 where mean is null).
 * @typedef {{steps: number[], series: AveragedSeries[]}} AveragedTable
 * @typedef {'minmax' | 'std'} BandKind the spread a band shades: min to max, or mean ± one
 *   standard deviation.
 * @typedef {{mean: number, std: number, low: number, high: number, count: number}
 *   | {mean: null, std: null, low: null, high: null, count: 0}} Spread
 */

/** The bands a user can pick, with how the legend names them. */
export const BAND_KINDS = Object.freeze(/** @type {const} */ ([
  { id: 'minmax', label: 'min to max' },
  { id: 'std', label: 'mean ± 1 sd' },
]));

/**
 * The default seed pattern: a trailing `seed<k>`, with the separator before it (`-`, `_` or `/`),
 * so `lenet5-seed0`, `lenet5_seed1` and `lenet5/seed2` all join the group `lenet5`.
 */
export const DEFAULT_SEED_PATTERN = '[-_/]?seed[-_]?\\d+$';

/**
 * Groups run names by what is left once the seed pattern is cut out of them.
 * @param {readonly string[]} runs run names, in the order groups should come.
 * @param {string} pattern regex text (case-insensitive) matching the seed part of a run name;
 *   blank puts every run in a group of its own.
 * @returns {{groups: SeedGroup[], error: string | null}} groups in first-seen order; `error` says
 *   why the pattern is no regex (every run is then a group of its own).
 */
export function groupRunsBySeed(runs, pattern) {
  const { regex, error } = compileFilter(pattern);
  /** @type {Map<string, string[]>} */
  const byName = new Map();
  for (const run of runs) {
    // A pattern that would eat the whole name leaves it as it is: a group needs a name.
    const stripped = regex ? run.replace(regex, '') : run;
    const name = stripped || run;
    const members = byName.get(name);
    if (members) members.push(run);
    else byName.set(name, [run]);
  }
  return { groups: [...byName].map(([name, members]) => ({ name, runs: members })), error };
}

/**
 * @param {unknown} v
 * @returns {v is number}
 */
function defined(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

/**
 * Averages some runs' series over the union of their steps. At each step the mean, min and max are
 * taken over the runs that have a defined (finite) value there; a step where none has one is a gap
 * (`null`). A series no run has is left out.
 * @param {ReadonlyArray<{names: readonly string[], columns: Columns}>} tables one per run, each
 *   `[steps, ...series]` with ascending steps and a name per series.
 * @param {readonly string[]} order the series to average, in the order to return them.
 * @returns {AveragedTable}
 */
export function averageRuns(tables, order) {
  /** @type {Set<number>} */
  const all = new Set();
  for (const t of tables) for (const s of t.columns[0]) if (s !== null) all.add(s);
  const steps = Array.from(all).sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const where = tables.map((t) => t.columns[0].map((s) => (s === null ? -1 : /** @type {number} */ (index.get(s)))));
  /** @type {AveragedSeries[]} */
  const series = [];
  for (const name of order) {
    const sum = new Float64Array(steps.length);
    const low = new Float64Array(steps.length).fill(Infinity);
    const high = new Float64Array(steps.length).fill(-Infinity);
    const count = new Array(steps.length).fill(0);
    let present = false;
    tables.forEach((t, r) => {
      const c = t.names.indexOf(name);
      if (c < 0) return;
      present = true;
      const column = t.columns[c + 1];
      const at = where[r];
      for (let i = 0; i < column.length; i++) {
        const v = column[i];
        if (!defined(v) || at[i] < 0) continue;
        const k = at[i];
        sum[k] += v;
        if (v < low[k]) low[k] = v;
        if (v > high[k]) high[k] = v;
        count[k] += 1;
      }
    });
    if (!present) continue;
    const mean = count.map((n, k) => (n ? sum[k] / n : null));
    // A second pass for the deviations: sums of squares minus the squared mean lose the digits
    // of a spread that is small beside its mean.
    const squares = new Float64Array(steps.length);
    tables.forEach((t, r) => {
      const c = t.names.indexOf(name);
      if (c < 0) return;
      const column = t.columns[c + 1];
      const at = where[r];
      for (let i = 0; i < column.length; i++) {
        const v = column[i];
        if (!defined(v) || at[i] < 0) continue;
        squares[at[i]] += (v - /** @type {number} */ (mean[at[i]])) ** 2;
      }
    });
    series.push({
      name,
      mean,
      low: count.map((n, k) => (n ? low[k] : null)),
      high: count.map((n, k) => (n ? high[k] : null)),
      std: count.map((n, k) => (n ? Math.sqrt(squares[k] / n) : null)),
      count,
    });
  }
  return { steps, series };
}

/**
 * The edges of the band an averaged series shades.
 * @param {AveragedSeries} series
 * @param {BandKind} kind `'minmax'`: the lowest and highest run; `'std'`: the mean ± one standard
 *   deviation.
 * @param {boolean} logY on a log axis a lower edge at or below zero has no place; there the band
 *   reaches down to the lowest run's value instead.
 * @returns {{lower: Array<number | null>, upper: Array<number | null>}}
 */
export function bandEdges(series, kind, logY) {
  if (kind === 'minmax') return { lower: series.low, upper: series.high };
  const lower = series.mean.map((m, i) => {
    if (m === null) return null;
    const edge = m - /** @type {number} */ (series.std[i]);
    return logY && !(edge > 0) ? series.low[i] : edge;
  });
  const upper = series.mean.map((m, i) => (m === null ? null : m + /** @type {number} */ (series.std[i])));
  return { lower, upper };
}

/**
 * Mean, population standard deviation, min and max of the defined (finite) values.
 * @param {ReadonlyArray<number | null>} values `null`, NaN and ±Infinity are left out.
 * @returns {Spread}
 */
export function spreadOf(values) {
  const kept = /** @type {number[]} */ (values.filter(defined));
  if (kept.length === 0) return { mean: null, std: null, low: null, high: null, count: 0 };
  const mean = kept.reduce((a, b) => a + b, 0) / kept.length;
  const std = Math.sqrt(kept.reduce((a, v) => a + (v - mean) ** 2, 0) / kept.length);
  return { mean, std, low: Math.min(...kept), high: Math.max(...kept), count: kept.length };
}
