// @ts-check
/**
 * @file Pure colour functions: ramps, the depth colour of a layer, stable run colours.
 */

import { DEPTH_RAMP, RUN_PALETTE } from './constants.js';

/** @typedef {[number, number, number]} Rgb */

/**
 * Parses `#rrggbb`.
 * @param {string} hex
 * @returns {Rgb}
 */
export function hexToRgb(hex) {
  const match = /^#([0-9a-f]{6})$/i.exec(hex);
  if (!match) throw new Error(`expected a colour like #12abef, got ${JSON.stringify(hex)}`);
  const n = parseInt(match[1], 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/**
 * Formats an RGB triple as `#rrggbb`.
 * @param {Rgb} rgb
 * @returns {string}
 */
export function rgbToHex(rgb) {
  return '#' + rgb.map((c) => Math.round(c).toString(16).padStart(2, '0')).join('');
}

/**
 * Samples a ramp of evenly spaced colour stops by linear interpolation in RGB.
 * @param {readonly string[]} stops at least one `#rrggbb` colour.
 * @param {number} t position in [0, 1]; values outside are clamped, NaN gives the first stop.
 * @returns {Rgb}
 */
export function sampleRamp(stops, t) {
  const rgbs = stops.map(hexToRgb);
  if (rgbs.length === 1 || !(t > 0)) return rgbs[0];
  if (t >= 1) return rgbs[rgbs.length - 1];
  const scaled = t * (rgbs.length - 1);
  const i = Math.floor(scaled);
  const f = scaled - i;
  const a = rgbs[i];
  const b = rgbs[i + 1];
  return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
}

/**
 * A lookup table of `size` RGB colours along a ramp, for filling many pixels without recomputing.
 * @param {readonly string[]} stops
 * @param {number} size number of entries, at least 2.
 * @returns {Uint8ClampedArray} `size * 3` bytes, r g b per entry.
 */
export function rampTable(stops, size) {
  const table = new Uint8ClampedArray(size * 3);
  for (let i = 0; i < size; i++) {
    const rgb = sampleRamp(stops, i / (size - 1));
    table[i * 3] = rgb[0];
    table[i * 3 + 1] = rgb[1];
    table[i * 3 + 2] = rgb[2];
  }
  return table;
}

/**
 * The colour of layer `index` of `count` layers in depth order: input is the ramp's start, output
 * its end, so one glance at a line tells how deep its layer sits.
 * @param {number} index
 * @param {number} count
 * @returns {string} `#rrggbb`
 */
export function depthColor(index, count) {
  return rgbToHex(sampleRamp(DEPTH_RAMP, count > 1 ? index / (count - 1) : 0));
}

/**
 * Depth colours for the layers of several runs: each layer is placed by its position in its own
 * run (so a shallow and a deep model both span the ramp), and a name shared by runs takes its
 * colour from the first run that has it.
 * @param {ReadonlyArray<readonly string[]>} lists each run's layer names in depth order.
 * @returns {Map<string, string>} layer name -> `#rrggbb`.
 */
export function layerColors(lists) {
  /** @type {Map<string, string>} */
  const colours = new Map();
  for (const list of lists) {
    list.forEach((name, i) => {
      if (!colours.has(name)) colours.set(name, depthColor(i, list.length));
    });
  }
  return colours;
}

/**
 * A CSS linear-gradient along a ramp, for legends.
 * @param {readonly string[]} stops
 * @returns {string}
 */
export function rampGradient(stops) {
  return `linear-gradient(to right, ${stops.join(', ')})`;
}

/**
 * Gives each run a colour the first time it is seen and keeps it for the session, so colours do
 * not move when runs are filtered, deselected or added by a reload.
 * @param {readonly string[]} [palette]
 * @returns {(run: string) => string}
 */
export function createRunColors(palette = RUN_PALETTE) {
  /** @type {Map<string, string>} */
  const assigned = new Map();
  return (run) => {
    let colour = assigned.get(run);
    if (colour === undefined) {
      colour = palette[assigned.size % palette.length];
      assigned.set(run, colour);
    }
    return colour;
  };
}

/**
 * @typedef {{runs: string[], names: string[], colors: Map<string, string>}} LayerSet runs that
 *   share one list of layers, and each layer's depth colour within it.
 */

/**
 * Depth colours per set of runs that share their layer list: runs of one architecture share a
 * legend; runs with other layers get a legend of their own, and a name that two sets share (the
 * bare index `1` of two `Sequential`s) takes its colour from its place in each.
 * @param {ReadonlyArray<{run: string, names: readonly string[]}>} runs each run's series in depth order.
 * @returns {{sets: LayerSet[], colorOf: (run: string, name: string) => string}}
 */
export function layerSets(runs) {
  /** @type {Map<string, LayerSet>} */
  const byList = new Map();
  /** @type {Map<string, LayerSet>} */
  const ofRun = new Map();
  for (const { run, names } of runs) {
    const key = JSON.stringify(names);
    let set = byList.get(key);
    if (!set) {
      const colors = new Map(names.map((name, i) => [name, depthColor(i, names.length)]));
      set = { runs: [], names: [...names], colors };
      byList.set(key, set);
    }
    set.runs.push(run);
    ofRun.set(run, set);
  }
  return {
    sets: [...byList.values()],
    colorOf: (run, name) => ofRun.get(run)?.colors.get(name) ?? '#757575',
  };
}
