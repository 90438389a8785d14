// @ts-check
/**
 * @file What the filmstrip's colours and numbers mean: the legend of a kind (its colour bar, what
 * the ends stand for, the special colours), a picture's scale as its caption says it, and the
 * enlarged picture's readout under the cursor.
 */

import { CSS } from '../../core/constants.js';
import { chip, el } from '../../core/dom.js';
import { formatValue } from '../../core/scales.js';
import { BACKGROUND_RGB, NAN_RGB, diverging, gray, overWhite } from './colormap.js';

/**
 * @typedef {import('./picture.js').Pair} Pair
 * @typedef {import('./picture.js').MapName} MapName
 * @typedef {import('./picture.js').ScaleMode} ScaleMode
 */

/** The colour bar's class; style.css beside this module defines it. */
const BAR_CLASS = 'ld-film-bar';

/**
 * @param {import('./colormap.js').Rgb} rgb
 * @returns {string}
 */
function cssColour(rgb) {
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}

/**
 * A colour bar of a kind's map, left to right from the scale's low end to its high end.
 * @param {readonly MapName[]} maps
 * @returns {HTMLCanvasElement}
 */
function colourBar(maps) {
  const width = 256;
  const canvas = el('canvas', { className: BAR_CLASS, attrs: { 'aria-hidden': 'true' } });
  canvas.width = width;
  canvas.height = 1;
  const image = new ImageData(width, 1);
  const strong = diverging(0.8, 1);
  for (let x = 0; x < width; x++) {
    const t = x / (width - 1);
    let rgb;
    if (maps[0] === 'diverging') rgb = diverging(2 * t - 1, 1);
    else if (maps[0] === 'gray') rgb = gray(t, 0, 1);
    else rgb = overWhite(strong, t, 1);
    image.data.set([...rgb, 255], 4 * x);
  }
  /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(image, 0, 0);
  return canvas;
}

/**
 * The legend of a kind: its colour bar with what the ends mean, and the special colours.
 * @param {readonly MapName[]} maps
 * @param {ScaleMode} mode
 * @returns {HTMLElement}
 */
export function legend(maps, mode) {
  const which = mode === 'fixed'
    ? 'each layer\'s own scale, fixed across steps (the widest of its frames\')'
    : 'each frame\'s own scale';
  let ends;
  let meaning;
  if (maps[0] === 'diverging') {
    ends = ['−s', '0', '+s'];
    meaning = `negative purple, zero white, positive green; ±s is ${which}, from the 1st and 99th `
      + 'percentiles; values beyond it take the ends';
  } else if (maps[0] === 'gray') {
    ends = ['low', 'high'];
    meaning = `black to white over [low, high], ${which}, from the 1st to the 99th percentile`;
  } else {
    ends = ['0', 't'];
    meaning = 'each weight in its colour (weights ±s, as for weights), as opaque as it travelled from '
      + `its initial value: white has not moved, full colour moved t or more; t is ${which}, from the `
      + '99th percentile';
  }
  /**
   * @param {import('./colormap.js').Rgb} rgb
   * @param {string} text
   */
  const swatch = (rgb, text) => {
    const sample = chip(cssColour(rgb));
    sample.classList.add(CSS.legendSwatch);
    return el('span', { className: CSS.legendEntry }, [sample, el('span', { text })]);
  };
  const labels = el('div', { className: CSS.heatmapAxis }, ends.map((text) => el('span', { text })));
  return el('div', { className: CSS.legend, attrs: { 'data-legend': 'pictures' } }, [
    el('div', { className: CSS.legendEnds }, [el('div', {}, [colourBar(maps), labels]), el('span', { text: meaning })]),
    swatch(NAN_RGB, 'not finite'),
    swatch(BACKGROUND_RGB, 'between tiles, empty cell'),
  ]);
}

/**
 * The scale of a picture as its caption says it.
 * @param {readonly MapName[]} maps
 * @param {Pair[]} scales
 * @returns {string}
 */
export function scaleText(maps, scales) {
  if (maps[0] === 'diverging') return `±${formatValue(scales[0][1])}`;
  if (maps[0] === 'gray') return `${formatValue(scales[0][0])} … ${formatValue(scales[0][1])}`;
  return `t ${formatValue(scales[0][1])} · w ±${formatValue(scales[1][1])}`;
}

/**
 * What the enlarged picture's readout says under the cursor.
 * @param {{row: number, column: number, tile: Pair, values: number[]} | null} found
 * @param {readonly string[]} planes
 * @returns {string}
 */
export function readoutText(found, planes) {
  if (found === null) return 'between tiles';
  const value = (/** @type {number} */ v) => (Number.isFinite(v) ? formatValue(v) : 'not finite');
  const values = planes.length === 1
    ? `value ${value(found.values[0])}`
    : planes.map((name, p) => `${name} ${value(found.values[p])}`).join(' · ');
  return `${values} · row ${found.row}, column ${found.column} (tile ${found.tile[0]}, ${found.tile[1]})`;
}
