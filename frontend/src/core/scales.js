// @ts-check
/**
 * @file Pure scale helpers: log normalisation, log ticks, compact number formatting.
 */

/**
 * Maps a positive value onto [0, 1] on a log scale between `min` and `max` (clamped).
 * @param {number} value
 * @param {number} min smallest positive value of the scale.
 * @param {number} max largest value of the scale.
 * @returns {number} position in [0, 1]; NaN when `value` is not positive.
 */
export function logPosition(value, min, max) {
  if (!(value > 0)) return NaN;
  if (!(max > min)) return 1;
  const t = (Math.log(value) - Math.log(min)) / (Math.log(max) - Math.log(min));
  return t < 0 ? 0 : t > 1 ? 1 : t;
}

/**
 * Powers of ten between `min` and `max` inclusive, for labelling a log axis; when the range spans
 * less than one decade, the two ends instead.
 * @param {number} min positive.
 * @param {number} max not below `min`.
 * @returns {number[]}
 */
export function logTicks(min, max) {
  if (!(min > 0) || !(max >= min)) return [];
  const first = Math.ceil(Math.log10(min) - 1e-9);
  const last = Math.floor(Math.log10(max) + 1e-9);
  if (last < first) return min === max ? [min] : [min, max];
  const ticks = [];
  for (let e = first; e <= last; e++) ticks.push(Number(`1e${e}`));
  return ticks;
}

/**
 * Smallest positive and largest finite values over some rows, ignoring `null` and non-finite.
 * @param {ReadonlyArray<import('./shaping.js').Column>} rows
 * @returns {{minPositive: number | null, max: number | null}}
 */
export function valueRange(rows) {
  let minPositive = Infinity;
  let max = -Infinity;
  for (const row of rows) {
    for (const v of row) {
      if (v === null || !Number.isFinite(v)) continue;
      if (v > max) max = v;
      if (v > 0 && v < minPositive) minPositive = v;
    }
  }
  return {
    minPositive: minPositive === Infinity ? null : minPositive,
    max: max === -Infinity ? null : max,
  };
}

/**
 * Formats a number compactly for labels and tooltips (4 significant digits, exponent when tiny or
 * huge); `null` and NaN read as "–".
 * @param {number | null | undefined} value
 * @returns {string}
 */
export function formatValue(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs >= 1e-3 && abs < 1e5) return String(Number(value.toPrecision(4)));
  // 1.50e-4 -> 1.5e-4, 1.00e-4 -> 1e-4: axis labels at powers of ten stay short.
  return value.toExponential(2).replace(/\.?0+e/, 'e').replace('e+', 'e');
}

/**
 * Round tick values (1, 2 or 5 times a power of ten apart) covering [min, max].
 * @param {number} min
 * @param {number} max
 * @param {number} count roughly how many ticks are wanted.
 * @returns {number[]} ascending ticks within [min, max].
 */
export function niceTicks(min, max, count) {
  if (!Number.isFinite(min) || !Number.isFinite(max) || max < min) return [];
  if (max === min) return [min];
  const rough = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(rough));
  const spacing = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) ?? 10 * power;
  const ticks = [];
  for (let t = Math.ceil(min / spacing) * spacing; t <= max + spacing * 1e-9; t += spacing) {
    ticks.push(Number(t.toPrecision(12)));
  }
  return ticks;
}
