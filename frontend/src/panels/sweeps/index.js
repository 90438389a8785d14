// @ts-check
/**
 * @file Panel: interpolation sweeps. For the runs shown and the chosen training step (each run's
 * latest by default, or every step to compare), every metric against alpha for the whole model
 * and for each layer (coloured by depth), per-parameter small multiples with their travel, and the
 * robustness table, whose threshold the user can change.
 */

import './style.css';

import { CSS } from '../../core/constants.js';
import { createCurveChart } from '../../charts/curve_chart.js';
import { chip, el, stateMessage, yieldToBrowser } from '../../core/dom.js';
import { depthLegend, runLegend } from '../../core/legend.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell, tickedRunsOrState } from '../../core/panel.js';
import { formatValue } from '../../core/scales.js';
import {
  CURVE_SCOPES, EVERY_STEP, LATEST, SWEEP_CHART_HEIGHT, SWEEP_CHART_MIN_WIDTH, SWEEP_CSS,
  SWEEP_MULTIPLE_HEIGHT, SWEEP_MULTIPLE_MIN_WIDTH,
} from './constants.js';
import { curveSweep, robustnessSweep, sweepList } from './api.js';
import {
  chooseSweeps, layerPredicate, layersChart, modelChart, parameterMultiples, parseThreshold,
  sweepMetrics, sweepSteps,
} from './shaping.js';
import { robustnessTable } from './table.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('./shaping.js').ChosenSweep} ChosenSweep
 * @typedef {import('./shaping.js').CurveSweep} CurveSweep
 * @typedef {{sweep: ChosenSweep, payload: CurveSweep}} Part
 * @typedef {{plot: import('uplot'), height: number, minWidth: number, siblings: () => number,
 *   box: HTMLElement | null}} Placed
 */

const WATCHED = ['runs', 'checked', 'runFilter', 'layerFilter', 'group', 'status'];
const SYNC_KEY = 'ld-sweeps';
const GAP = 16;
const THRESHOLD_DELAY_MS = 400;

/**
 * @param {string} text
 * @param {HTMLElement} control
 * @returns {HTMLElement}
 */
function labelled(text, control) {
  return el('label', { className: CSS.control }, [el('span', { text }), control]);
}

/**
 * A titled part of the panel.
 * @param {string} scope `data-scope` attribute, for tests and styles.
 * @param {string} title
 * @param {string} hint
 * @param {Array<Node | null>} children
 * @returns {HTMLElement}
 */
function section(scope, title, hint, children) {
  return el('section', { className: SWEEP_CSS.section, attrs: { 'data-scope': scope } }, [
    el('h3', { className: SWEEP_CSS.sectionTitle, text: title }),
    el('p', { className: CSS.panelHint, text: hint }),
    ...children,
  ]);
}

/**
 * Notes shown above the charts (runs without sweeps, sweeps left out).
 * @param {string[]} notes
 * @returns {HTMLElement[]}
 */
function noteNodes(notes) {
  return notes.map((text) => el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text, attrs: { role: 'status' } }));
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createSweepsPanel(context) {
  const shell = new PanelShell(
    'sweeps',
    'Interpolation sweeps',
    'Each metric along θα = (1 − α)·θ₀ + α·θ₁, from the initial weights (α = 0) to those at the '
      + 'sweep\'s step (α = 1): the whole model, one layer at a time, and single parameters; then '
      + 'what re-initializing or re-randomizing each layer does to the trained model.',
  );
  const guard = createRequestGuard();
  const tableGuard = createRequestGuard();
  /** @type {{step: string, metric: string, threshold: number | null}} */
  const local = { step: LATEST, metric: '', threshold: null };
  /** @type {Placed[]} */
  let plots = [];
  /** @type {State} */
  let current = context.selection.state;
  /** @type {{sweeps: ChosenSweep[], keep: (layer: string) => boolean, tables: HTMLElement} | null} */
  let shown = null;

  const stepSelect = el('select', { attrs: { 'aria-label': 'Step of the sweep', 'data-control': 'sweep-step' } });
  stepSelect.addEventListener('change', () => {
    local.step = stepSelect.value;
    refresh(current);
  });
  const metricSelect = el('select', { attrs: { 'aria-label': 'Metric of the parameter charts', 'data-control': 'sweep-metric' } });
  metricSelect.addEventListener('change', () => {
    local.metric = metricSelect.value;
    refresh(current);
  });
  const threshold = el('input', {
    attrs: {
      type: 'text', inputmode: 'decimal', size: '8', 'data-control': 'sweep-threshold',
      'aria-label': 'Robustness threshold',
    },
  });
  const thresholdMessage = el('span', { className: SWEEP_CSS.message, attrs: { role: 'status' } });
  let pendingThreshold = 0;
  threshold.addEventListener('input', () => {
    clearTimeout(pendingThreshold);
    pendingThreshold = window.setTimeout(applyThreshold, THRESHOLD_DELAY_MS);
  });
  threshold.addEventListener('change', () => {
    clearTimeout(pendingThreshold);
    applyThreshold();
  });
  const controls = el('div', { className: SWEEP_CSS.controls }, [
    labelled('Step', stepSelect),
    labelled('Parameter charts', metricSelect),
    labelled('Robustness threshold', threshold),
    thresholdMessage,
  ]);

  new ResizeObserver(() => {
    if (plots.length && Math.abs(plots[0].plot.width - chartWidth(plots[0].minWidth, plots[0].siblings())) > 1) resize();
  }).observe(shell.body);

  /**
   * Width of each chart when `count` charts of at least `minWidth` share rows of the panel.
   * @param {number} minWidth
   * @param {number} count
   */
  function chartWidth(minWidth, count) {
    const available = Math.max(240, shell.body.clientWidth - 4);
    const perRow = Math.max(1, Math.min(count, Math.floor((available + GAP) / (minWidth + GAP))));
    return Math.floor((available - (perRow - 1) * GAP) / perRow);
  }

  function resize() {
    for (const p of plots) {
      const width = chartWidth(p.minWidth, p.siblings());
      p.plot.setSize({ width, height: p.height });
      // A small multiple's box takes its chart's width, so long travel lines wrap instead of
      // widening the box and leaving one chart per row.
      if (p.box) p.box.style.width = `${width}px`;
    }
  }

  function destroyPlots() {
    for (const { plot } of plots) plot.destroy();
    plots = [];
  }

  /**
   * @param {'loading' | 'empty' | 'error'} kind
   * @param {string} text
   */
  function showState(kind, text) {
    destroyPlots();
    shown = null;
    shell.show([controls, stateMessage(kind, text)]);
  }

  /**
   * Offers the steps the shown runs took sweeps at, keeping the user's choice when it still exists.
   * @param {number[]} steps
   */
  function offerSteps(steps) {
    const options = [
      el('option', { text: 'latest of each run', attrs: { value: LATEST } }),
      el('option', { text: 'every step (compare)', attrs: { value: EVERY_STEP } }),
      ...steps.map((s) => el('option', { text: `step ${s}`, attrs: { value: String(s) } })),
    ];
    stepSelect.replaceChildren(...options);
    if (!options.some((o) => o.value === local.step)) local.step = LATEST;
    stepSelect.value = local.step;
  }

  /** @param {string[]} metrics */
  function offerMetrics(metrics) {
    metricSelect.replaceChildren(...metrics.map((m) => el('option', { text: m, attrs: { value: m } })));
    if (!metrics.includes(local.metric)) local.metric = metrics[0] ?? '';
    metricSelect.value = local.metric;
  }

  /**
   * A uPlot chart of some sweep curves, remembered for resizing.
   * @param {{columns: Array<ReadonlyArray<number | null>>, lines: import('../../charts/curve_chart.js').Line[]}} data
   * @param {string} yLabel
   * @param {number} height
   * @param {number} minWidth
   * @param {() => number} siblings how many charts share its grid.
   * @param {HTMLElement | null} [box] an element around the chart that should be as wide.
   * @returns {HTMLElement}
   */
  function chart(data, yLabel, height, minWidth, siblings, box = null) {
    const spanGaps = data.lines.length > 1;
    const { element, plot } = createCurveChart({
      columns: data.columns, lines: data.lines, width: chartWidth(minWidth, siblings()), height,
      logY: false, yLabel, syncKey: SYNC_KEY, spanGaps, showRun: true, xLabel: 'α',
    });
    plots.push({ plot, height, minWidth, siblings, box });
    return element;
  }

  /**
   * The whole-model section: one chart per metric, a line per sweep.
   * @param {Part[]} parts
   * @param {string[]} metrics
   * @param {ChosenSweep[]} sweeps
   */
  function modelSection(parts, metrics, sweeps) {
    const charts = metrics
      .map((m) => ({ m, data: modelChart(parts, m, context.runColor) }))
      .filter((c) => c.data !== null);
    const count = () => charts.length;
    const grid = el('div', { className: SWEEP_CSS.grid },
      charts.map((c) => chart(/** @type {any} */ (c.data), c.m, SWEEP_CHART_HEIGHT, SWEEP_CHART_MIN_WIDTH, count)));
    const legend = runLegend(sweeps.filter((s) => parts.some((p) => p.sweep === s))
      .map((s) => ({ run: s.label, color: context.runColor(s.run), dash: s.dash })));
    return section('model', 'Whole model', 'All weights move together from θ₀ to θ₁.', [legend, grid]);
  }

  /**
   * The per-layer section: one chart per metric, layers overlaid and coloured by depth.
   * @param {Part[]} parts
   * @param {string[]} metrics
   * @param {(layer: string) => boolean} keep
   */
  function layersSection(parts, metrics, keep) {
    const charts = metrics
      .map((m) => ({ m, data: layersChart(parts, m, keep) }))
      .filter((c) => c.data !== null);
    if (charts.length === 0) {
      return section('layers', 'One layer at a time', '', [stateMessage('empty', 'No layers match the filter.')]);
    }
    const first = /** @type {NonNullable<ReturnType<typeof layersChart>>} */ (charts[0].data);
    const legends = [depthLegend(first.layers)];
    if (parts.length > 1) {
      const dashes = first.dashed ? parts.map((p) => p.sweep.dash) : parts.map(() => []);
      legends.push(runLegend(parts.map((p, k) => ({ run: p.sweep.label, color: context.runColor(p.sweep.run), dash: dashes[k] }))));
    }
    const count = () => charts.length;
    const grid = el('div', { className: SWEEP_CSS.grid },
      charts.map((c) => chart(/** @type {any} */ (c.data), c.m, SWEEP_CHART_HEIGHT, SWEEP_CHART_MIN_WIDTH, count)));
    const hint = 'Only that layer moves from θ₀ to θ₁; every other layer keeps its θ₁. A layer whose '
      + 'curve stays flat can be put back to its start with little cost.';
    return section('layers', 'One layer at a time', hint, [...legends, grid]);
  }

  /**
   * The per-parameter section: one small multiple per swept scalar, titled with its travel.
   * @param {Part[]} parts
   * @param {string} metric
   * @param {(layer: string) => boolean} keep
   */
  function parametersSection(parts, metric, keep) {
    const { multiples, left } = parameterMultiples(parts, metric, keep, context.runColor);
    const single = parts.length === 1;
    const count = () => multiples.length;
    const cells = multiples.map((m) => {
      const travel = el('div', { className: SWEEP_CSS.travel, attrs: { 'data-travel': m.name } },
        m.travel.map((t) => el('span', {}, [
          ...(single ? [] : [chip(context.runColor(t.sweep.run))]),
          el('span', {
            text: single ? `|θ₁ − θ₀| = ${formatValue(t.travel)}` : `${t.sweep.label}: ${formatValue(t.travel)}`,
          }),
        ])));
      const box = el('div', { className: SWEEP_CSS.multiple, attrs: { 'data-curve': m.name } }, [
        el('div', { className: CSS.chartTitle, text: m.name, title: m.name }),
        travel,
      ]);
      box.append(chart(m, metric, SWEEP_MULTIPLE_HEIGHT, SWEEP_MULTIPLE_MIN_WIDTH, count, box));
      return box;
    });
    const nodes = cells.length ? [el('div', { className: SWEEP_CSS.multiples }, cells)] : [stateMessage('empty', 'No layers match the filter.')];
    if (left > 0) nodes.push(stateMessage('empty', `${left} more parameters are not drawn; narrow the layer filter to see them.`));
    const hint = `${metric} as one scalar weight moves from θ₀ to θ₁, everything else at θ₁; `
      + '|θ₁ − θ₀| is how far that scalar travelled in training.';
    return section('parameters', 'Single parameters', hint, nodes);
  }

  /** Asks for the robustness tables of the sweeps shown, with the threshold typed, and shows them. */
  async function showTables() {
    if (!shown) return;
    const { sweeps, keep, tables } = shown;
    const ticket = tableGuard.next();
    const withTable = sweeps.filter((s) => s.scopes.includes('robustness'));
    let payloads;
    try {
      payloads = await Promise.all(withTable.map((s) => robustnessSweep(context.model, s.run, s.step, local.threshold)));
    } catch (e) {
      if (!tableGuard.isCurrent(ticket)) return;
      tables.replaceChildren(stateMessage('error', e instanceof Error ? e.message : String(e)));
      return;
    }
    if (!tableGuard.isCurrent(ticket)) return;
    if (local.threshold === null && payloads.length) threshold.placeholder = formatValue(payloads[0].threshold);
    tables.replaceChildren(...payloads.map((p, k) => robustnessTable(withTable[k], p, keep, context.runColor(withTable[k].run))));
  }

  function applyThreshold() {
    const { value, error } = parseThreshold(threshold.value);
    threshold.classList.toggle(SWEEP_CSS.thresholdInvalid, error !== null);
    thresholdMessage.textContent = error ?? '';
    if (error !== null || value === local.threshold) return;
    local.threshold = value;
    showTables();
  }

  /**
   * Fetches and draws everything for a selection.
   * @param {State} state
   */
  async function refresh(state) {
    const ticket = guard.next();
    const runs = tickedRunsOrState(state, shell, {
      nothing: 'No layer dynamics logged yet.',
      clear: destroyPlots,
      showEmpty: (text) => showState('empty', text),
    });
    if (runs === null) return;
    shell.setBusy(true);
    await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    try {
      // The run list says how many sweeps each run has: a population without any asks nothing.
      const lists = await Promise.all(runs.map((r) => (r.sweeps === 0
        ? Promise.resolve({ run: r.run, sweeps: [] })
        : sweepList(context.model, r.run))));
      if (!guard.isCurrent(ticket)) return;
      offerSteps(sweepSteps(lists));
      const { sweeps, notes } = chooseSweeps(lists, local.step);
      if (sweeps.length === 0) {
        shell.setBusy(false);
        const nothing = 'No interpolation sweeps logged for these runs: log_interpolation_sweep(writer, '
          + 'interpolation_sweep(...), step) writes them.';
        showState('empty', local.step === LATEST || local.step === EVERY_STEP ? nothing : notes.join(' '));
        return;
      }
      const requests = sweeps.flatMap((sweep) => CURVE_SCOPES.filter((scope) => sweep.scopes.includes(scope))
        .map((scope) => curveSweep(context.model, sweep.run, sweep.step, scope).then((payload) => ({ sweep, payload }))));
      const parts = await Promise.all(requests);
      await yieldToBrowser();
      if (!guard.isCurrent(ticket)) return;
      shell.setBusy(false);
      draw(state, runs, sweeps, parts, notes);
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      destroyPlots();
      shell.showError(e);
    }
  }

  /**
   * @param {State} state
   * @param {import('../../core/api.js').RunInfo[]} runs
   * @param {ChosenSweep[]} sweeps
   * @param {Part[]} parts
   * @param {string[]} notes
   */
  function draw(state, runs, sweeps, parts, notes) {
    destroyPlots();
    const keep = layerPredicate(state.layerFilter, state.group, runs);
    /** @param {string} scope */
    const ofScope = (scope) => parts.filter((p) => p.payload.scope === scope);
    const metrics = sweepMetrics(parts.map((p) => p.payload));
    offerMetrics(metrics);
    const nodes = [];
    if (ofScope('model').length) nodes.push(modelSection(ofScope('model'), metrics, sweeps));
    if (ofScope('layers').length) nodes.push(layersSection(ofScope('layers'), metrics, keep));
    if (ofScope('parameters').length) nodes.push(parametersSection(ofScope('parameters'), local.metric, keep));
    const tables = el('div', { className: SWEEP_CSS.tables });
    if (sweeps.some((s) => s.scopes.includes('robustness'))) {
      const hint = 'Per layer, the change of each metric from the trained model when only that layer is put '
        + 'back to θ₀ (re-initialized) or drawn afresh from its initializer (re-randomized).';
      nodes.push(section('robustness', 'Robustness', hint, [tables]));
    }
    shell.show([controls, ...noteNodes(notes), ...nodes]);
    shown = { sweeps, keep, tables };
    showTables();
    // The charts were measured before they were attached; fit them to the final width.
    resize();
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  function update(state, changed) {
    current = state;
    if (!WATCHED.some((key) => changed.has(key))) return;
    refresh(state);
  }

  return { element: shell.element, update };
}
