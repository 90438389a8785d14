// @ts-check
/**
 * @file When a layer settles: the first step from which its metric stays below a fraction of its
 * own peak. Pure: nothing here touches the DOM.
 *
 * Precisely: over the defined (finite) values of one series, the peak is the largest value and the
 * threshold is `fraction × peak`. The settling step is the earliest logged step that has a defined
 * value below the threshold and after which every defined value is below it too. When the last
 * defined value is not below the threshold the layer has "not yet" settled; a series whose peak is
 * not positive (a frozen layer) "never moved"; one with no defined value has "no data".
 *
 * Whether layers near the input settle first is one number per run: Spearman's rank correlation
 * between depth (position, input to output) and settling step. Layers that have not yet settled
 * count as settling after every settled one, tied with each other; never-moved and no-data layers
 * are left out; ties share their mean rank. Undefined (`null`) with fewer than two layers counted
 * or when all of them tie. The reader's `tb_layerdyn/reading/settling.py` applies the same rules,
 * and tests/fixtures/settling_cases.json holds curves both test suites check.
 */

/**
 * @typedef {{state: 'settled', step: number, peak: number}
 *   | {state: 'not yet', step: null, peak: number}
 *   | {state: 'never moved', step: null, peak: number}
 *   | {state: 'no data', step: null, peak: null}} Settling
 */

/**
 * @param {unknown} v
 * @returns {v is number}
 */
function defined(v) {
  return typeof v === 'number' && Number.isFinite(v);
}

/**
 * Checks the "% of peak" a user typed.
 * @param {string} text
 * @returns {{fraction: number, error: null} | {fraction: null, error: string}}
 */
export function parsePercent(text) {
  const percent = Number(text.trim());
  if (text.trim() === '' || !Number.isFinite(percent) || percent <= 0 || percent > 100) {
    return { fraction: null, error: `“% of peak” must be a number above 0 and at most 100, got “${text}”.` };
  }
  return { fraction: percent / 100, error: null };
}

/**
 * When one series settles (see the file's description for the exact rule).
 * @param {import('../../core/shaping.js').Column} steps ascending.
 * @param {import('../../core/shaping.js').Column} values one per step; `null`, NaN and ±Infinity
 *   are gaps.
 * @param {number} fraction in (0, 1].
 * @returns {Settling}
 */
export function settlingStep(steps, values, fraction) {
  let peak = -Infinity;
  for (const v of values) if (defined(v) && v > peak) peak = v;
  if (peak === -Infinity) return { state: 'no data', step: null, peak: null };
  if (!(peak > 0)) return { state: 'never moved', step: null, peak };
  const threshold = fraction * peak;
  /** @type {number | null} */
  let since = null;
  for (let i = values.length - 1; i >= 0; i--) {
    const v = values[i];
    if (!defined(v)) continue;
    if (v >= threshold) break;
    since = /** @type {number} */ (steps[i]);
  }
  return since === null ? { state: 'not yet', step: null, peak } : { state: 'settled', step: since, peak };
}

/**
 * The earliest settling step among some series, or `null` when none has settled.
 * @param {readonly Settling[]} results
 * @returns {number | null}
 */
export function earliestStep(results) {
  /** @type {number | null} */
  let best = null;
  for (const r of results) if (r.state === 'settled' && (best === null || r.step < best)) best = r.step;
  return best;
}

/**
 * Ranks from 1, tied values sharing the mean of the ranks they span.
 * @param {readonly number[]} values `Infinity` ranks after every finite value.
 * @returns {number[]}
 */
function meanRanks(values) {
  const order = values.map((_, i) => i).sort((a, b) => (values[a] < values[b] ? -1 : values[a] > values[b] ? 1 : a - b));
  const ranks = new Array(values.length);
  let start = 0;
  for (let end = 1; end <= order.length; end++) {
    if (end === order.length || values[order[end]] !== values[order[start]]) {
      for (let k = start; k < end; k++) ranks[order[k]] = (start + end + 1) / 2;
      start = end;
    }
  }
  return ranks;
}

/**
 * Spearman's rank correlation: Pearson's correlation of the ranks, ties sharing their mean rank.
 * @param {readonly number[]} x
 * @param {readonly number[]} y as long as `x`.
 * @returns {number | null} `null` with fewer than two pairs or when one side is all ties.
 */
export function rankCorrelation(x, y) {
  if (x.length !== y.length) throw new Error(`rankCorrelation needs equal lengths, got ${x.length} and ${y.length}`);
  if (x.length < 2) return null;
  const rx = meanRanks(x);
  const ry = meanRanks(y);
  const mx = rx.reduce((a, b) => a + b, 0) / rx.length;
  const my = ry.reduce((a, b) => a + b, 0) / ry.length;
  let cov = 0;
  let vx = 0;
  let vy = 0;
  for (let i = 0; i < rx.length; i++) {
    cov += (rx[i] - mx) * (ry[i] - my);
    vx += (rx[i] - mx) ** 2;
    vy += (ry[i] - my) ** 2;
  }
  const denominator = Math.sqrt(vx * vy);
  return denominator === 0 ? null : cov / denominator;
}

/**
 * The rank correlation between depth and settling step of one run's layers (see the file's
 * description): positive when the layers near the input settle first.
 * @param {readonly Settling[]} results one per layer, in depth order.
 * @returns {number | null}
 */
export function settlingCorrelation(results) {
  /** @type {number[]} */
  const depths = [];
  /** @type {number[]} */
  const steps = [];
  results.forEach((r, depth) => {
    if (r.state === 'settled') {
      depths.push(depth);
      steps.push(r.step);
    } else if (r.state === 'not yet') {
      depths.push(depth);
      steps.push(Infinity);
    }
  });
  return rankCorrelation(depths, steps);
}
