// @ts-check
/**
 * @file Exponential smoothing of a series, as TensorBoard's scalar charts do it.
 */

/**
 * Debiased exponential moving average: the early points are not pulled towards zero, gaps
 * (`null`, NaN, ±Infinity) stay gaps and do not disturb the average.
 * @param {import('./shaping.js').Column} values
 * @param {number} weight in [0, 1); 0 returns the values unchanged.
 * @returns {Array<number | null>} a new array of the same length.
 */
export function smoothSeries(values, weight) {
  if (!(weight > 0)) return Array.from(values);
  if (weight >= 1) throw new Error(`smoothing weight must be below 1, got ${weight}`);
  const out = new Array(values.length);
  let last = 0;
  let debias = 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || !Number.isFinite(v)) {
      out[i] = null;
      continue;
    }
    last = last * weight + (1 - weight) * v;
    debias *= weight;
    out[i] = last / (1 - debias);
  }
  return out;
}
