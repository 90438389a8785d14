// @ts-check
/**
 * @file Legends: the depth ramp of per-layer lines, run line styles, the heatmap colour scale.
 */

import {
  CSS, DEPTH_RAMP, HEATMAP_MISSING, HEATMAP_RAMP, HEATMAP_ZERO, LEGEND_MAX_ENTRIES, RUNS_DRAWN_MAX,
} from './constants.js';
import { rampGradient } from './colors.js';
import { chip, el, hiDpiCanvas } from './dom.js';
import { shortNames } from './names.js';
import { formatValue, logPosition, logTicks } from './scales.js';

/** Most characters of a layer name in a legend entry; longer names are shortened (names.js). */
const LEGEND_NAME_MAX = 32;

/**
 * The depth legend: a ramp from the first layer (input) to the last (output), then each layer
 * with its colour when there are few enough to list.
 * @param {ReadonlyArray<{name: string, color: string, label?: string}>} layers in depth order;
 *   `label` is shown (shortened) instead of the name when given.
 * @param {readonly string[]} [runs] the runs this legend is for, when runs with other layers get
 *   legends of their own.
 * @returns {HTMLElement}
 */
export function depthLegend(layers, runs) {
  const ramp = el('div', { className: CSS.legendRamp, attrs: { 'aria-hidden': 'true' } });
  ramp.style.background = rampGradient(DEPTH_RAMP);
  const ends = [el('span', { text: 'input' }), ramp, el('span', { text: 'output' })];
  if (runs) ends.unshift(el('span', { className: CSS.legendRuns, text: runs.join(', '), title: runs.join(', ') }));
  const legend = el('div', { className: CSS.legend, attrs: { 'data-legend': 'depth' } }, [
    el('div', { className: CSS.legendEnds }, ends),
  ]);
  if (layers.length <= LEGEND_MAX_ENTRIES) {
    const short = shortNames(layers.map((l) => l.label ?? l.name), LEGEND_NAME_MAX);
    for (const layer of layers) {
      const text = layer.label ?? layer.name;
      legend.append(
        el('span', { className: CSS.legendEntry, title: text, attrs: { 'data-layer': layer.name } }, [
          chip(layer.color),
          el('span', { text: short.get(text) ?? text }),
        ]),
      );
    }
  } else {
    const first = layers[0].name;
    const last = layers[layers.length - 1].name;
    legend.append(el('span', { className: CSS.legendEntry, text: `${layers.length} layers, ${first} … ${last}` }));
  }
  return legend;
}

/**
 * A sample of a dashed line, as runs are drawn when overlaid.
 * @param {readonly number[]} dash
 * @returns {HTMLCanvasElement}
 */
function dashSample(dash) {
  const { canvas, ctx } = hiDpiCanvas(28, 10, CSS.dash);
  ctx.strokeStyle = '#424242';
  ctx.lineWidth = 1.5;
  ctx.setLineDash([...dash]);
  ctx.beginPath();
  ctx.moveTo(0, 5);
  ctx.lineTo(28, 5);
  ctx.stroke();
  return canvas;
}

/**
 * Which line style stands for which run when runs share a chart.
 * @param {ReadonlyArray<{run: string, color: string, dash: readonly number[]}>} runs
 * @returns {HTMLElement}
 */
export function runLegend(runs) {
  // A population lists its first runs and counts the rest: a thousand names would push the
  // chart off the screen and name nothing a reader can find.
  const listed = runs.length > RUNS_DRAWN_MAX ? runs.slice(0, RUNS_DRAWN_MAX) : runs;
  const more = runs.length - listed.length;
  return el(
    'div',
    { className: CSS.legend, attrs: { 'data-legend': 'runs', 'data-runs': String(runs.length) } },
    [
      ...listed.map((r) =>
        el('span', { className: CSS.legendEntry, attrs: { 'data-run': r.run } }, [
          dashSample(r.dash),
          chip(r.color),
          el('span', { text: r.run }),
        ]),
      ),
      more ? el('span', { className: CSS.legendMore, text: `and ${more} more runs` }) : null,
    ],
  );
}

/**
 * The heatmap's log colour scale with ticks at powers of ten, plus the colours of zero and of a
 * missing value.
 * @param {number} min smallest positive value on the scale.
 * @param {number} max largest value on the scale.
 * @returns {HTMLElement}
 */
export function colourScaleLegend(min, max) {
  const ramp = el('div', { className: CSS.legendRamp, attrs: { 'aria-hidden': 'true' } });
  ramp.style.background = rampGradient(HEATMAP_RAMP);
  const ticks = el('div', { className: CSS.heatmapAxis });
  // Powers of ten between the ends, minus those so close to an end that their labels would collide.
  const inner = logTicks(min, max).filter((t) => {
    const at = logPosition(t, min, max);
    return at > 0.18 && at < 0.82;
  });
  const values = max > min ? [min, ...inner, max] : [max];
  values.forEach((value, k) => {
    const tick = el('span', { text: formatValue(value) });
    tick.style.left = `${logPosition(value, min, max) * 100}%`;
    // The end labels sit inside the ramp's width instead of centred on its edges.
    if (k === 0) tick.style.transform = 'none';
    if (k === values.length - 1 && k > 0) tick.style.transform = 'translateX(-100%)';
    ticks.append(tick);
  });
  const scale = el('div', { className: CSS.legendEnds }, [
    el('span', { text: 'log scale' }),
    el('div', {}, [ramp, ticks]),
  ]);
  /**
   * @param {string} colour
   * @param {string} text
   */
  const swatch = (colour, text) => {
    const sample = chip(colour);
    sample.classList.add(CSS.legendSwatch);
    return el('span', { className: CSS.legendEntry }, [sample, el('span', { text })]);
  };
  return el('div', { className: CSS.legend, attrs: { 'data-legend': 'colour-scale' } }, [
    scale,
    swatch(HEATMAP_ZERO, 'zero'),
    swatch(HEATMAP_MISSING, 'undefined / not logged'),
  ]);
}
