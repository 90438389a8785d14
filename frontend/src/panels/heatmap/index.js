// @ts-check
/**
 * @file Panel: a layer x step heatmap per run on a canvas, rows in depth order, log colour scale.
 *
 * Rows that darken early are layers that settled early. All runs share one colour scale so their
 * pictures compare; the scale spans the layers currently shown.
 */

import {
  CSS, HEATMAP_MAX_STEPS, HEATMAP_MISSING, HEATMAP_RAMP, HEATMAP_ROW_MAX, HEATMAP_ZERO, LABEL_MIN_SPACING,
} from '../../core/constants.js';
import { chip, el, hiDpiCanvas, yieldToBrowser } from '../../core/dom.js';
import { colourScaleLegend } from '../../core/legend.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell, firstRuns } from '../../core/panel.js';
import { layerLabels, shortNames } from '../../core/names.js';
import { formatValue, niceTicks, valueRange } from '../../core/scales.js';
import { activeRuns, visibleLayers } from '../../core/selection.js';
import { heatmapPixels } from '../../core/shaping.js';
import { metricLabel } from '../curves/view.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('../../core/api.js').HeatmapPayload} HeatmapPayload
 */

const WATCHED = ['runs', 'checked', 'runFilter', 'layerFilter', 'group', 'metric', 'status'];
const LABEL_WIDTH = 150;
/** Characters of a row label that fit LABEL_WIDTH; longer names are shortened (names.js). */
const LABEL_CHARS = 22;
const ROWS_HEIGHT_TARGET = 260;

/**
 * Round steps under the heatmap, each placed over the first column that reached it (columns need
 * not be evenly spaced in steps).
 * @param {ArrayLike<number>} steps ascending.
 * @returns {HTMLElement}
 */
function stepAxis(steps) {
  const axis = el('div', { className: CSS.heatmapAxis });
  let j = 0;
  for (const step of niceTicks(steps[0], steps[steps.length - 1], 6)) {
    while (j < steps.length - 1 && steps[j] < step) j++;
    const tick = el('span', { text: String(step) });
    tick.style.left = `${((j + 0.5) / steps.length) * 100}%`;
    axis.append(tick);
  }
  return axis;
}

/**
 * Draws one run's heatmap.
 * @param {HeatmapPayload} payload
 * @param {number[]} rows indices into `payload.names`, in depth order.
 * @param {{min: number, max: number}} scale
 * @param {number} width CSS pixels available for the canvas.
 * @param {HTMLElement} readout where hover text goes.
 * @param {(name: string) => string} labelOf a row's full label (its name, or `1 · Linear 4→8`).
 * @returns {HTMLElement}
 */
function runHeatmap(payload, rows, scale, width, readout, labelOf) {
  // Every row is tall enough for its label: a deep model makes a taller picture, never rows
  // without names.
  const rowHeight = Math.max(
    LABEL_MIN_SPACING,
    Math.min(HEATMAP_ROW_MAX, Math.floor(ROWS_HEIGHT_TARGET / rows.length)),
  );
  const height = rowHeight * rows.length;
  const steps = payload.steps;
  const values = rows.map((i) => payload.values[i]);
  const image = new ImageData(
    heatmapPixels(values, steps.length, scale, { ramp: HEATMAP_RAMP, zero: HEATMAP_ZERO, missing: HEATMAP_MISSING }),
    steps.length,
    rows.length,
  );
  const cells = document.createElement('canvas');
  cells.width = steps.length;
  cells.height = rows.length;
  /** @type {CanvasRenderingContext2D} */ (cells.getContext('2d')).putImageData(image, 0, 0);
  const { canvas, ctx } = hiDpiCanvas(width, height, CSS.heatmapCanvas);
  // Each cell is a flat block: smoothing would blend neighbouring layers into colours nobody logged.
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, 0, 0, width, height);

  const labels = el('div', { className: CSS.heatmapLabels });
  labels.style.height = `${height}px`;
  const full = rows.map((i) => labelOf(payload.names[i]));
  const short = shortNames(full, LABEL_CHARS);
  rows.forEach((i, r) => {
    const text = full[r];
    const label = el('div', {
      className: CSS.heatmapLabel, text: short.get(text) ?? text, title: text,
      attrs: { 'data-layer': payload.names[i] },
    });
    label.style.top = `${r * rowHeight}px`;
    label.style.height = `${rowHeight}px`;
    label.style.lineHeight = `${Math.min(rowHeight, 16)}px`;
    labels.append(label);
  });

  canvas.addEventListener('mousemove', (event) => {
    const r = Math.min(rows.length - 1, Math.floor(event.offsetY / rowHeight));
    const j = Math.min(steps.length - 1, Math.floor((event.offsetX / width) * steps.length));
    const value = values[r]?.[j];
    readout.textContent = `${payload.run} · ${labelOf(payload.names[rows[r]])} · step ${steps[j]}`
      + `${payload.downsampled ? ' (bin mean)' : ''} · ${formatValue(value)}`;
  });
  canvas.addEventListener('mouseleave', () => {
    readout.textContent = '';
  });

  return el('div', { className: CSS.heatmapGrid }, [
    labels,
    el('div', {}, [canvas, stepAxis(steps)]),
  ]);
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createHeatmapPanel(context) {
  const shell = new PanelShell(
    'heatmap',
    'Layer × step heatmap',
    'One row per layer, input at the top; colour is the chosen metric on a log scale shared by all runs.',
  );
  const guard = createRequestGuard();
  /** @type {{state: State, payloads: HeatmapPayload[]} | null} */
  let last = null;
  let lastWidth = 0;
  /** @type {string | null} what the run cap left out */
  let capNote = null;

  new ResizeObserver(() => {
    const width = shell.body.clientWidth;
    if (last && Math.abs(width - lastWidth) > 8) draw(last.state, last.payloads);
  }).observe(shell.body);

  /**
   * @param {State} state
   * @param {HeatmapPayload[]} payloads
   */
  function draw(state, payloads) {
    last = { state, payloads };
    lastWidth = shell.body.clientWidth;
    const keep = visibleLayers(state, activeRuns(state));
    const shown = payloads.map((p) => p.names.flatMap((name, i) => (keep.has(name) ? [i] : [])));
    const range = valueRange(payloads.flatMap((p, k) => shown[k].map((i) => p.values[i])));
    if (range.minPositive === null || range.max === null) {
      shell.showState('empty', `No positive values of ${state.metric} logged for these layers yet.`);
      return;
    }
    const scale = { min: range.minPositive, max: Math.max(range.max, range.minPositive) };
    const readout = el('div', { className: CSS.panelHint, attrs: { role: 'status' } });
    readout.textContent = '';
    const width = Math.max(200, shell.body.clientWidth - LABEL_WIDTH - 12);
    /** @type {Node[]} */
    const nodes = [colourScaleLegend(scale.min, scale.max), readout];
    if (capNote) nodes.push(el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text: capNote, attrs: { role: 'status' } }));
    const labelOf = layerLabels(activeRuns(state));
    payloads.forEach((payload, k) => {
      const title = el('div', { className: CSS.chartTitle }, [
        chip(context.runColor(payload.run)),
        el('span', { text: payload.run }),
        el('span', { className: CSS.panelHint, text: metricLabel(payload.metric) }),
      ]);
      const body = shown[k].length && payload.steps.length
        ? runHeatmap(payload, shown[k], scale, width, readout, (name) => labelOf(payload.run, name))
        : el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text: `Nothing logged for run ${payload.run} in these layers.` });
      nodes.push(el('div', { className: CSS.heatmap, attrs: { 'data-run': payload.run } }, [title, body]));
    });
    shell.show(nodes);
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  async function update(state, changed) {
    if (!WATCHED.some((key) => changed.has(key))) return;
    const ticket = guard.next();
    if (state.status === 'loading') {
      shell.setBusy(true);
      return;
    }
    if (state.status === 'error') {
      last = null;
      shell.showError(state.error);
      return;
    }
    const withMetric = activeRuns(state).filter((r) => r.metrics.includes(state.metric));
    const { shown: runs, note } = firstRuns(withMetric);
    capNote = note;
    if (runs.length === 0) {
      last = null;
      shell.showState('empty', state.runs.length
        ? `No selected run logged ${state.metric}: tick runs on the left or pick another metric.`
        : 'No layer dynamics logged yet.');
      return;
    }
    shell.setBusy(true);
    await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    let payloads;
    try {
      // Each payload under its entry's name (a run's models share the run's name on the server).
      payloads = (await Promise.all(runs.map((r) => context.model.heatmap(r.run, state.metric, HEATMAP_MAX_STEPS))))
        .map((p, k) => ({ ...p, run: runs[k].run }));
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      last = null;
      shell.showError(e);
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket)) return;
    shell.setBusy(false);
    draw(state, payloads);
  }

  return { element: shell.element, update };
}
