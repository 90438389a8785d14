// @ts-check
/**
 * @file Panel: a population of runs seen at once. The run × run matrix of distances between the
 * runs' weights at a chosen step (whole model or one layer), rows and columns in the clustering
 * order the server sends, so a block on the diagonal is a cluster of runs; and every run's path
 * through weight space projected on the two principal directions of all of them, coloured as the
 * run list colours runs. A step slider redraws both. Distances are estimated from the weight
 * sketches the tracker logs (http_api.md, "Distances between runs").
 *
 * The matrix is drawn on a canvas, one pixel per cell (1,000 runs: 1,000 × 1,000), scaled to the
 * screen; the trajectories on a uPlot chart whose axes and scales uPlot keeps while a draw hook
 * paints every run's path in one pass per colour (a thousand uPlot series would cost a thousand
 * path builds and a thousand entries of state per redraw).
 */

import uPlot from 'uplot';
import { hexToRgb, rampGradient, rampTable } from '../../core/colors.js';
import { CSS, HEATMAP_MISSING, HEATMAP_RAMP } from '../../core/constants.js';
import { el, hiDpiCanvas, stateMessage, yieldToBrowser } from '../../core/dom.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell, tickedRunsOrState } from '../../core/panel.js';
import { formatValue } from '../../core/scales.js';
import { activeRuns } from '../../core/selection.js';
import { distances, sketches, trajectories } from './api.js';
import {
  RUN_QUERY_BUDGET, cellAt, chosenRuns, entryNames, matrixPixels, nearestPoint, paddedRange, populationLabel,
  runQueryLength, stepIndex, subsetDistances, subsetTrajectories,
} from './shaping.js';
import './style.css';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('./shaping.js').Population} Population
 * @typedef {import('./shaping.js').Distances} Distances
 * @typedef {import('./shaping.js').Trajectories} Trajectories
 * @typedef {import('./api.js').Choice} Choice
 */

const WATCHED = ['runs', 'checked', 'runFilter', 'status'];

/** Class names of this panel (its own stylesheet, style.css). */
const POP_CSS = Object.freeze({
  controls: 'ld-pop-controls',
  figures: 'ld-pop-figures',
  figure: 'ld-pop-figure',
  caption: 'ld-pop-caption',
  matrix: 'ld-pop-matrix',
  strip: 'ld-pop-strip',
  canvas: 'ld-pop-canvas',
  readout: 'ld-pop-readout',
  scale: 'ld-pop-scale',
  ramp: 'ld-pop-ramp',
});

/** Largest side of the matrix on screen, CSS pixels; width of the run colour strip beside it. */
const MATRIX_SIDE_MAX = 520;
const STRIP_WIDTH = 6;
const TRAJECTORY_HEIGHT = 420;
/** Narrowest a figure gets beside the other; the gap between them (style.css has the same). */
const FIGURE_MIN_WIDTH = 380;
const FIGURE_GAP = 24;
/** Opacity of a run's whole path; its point at the chosen step is drawn opaque. */
const PATH_ALPHA = 0.28;
const POINT_RADIUS = 2.5;
/** Entries of the colour lookup table. */
const RAMP_SIZE = 256;

const AXIS_FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const AXIS_STROKE = '#616161';
const GRID = { stroke: '#ebebeb', width: 1 };

/**
 * A labelled control.
 * @param {string} label
 * @param {HTMLElement} control
 */
function control(label, control) {
  return el('label', { className: CSS.control }, [el('span', { text: label }), control]);
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createPopulationPanel(context) {
  const shell = new PanelShell(
    'population',
    'Population: distances between runs',
    'Left: distances between the runs’ weights at one step, runs ordered so that close ones sit '
      + 'together (a dark block on the diagonal is a cluster). Right: each run’s path over training '
      + 'on the two principal directions of all of them; dots mark the chosen step.',
  );
  const guard = createRequestGuard();
  const stepGuard = createRequestGuard();
  const table = rampTable(HEATMAP_RAMP, RAMP_SIZE);
  const missing = hexToRgb(HEATMAP_MISSING);

  const populationSelect = el('select', { attrs: { 'data-control': 'population', 'aria-label': 'Population' } });
  const layerSelect = el('select', { attrs: { 'data-control': 'population-layer', 'aria-label': 'Layer' } });
  const slider = el('input', {
    attrs: { type: 'range', min: '0', max: '0', step: '1', value: '0', 'data-control': 'population-step', 'aria-label': 'Step' },
  });
  const stepLabel = el('span', { className: CSS.count, attrs: { 'data-step-label': '' } });
  const populationControl = control('Population', populationSelect);
  const controls = el('div', { className: POP_CSS.controls }, [
    populationControl,
    control('Layer', layerSelect),
    el('label', { className: CSS.control }, [el('span', { text: 'Step' }), slider, stepLabel]),
  ]);
  const matrixReadout = el('div', { className: `${CSS.panelHint} ${POP_CSS.readout}`, attrs: { role: 'status', 'data-readout': 'matrix' } });
  const pathReadout = el('div', { className: `${CSS.panelHint} ${POP_CSS.readout}`, attrs: { role: 'status', 'data-readout': 'trajectories' } });
  const matrixBox = el('div', { className: POP_CSS.figure, attrs: { 'data-figure': 'matrix' } });
  const pathBox = el('div', { className: POP_CSS.figure, attrs: { 'data-figure': 'trajectories' } });
  const notes = el('div');
  const content = el('div', {}, [controls, notes, el('div', { className: POP_CSS.figures }, [matrixBox, pathBox])]);

  /**
   * What the user chose here, kept across redraws.
   * @type {{key: string | null, layer: string | null, step: number | null}}
   */
  const local = { key: null, layer: null, step: null };
  /**
   * What is shown: the request's choice, the runs chosen, and `keep` when they were too many to
   * name in a request (the whole population is asked for and cut down here).
   * @type {{populations: Population[], choice: Choice, runs: string[], keep: Set<string> | null} | null}
   */
  let current = null;

  /** @param {Distances} d */
  const cutDistances = (d) => (current?.keep ? subsetDistances(d, current.keep) : d);
  /** @param {Trajectories} t */
  const cutTrajectories = (t) => (current?.keep ? subsetTrajectories(t, current.keep) : t);
  /** @type {Trajectories | null} */
  let paths = null;
  /** @type {uPlot | null} */
  let plot = null;
  let column = -1;

  const keyOf = (/** @type {Population} */ p) => `${p.model ?? ''}\u0000${p.architecture}`;

  function destroyPlot() {
    if (plot) plot.destroy();
    plot = null;
  }

  /** The width of each figure: half the panel each when it is wide enough for two. */
  function figureWidth() {
    const width = shell.body.clientWidth || 900;
    return width >= 2 * FIGURE_MIN_WIDTH + FIGURE_GAP ? Math.floor((width - FIGURE_GAP) / 2) - 1 : width;
  }

  /**
   * Draws the matrix of one step.
   * @param {Distances} d
   */
  function drawMatrix(d) {
    const n = d.points;
    const side = Math.max(120, Math.min(MATRIX_SIDE_MAX, figureWidth() - STRIP_WIDTH - 8));
    const names = entryNames(current?.choice.population ?? { model: d.model }, d.runs);
    const cells = document.createElement('canvas');
    cells.width = n;
    cells.height = n;
    /** @type {CanvasRenderingContext2D} */ (cells.getContext('2d'))
      .putImageData(new ImageData(matrixPixels(d.matrix, n, d.order, d.max, table, missing), n, n), 0, 0);
    const { canvas, ctx } = hiDpiCanvas(side, side, POP_CSS.canvas);
    canvas.dataset.step = String(d.step);
    canvas.dataset.runs = String(n);
    // Shrinking a thousand cells into fewer pixels averages them; enlarging a few keeps blocks.
    ctx.imageSmoothingEnabled = n > side * (window.devicePixelRatio || 1);
    ctx.drawImage(cells, 0, 0, side, side);

    // A strip of run colours along the rows, in the drawing's order.
    const { canvas: strip, ctx: stripCtx } = hiDpiCanvas(STRIP_WIDTH, side, POP_CSS.strip);
    const rowHeight = side / Math.max(1, n);
    for (let a = 0; a < n; a++) {
      stripCtx.fillStyle = context.runColor(names[d.order[a]]);
      stripCtx.fillRect(0, a * rowHeight, STRIP_WIDTH, Math.max(rowHeight, 0.5));
    }

    canvas.addEventListener('mousemove', (event) => {
      const cell = cellAt(d, event.offsetX, event.offsetY, side);
      if (!cell) return;
      const row = entryNames(current?.choice.population ?? { model: d.model }, [cell.row])[0];
      const col = entryNames(current?.choice.population ?? { model: d.model }, [cell.column])[0];
      matrixReadout.textContent = `${row} × ${col} · distance ${formatValue(cell.distance)} at step ${d.step}`;
      matrixReadout.dataset.row = row;
      matrixReadout.dataset.column = col;
      matrixReadout.dataset.distance = cell.distance === null ? '' : String(cell.distance);
    });
    canvas.addEventListener('mouseleave', () => {
      matrixReadout.textContent = '';
    });

    const ramp = el('span', { className: POP_CSS.ramp });
    ramp.style.background = rampGradient(HEATMAP_RAMP);
    const layer = d.layer === null ? 'whole model' : d.layer;
    const bound = d.bound_95 > 0 ? ` · estimated from sketches: squared distances within ±${formatValue(100 * d.bound_95)}% for 95% of pairs` : ' · exact';
    const caption = el('div', { className: POP_CSS.caption }, [
      el('span', { text: `${n} runs × ${n} at step ${d.step}, ${layer}${bound}` }),
    ]);
    const scale = el('div', { className: POP_CSS.scale, attrs: { 'data-legend': 'distance' } }, [
      el('span', { text: '0' }), ramp, el('span', { text: formatValue(d.max) }),
      d.missing.length ? el('span', { text: `· ${d.missing.length} run${d.missing.length === 1 ? '' : 's'} without a sketch at this step` }) : null,
    ]);
    // What the cursor pointed at belonged to the step drawn before.
    matrixReadout.textContent = '';
    matrixBox.style.width = `${figureWidth()}px`;
    matrixBox.replaceChildren(caption, scale, el('div', { className: POP_CSS.matrix }, [strip, canvas]), matrixReadout);
  }

  /**
   * The chart of every run's path; its draw hook reads `paths` and `column`.
   * @param {Trajectories} t
   */
  function drawTrajectories(t) {
    destroyPlot();
    const names = entryNames(current?.choice.population ?? { model: t.model }, t.runs);
    const colours = names.map((name) => context.runColor(name));
    const xr = paddedRange(t.x);
    const yr = paddedRange(t.y);
    const pct = (/** @type {number | null} */ v) => (v === null ? '' : ` (${Math.round(100 * v)}% of the variance)`);
    /** @type {uPlot.Options} */
    const options = {
      width: figureWidth(),
      height: TRAJECTORY_HEIGHT,
      legend: { show: false },
      cursor: { drag: { x: false, y: false, setScale: false }, points: { show: false }, x: false, y: false },
      scales: { x: { time: false, range: () => xr }, y: { range: () => yr } },
      axes: [
        { label: `principal direction 1${pct(t.explained[0])}`, stroke: AXIS_STROKE, grid: GRID, ticks: GRID, font: AXIS_FONT, labelFont: AXIS_FONT },
        { label: `principal direction 2${pct(t.explained[1])}`, stroke: AXIS_STROKE, grid: GRID, ticks: GRID, font: AXIS_FONT, labelFont: AXIS_FONT, size: 60 },
      ],
      series: [{}, { paths: () => null, points: { show: false }, stroke: 'transparent' }],
      hooks: {
        draw: [(u) => paint(u, t, colours)],
      },
    };
    const element = el('div', { className: CSS.chart });
    plot = new uPlot(options, [[xr[0], xr[1]], [yr[0], yr[1]]], element);
    const over = plot.over;
    over.addEventListener('mousemove', (event) => {
      if (!plot || column < 0) return;
      const x = plot.posToVal(event.offsetX, 'x');
      const y = plot.posToVal(event.offsetY, 'y');
      const xPerY = (plot.posToVal(1, 'x') - plot.posToVal(0, 'x')) / (plot.posToVal(0, 'y') - plot.posToVal(1, 'y'));
      const hit = nearestPoint(t, column, x, y, xPerY);
      if (!hit) return;
      const r = hit.run;
      pathReadout.textContent = `${names[r]} at step ${t.steps[column]} · (${formatValue(t.x[r * t.points + column])}, `
        + `${formatValue(t.y[r * t.points + column])})`;
      pathReadout.dataset.run = names[r];
    });
    over.addEventListener('mouseleave', () => {
      pathReadout.textContent = '';
    });
    const spread = t.mean_distance === null ? '' : ` · mean distance from the centre ${formatValue(t.mean_distance)}`;
    pathBox.style.width = `${figureWidth()}px`;
    pathBox.replaceChildren(
      el('div', { className: POP_CSS.caption, text: `${t.runs.length} runs over ${t.points} steps${spread}` }),
      element, pathReadout,
    );
  }

  /**
   * Paints every run's path, then its point at the chosen step, batched by colour.
   * @param {uPlot} u
   * @param {Trajectories} t
   * @param {string[]} colours
   */
  function paint(u, t, colours) {
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    /** @type {Map<string, {path: Path2D, dots: Path2D}>} */
    const byColour = new Map();
    const ratio = window.devicePixelRatio || 1;
    for (let r = 0; r < t.runs.length; r++) {
      let entry = byColour.get(colours[r]);
      if (!entry) {
        entry = { path: new Path2D(), dots: new Path2D() };
        byColour.set(colours[r], entry);
      }
      let pen = false;
      for (let j = 0; j < t.points; j++) {
        const vx = t.x[r * t.points + j];
        const vy = t.y[r * t.points + j];
        if (Number.isNaN(vx) || Number.isNaN(vy)) {
          pen = false;
          continue;
        }
        const px = u.valToPos(vx, 'x', true);
        const py = u.valToPos(vy, 'y', true);
        if (pen) entry.path.lineTo(px, py);
        else entry.path.moveTo(px, py);
        pen = true;
        if (j === column) {
          entry.dots.moveTo(px + POINT_RADIUS * ratio, py);
          entry.dots.arc(px, py, POINT_RADIUS * ratio, 0, 2 * Math.PI);
        }
      }
    }
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.lineWidth = ratio;
    ctx.globalAlpha = PATH_ALPHA;
    for (const [colour, { path }] of byColour) {
      ctx.strokeStyle = colour;
      ctx.stroke(path);
    }
    ctx.globalAlpha = 1;
    for (const [colour, { dots }] of byColour) {
      ctx.fillStyle = colour;
      ctx.fill(dots);
    }
    ctx.restore();
  }

  /** Moves the trajectories' dots to the slider's step. */
  function moveDots() {
    if (!paths || !current) return;
    const step = current.choice.population.steps[Number(slider.value)];
    column = paths.steps.indexOf(step);
    plot?.redraw(false, false);
  }

  /** Fetches and draws the matrix at the slider's step. */
  async function showStep() {
    if (!current) return;
    const steps = current.choice.population.steps;
    const step = steps[Number(slider.value)];
    local.step = step;
    stepLabel.textContent = String(step);
    moveDots();
    const ticket = stepGuard.next();
    shell.setBusy(true);
    try {
      const d = await distances(context.model, current.choice, step);
      if (!stepGuard.isCurrent(ticket)) return;
      shell.setBusy(false);
      drawMatrix(cutDistances(d));
    } catch (e) {
      if (!stepGuard.isCurrent(ticket)) return;
      shell.setBusy(false);
      matrixBox.replaceChildren(stateMessage('error', e instanceof Error ? e.message : String(e)));
    }
  }

  /**
   * Fetches the matrix and the trajectories together, and draws each as it comes: the matrix of
   * one step is usually ready well before the paths of every step.
   * @param {number} ticket
   */
  async function showAll(ticket) {
    if (!current) return;
    const { choice } = current;
    const steps = choice.population.steps;
    slider.max = String(Math.max(0, steps.length - 1));
    slider.value = String(stepIndex(steps, local.step));
    const step = steps[Number(slider.value)];
    local.step = step;
    stepLabel.textContent = String(step);
    const stepTicket = stepGuard.next();
    shell.setBusy(true);
    paths = null;
    column = -1;
    destroyPlot();
    const pending = [distances(context.model, choice, step), trajectories(context.model, choice)];
    // Neither failure is left unhandled while the other is awaited.
    for (const p of pending) p.catch(() => {});
    const failed = (/** @type {unknown} */ e) => {
      if (!guard.isCurrent(ticket)) return;
      destroyPlot();
      shell.showError(e);
    };
    let d;
    try {
      d = await pending[0];
    } catch (e) {
      failed(e);
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket)) return;
    if (shell.body.firstChild !== content) shell.show([content]);
    pathBox.replaceChildren(stateMessage('loading', 'Projecting every run’s path…'));
    if (stepGuard.isCurrent(stepTicket)) drawMatrix(cutDistances(/** @type {Distances} */ (d)));
    let t;
    try {
      t = /** @type {Trajectories} */ (await pending[1]);
    } catch (e) {
      failed(e);
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket)) return;
    shell.setBusy(false);
    paths = cutTrajectories(t);
    column = paths.steps.indexOf(/** @type {number} */ (local.step));
    drawTrajectories(paths);
  }

  populationSelect.addEventListener('change', () => {
    local.key = populationSelect.value;
    local.layer = null;
    refresh(/** @type {State} */ (context.selection.state));
  });
  layerSelect.addEventListener('change', () => {
    local.layer = layerSelect.value || null;
    refresh(/** @type {State} */ (context.selection.state));
  });
  slider.addEventListener('input', () => {
    showStep();
  });

  /**
   * @param {State} state
   */
  async function refresh(state) {
    const ticket = guard.next();
    const ticked = tickedRunsOrState(state, shell, { nothing: 'No layer dynamics logged yet.', clear: destroyPlot });
    if (ticked === null) return;
    shell.setBusy(true);
    await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    let populations;
    try {
      populations = (await sketches(context.model)).populations;
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      destroyPlot();
      shell.showError(e);
      return;
    }
    if (!guard.isCurrent(ticket)) return;
    const names = new Set(activeRuns(state).map((r) => r.run));
    // Populations with at least two ticked runs: one run has nobody to be compared with.
    const usable = populations.filter((p) => entryNames(p, p.runs).filter((n) => names.has(n)).length >= 2);
    if (usable.length === 0) {
      shell.setBusy(false);
      destroyPlot();
      current = null;
      shell.showState('empty', populations.length
        ? 'Fewer than two ticked runs share an architecture with weight sketches: tick more runs.'
        : 'No weight sketches logged: LayerDynamics(model, writer) logs them by default (sketches=True); '
          + 'runs of one architecture can then be compared here.');
      return;
    }
    const population = usable.find((p) => keyOf(p) === local.key) ?? usable[0];
    local.key = keyOf(population);
    populationSelect.replaceChildren(...usable.map((p) => el('option', { text: populationLabel(p), attrs: { value: keyOf(p) } })));
    populationSelect.value = local.key;
    populationControl.hidden = usable.length < 2;
    const layer = local.layer !== null && population.layers.includes(local.layer) ? local.layer : null;
    local.layer = layer;
    layerSelect.replaceChildren(
      el('option', { text: 'Whole model', attrs: { value: '' } }),
      ...population.layers.map((name) => el('option', { text: name, attrs: { value: name } })),
    );
    layerSelect.value = layer ?? '';
    const chosen = chosenRuns(population, names);
    const count = chosen === null ? population.runs.length : chosen.length;
    // Too many to name in one request: ask for them all and keep the chosen ones here.
    const tooLong = chosen !== null && runQueryLength(chosen) > RUN_QUERY_BUDGET;
    const runs = tooLong ? null : chosen;
    const said = [];
    if (count < population.runs.length) said.push(`${count} of the population’s ${population.runs.length} runs are ticked.`);
    if (tooLong) said.push('The paths are projected on the principal directions of all of them.');
    notes.replaceChildren(...(said.length ? [el('p', { className: CSS.panelHint, text: said.join(' ') })] : []));
    current = {
      populations, choice: { population, layer, runs }, runs: chosen ?? population.runs,
      keep: tooLong ? new Set(/** @type {string[]} */ (chosen)) : null,
    };
    await showAll(ticket);
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  function update(state, changed) {
    if (!WATCHED.some((key) => changed.has(key))) return;
    refresh(state);
  }

  return { element: shell.element, update };
}
