// @ts-check
/**
 * @file The colours of the filmstrip's pictures, the same arithmetic as
 * tb_layerdyn/format/colormaps.py (see its docstring): a test checks both against one fixture.
 *
 * Pictures arrive as gray levels plus the interval they span; the tab turns levels back into
 * values and colours them here, so that the scale can be fixed across steps or the frame's own.
 */

/** @typedef {[number, number, number]} Rgb */

/**
 * ColorBrewer's 11-class PiYG (Cynthia Brewer, colorbrewer2.org), negative (purple) to positive
 * (green); index 5 is zero.
 * @type {ReadonlyArray<Rgb>}
 */
export const PIYG = Object.freeze([
  [142, 1, 82],
  [197, 27, 125],
  [222, 119, 174],
  [241, 182, 218],
  [253, 224, 239],
  [247, 247, 247],
  [230, 245, 208],
  [184, 225, 134],
  [127, 188, 65],
  [77, 146, 33],
  [39, 100, 25],
]);

/** Values that are not finite (NaN, ±Infinity). @type {Rgb} */
export const NAN_RGB = [255, 0, 0];
/** Gaps between tiles and empty cells of a grid. @type {Rgb} */
export const BACKGROUND_RGB = [30, 40, 80];

/**
 * @param {number} channel
 * @returns {number}
 */
function round(channel) {
  return Math.floor(channel + 0.5);
}

/**
 * The PiYG colour of a signed value for the symmetric scale [-scale, scale].
 * @param {number} value
 * @param {number} scale  at and beyond ±scale the map's ends; 0 draws the centre
 * @returns {Rgb}
 */
export function diverging(value, scale) {
  if (!Number.isFinite(value)) return [...NAN_RGB];
  const x = scale > 0 ? Math.min(Math.max(value / scale, -1), 1) : 0;
  const p = (x + 1) * 5;
  const i = Math.min(Math.floor(p), 9);
  const f = p - i;
  const lo = PIYG[i];
  const hi = PIYG[i + 1];
  return [round(lo[0] + f * (hi[0] - lo[0])), round(lo[1] + f * (hi[1] - lo[1])), round(lo[2] + f * (hi[2] - lo[2]))];
}

/**
 * The gray of a value over [low, high]: black at low, white at high (mid-gray when they are equal).
 * @param {number} value
 * @param {number} low
 * @param {number} high
 * @returns {Rgb}
 */
export function gray(value, low, high) {
  if (!Number.isFinite(value)) return [...NAN_RGB];
  const t = high > low ? Math.min(Math.max((value - low) / (high - low), 0), 1) : 0.5;
  const level = round(255 * t);
  return [level, level, level];
}

/**
 * A colour drawn with the opacity of travel / scale over white (a weight that has not moved is
 * white; one that moved the scale or more has its full colour).
 * @param {Rgb} colour  bytes, e.g. from `diverging`
 * @param {number} travel
 * @param {number} scale
 * @returns {Rgb}
 */
export function overWhite(colour, travel, scale) {
  if (!Number.isFinite(travel) || colour.every((c, k) => c === NAN_RGB[k])) return [...NAN_RGB];
  const a = scale > 0 ? Math.min(Math.max(travel / scale, 0), 1) : 0;
  return [round(a * colour[0] + (1 - a) * 255), round(a * colour[1] + (1 - a) * 255), round(a * colour[2] + (1 - a) * 255)];
}
