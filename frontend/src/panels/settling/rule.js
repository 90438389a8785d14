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
 * @param {ReadonlyArray<number | null>} steps ascending.
 * @param {ReadonlyArray<number | null>} values one per step; `null`, NaN and ±Infinity are gaps.
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
