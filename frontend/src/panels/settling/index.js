// @ts-check
/**
 * @file Panel: which layer settles first. Per run (or per seed group, on its mean curve when runs
 * are averaged over seeds) and per layer in depth order, the first step from which the chosen
 * metric stays below a fraction of that layer's peak; the earliest layer of each column stands out.
 * A last row gives the rank correlation between depth and settling step: the run's, or a seed
 * group's mean over its runs with the spread across them.
 */

import './style.css';

import { CSS, CURVE_MAX_POINTS, METRICS } from '../../core/constants.js';
import { layerSets } from '../../core/colors.js';
import { chip, el, stateMessage, yieldToBrowser } from '../../core/dom.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell } from '../../core/panel.js';
import { RunNotes } from '../../core/run_notes.js';
import { averageRuns, groupRunsBySeed, spreadOf } from '../../core/seed_average.js';
import { activeRuns, visibleLayers } from '../../core/selection.js';
import { earliestStep, parsePercent, settlingCorrelation, settlingStep } from './rule.js';
import { pickColumns, unionNames } from '../../core/shaping.js';
import { smoothSeries } from '../../core/smoothing.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('../../core/api.js').RunInfo} RunInfo
 * @typedef {import('./rule.js').Settling} Settling
 * @typedef {import('../../core/seed_average.js').Spread} Spread
 * @typedef {import('../../core/shaping.js').Columns} Columns
 * @typedef {{
 *   name: string, runs: string[], lastStep: number, byLayer: Map<string, Settling>,
 *   correlations: Array<number | null>, spread: Spread
 * }} SettlingColumn `correlations`: each run's rank correlation of depth and settling step;
 *   `spread`: their mean and spread.
 */

/** CSS class names; style.css beside this module defines each. */
const SETTLING_CSS = Object.freeze({
  controls: 'ld-settling-controls',
  invalid: 'ld-settling-invalid',
  message: 'ld-settling-message',
  scroll: 'ld-settling-scroll',
  table: 'ld-settling-table',
  cell: 'ld-settling-cell',
  track: 'ld-settling-track',
  bar: 'ld-settling-bar',
  pending: 'ld-settling-pending',
  earliest: 'ld-settling-earliest',
  correlation: 'ld-settling-correlation',
});

const WATCHED = ['runs', 'checked', 'runFilter', 'layerFilter', 'group', 'smoothing', 'layout', 'seedPattern', 'status'];

/** What the panel starts with: the metric the question is usually asked of, and 10% of peak. */
const DEFAULT_METRIC = 'rwc';
const DEFAULT_PERCENT = '10';

/** How a layer that has not settled is shown. */
const UNSETTLED_TEXT = Object.freeze({ 'not yet': 'not yet', 'never moved': 'never moved', 'no data': 'no data' });

/** What the correlation row means, on hover. */
const CORRELATION_TITLE = 'Spearman’s rank correlation between depth (input → output) and settling '
  + 'step, per run: above 0 the layers near the input settle first, below 0 those near the output. '
  + 'Layers not yet settled count as settling last; layers that never moved are left out.';

/**
 * A correlation as the row prints it: two decimals and a true minus sign.
 * @param {number} value
 */
function formatCorrelation(value) {
  return value.toFixed(2).replace('-', '\u2212');
}

/**
 * The text of a column's correlation cell: a run's ρ, or a group's mean ± sd (min to max, n).
 * @param {SettlingColumn} column
 * @returns {string}
 */
function correlationText(column) {
  const { spread } = column;
  if (spread.mean === null) return 'undefined';
  if (column.runs.length === 1) return `ρ = ${formatCorrelation(spread.mean)}`;
  const range = `${formatCorrelation(spread.low)} to ${formatCorrelation(spread.high)}`;
  return `ρ = ${formatCorrelation(spread.mean)} ± ${spread.std.toFixed(2)} sd (${range}, ${spread.count} of ${column.runs.length} runs)`;
}

/**
 * @param {string} text
 * @param {HTMLElement} control
 */
function labelled(text, control) {
  return el('label', { className: CSS.control }, [el('span', { text }), control]);
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createSettlingPanel(context) {
  const shell = new PanelShell(
    'settling',
    'Which layer settles first',
    'For each layer: the first logged step from which the metric (smoothed as in the toolbar) stays '
      + 'below the chosen percentage of that layer’s own peak through its last logged step; “not yet” '
      + 'while its latest value is still above. Averaged over seeds, the rule applies to each group’s '
      + 'mean curve. The earliest layer of each column is highlighted; bars show the step as a share '
      + 'of the run’s length. The last row is the rank correlation ρ between depth and settling step '
      + '(above 0: layers near the input settle first); averaged over seeds, its mean over the '
      + 'group’s runs ± one standard deviation, and its range.',
  );
  const guard = createRequestGuard();
  const local = { metric: DEFAULT_METRIC, fraction: Number(DEFAULT_PERCENT) / 100 };
  /** @type {State} */
  let current = context.selection.state;

  const metricSelect = el('select', { attrs: { 'aria-label': 'Metric that settles', 'data-control': 'settling-metric' } });
  metricSelect.addEventListener('change', () => {
    local.metric = metricSelect.value;
    refresh(current);
  });
  const percent = el('input', {
    attrs: {
      type: 'text', inputmode: 'decimal', size: '5', value: DEFAULT_PERCENT,
      'aria-label': '% of peak', 'data-control': 'settling-percent',
    },
  });
  const message = el('span', { className: SETTLING_CSS.message, attrs: { role: 'status' } });
  percent.addEventListener('change', () => {
    const parsed = parsePercent(percent.value);
    percent.classList.toggle(SETTLING_CSS.invalid, parsed.error !== null);
    message.textContent = parsed.error ?? '';
    if (parsed.fraction === null || parsed.fraction === local.fraction) return;
    local.fraction = parsed.fraction;
    refresh(current);
  });
  const controls = el('div', { className: SETTLING_CSS.controls }, [
    labelled('Metric', metricSelect),
    labelled('% of peak', percent),
    message,
  ]);

  /**
   * @param {'loading' | 'empty' | 'error'} kind
   * @param {string} text
   */
  function showState(kind, text) {
    shell.show([controls, stateMessage(kind, text)]);
  }

  /** @param {RunInfo[]} runs */
  function offerMetrics(runs) {
    const logged = new Set(runs.flatMap((r) => r.metrics));
    const offered = METRICS.filter((m) => logged.has(m.id));
    metricSelect.replaceChildren(...offered.map((m) => el('option', { text: m.label, attrs: { value: m.id } })));
    if (!offered.some((m) => m.id === local.metric) && offered.length) local.metric = offered[0].id;
    metricSelect.value = local.metric;
  }

  /**
   * Settling per layer of each column: a run, or a seed group's mean.
   * @param {State} state
   * @param {Array<{run: RunInfo, names: string[], columns: Columns}>} tables smoothed series.
   * @param {string[]} order layers in depth order.
   * @returns {SettlingColumn[]}
   */
  function settle(state, tables, order) {
    const groups = state.layout === 'averaged'
      ? groupRunsBySeed(tables.map((t) => t.run.run), state.seedPattern).groups
      : tables.map((t) => ({ name: t.run.run, runs: [t.run.run] }));
    const byRun = new Map(tables.map((t) => [t.run.run, t]));
    return groups.map((group) => {
      const members = group.runs.map((run) => /** @type {(typeof tables)[number]} */ (byRun.get(run)));
      if (members.length === 1) {
        // A run on its own: its curves are its "mean", so each layer is settled once.
        const [table] = members;
        const steps = table.columns[0];
        const settled = table.names.map((_, i) => settlingStep(steps, table.columns[i + 1], local.fraction));
        const index = new Map(table.names.map((name, i) => [name, i]));
        /** @type {Map<string, Settling>} */
        const byLayer = new Map();
        for (const name of order) {
          const i = index.get(name);
          if (i !== undefined) byLayer.set(name, settled[i]);
        }
        const lastStep = steps.length ? /** @type {number} */ (steps[steps.length - 1]) : 0;
        const correlations = [settlingCorrelation(settled)];
        return { name: group.name, runs: group.runs, lastStep, byLayer, correlations, spread: spreadOf(correlations) };
      }
      const averaged = averageRuns(members, order);
      /** @type {Map<string, Settling>} */
      const byLayer = new Map();
      for (const s of averaged.series) byLayer.set(s.name, settlingStep(averaged.steps, s.mean, local.fraction));
      const lastStep = averaged.steps.length ? averaged.steps[averaged.steps.length - 1] : 0;
      // Each run's correlation over its own layers in its own depth order, as the reader gives it.
      const correlations = members.map((t) => settlingCorrelation(
        t.names.map((_, i) => settlingStep(t.columns[0], t.columns[i + 1], local.fraction)),
      ));
      return { name: group.name, runs: group.runs, lastStep, byLayer, correlations, spread: spreadOf(correlations) };
    });
  }

  /**
   * @param {SettlingColumn[]} columns
   * @param {string[]} order
   * @param {number} set which set of runs sharing their layers the table shows (``data-set``).
   * @returns {HTMLElement}
   */
  function table(columns, order, set) {
    const head = el('tr', {}, [
      el('th', { text: 'Layer', attrs: { scope: 'col' } }),
      ...columns.map((c) => el('th', { title: c.runs.join(', '), attrs: { scope: 'col', 'data-column': c.name } }, [
        chip(context.runColor(c.name)),
        el('span', { text: c.runs.length > 1 ? `${c.name} (mean of ${c.runs.length})` : c.name }),
      ])),
    ]);
    const earliest = columns.map((c) => earliestStep([...c.byLayer.values()]));
    const rows = order.map((layer) => el('tr', { attrs: { 'data-layer': layer } }, [
      el('th', { text: layer, title: layer, attrs: { scope: 'row' } }),
      ...columns.map((c, k) => {
        const result = c.byLayer.get(layer);
        if (!result) return el('td', { text: '—', title: `${c.name} has no layer ${layer}` });
        const first = result.state === 'settled' && result.step === earliest[k];
        const bar = el('div', { className: SETTLING_CSS.bar });
        const share = result.state === 'settled' && c.lastStep > 0 ? result.step / c.lastStep : result.state === 'settled' ? 0 : 1;
        bar.style.width = `${(share * 100).toFixed(1)}%`;
        if (result.state !== 'settled') bar.style.background = 'transparent';
        const text = result.state === 'settled' ? `step ${result.step}` : UNSETTLED_TEXT[result.state];
        /** @type {string[]} */
        const classes = [SETTLING_CSS.cell];
        if (first) classes.push(SETTLING_CSS.earliest);
        if (result.state !== 'settled') classes.push(SETTLING_CSS.pending);
        /** @type {Record<string, string>} */
        const attrs = { 'data-state': result.state };
        if (result.state === 'settled') attrs['data-step'] = String(result.step);
        if (first) attrs['data-earliest'] = '';
        return el('td', {}, [
          el('div', { className: classes.join(' '), attrs }, [
            el('div', { className: SETTLING_CSS.track, attrs: { 'aria-hidden': 'true' } }, [bar]),
            el('span', { text }),
          ]),
        ]);
      }),
    ]));
    const correlation = el('tr', { className: SETTLING_CSS.correlation }, [
      el('th', { text: 'ρ depth ~ step', title: CORRELATION_TITLE, attrs: { scope: 'row' } }),
      ...columns.map((c) => {
        /** @type {Record<string, string>} */
        const attrs = { 'data-column': c.name, 'data-count': String(c.spread.count) };
        if (c.spread.mean !== null) {
          Object.assign(attrs, {
            'data-correlation': String(c.spread.mean), 'data-sd': String(c.spread.std),
            'data-low': String(c.spread.low), 'data-high': String(c.spread.high),
          });
        }
        const title = c.runs.map((run, k) => {
          const value = c.correlations[k];
          return `${run}: ${value === null ? 'undefined' : formatCorrelation(value)}`;
        }).join('\n');
        return el('td', { text: correlationText(c), title, attrs });
      }),
    ]);
    return el('div', { className: SETTLING_CSS.scroll }, [
      el('table', { className: SETTLING_CSS.table, attrs: { 'data-set': String(set) } }, [
        el('thead', {}, [head]), el('tbody', {}, rows), el('tfoot', {}, [correlation]),
      ]),
    ]);
  }

  /** @param {State} state */
  async function refresh(state) {
    const ticket = guard.next();
    if (state.status === 'loading') {
      shell.setBusy(true);
      return;
    }
    if (state.status === 'error') {
      shell.showError(state.error);
      return;
    }
    const runs = activeRuns(state);
    offerMetrics(runs);
    if (runs.length === 0) {
      showState('empty', state.runs.length ? 'No run selected: tick runs on the left.' : 'No layer dynamics logged yet.');
      return;
    }
    const left = new RunNotes();
    const usable = runs.filter((r) => {
      if (r.metrics.includes(local.metric) && r.layers.length) return true;
      left.add(r.run, `did not log ${local.metric}`);
      return false;
    });
    const metric = local.metric;
    const fraction = local.fraction;
    shell.setBusy(true);
    await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    let payloads;
    try {
      // The curves panel asks for the same series, so the model's cache answers most of these.
      payloads = await Promise.all(usable.map((r) => context.model.series(r.run, metric, 'layers', CURVE_MAX_POINTS)));
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      shell.setBusy(false);
      showState('error', e instanceof Error ? e.message : String(e));
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket) || metric !== local.metric || fraction !== local.fraction) return;
    shell.setBusy(false);
    const keep = visibleLayers(state, usable);
    const order = unionNames(usable.map((r) => r.layers)).filter((n) => keep.has(n));
    /** @type {Array<{run: RunInfo, names: string[], columns: Columns}>} */
    const tables = [];
    for (const [r, payload] of payloads.entries()) {
      if (payload.total_steps === 0) {
        left.add(usable[r].run, 'has nothing logged yet', 'have nothing logged yet');
        continue;
      }
      const indices = [];
      for (let i = 0; i < payload.names.length; i++) if (keep.has(payload.names[i])) indices.push(i);
      const picked = pickColumns(payload.columns, indices);
      const smoothed = picked.slice(1).map((v) => (state.smoothing > 0 ? smoothSeries(v, state.smoothing) : v));
      tables.push({ run: usable[r], names: indices.map((i) => payload.names[i]), columns: [picked[0], ...smoothed] });
    }
    const noteNodes = left.lines().map((text) => stateMessage('empty', text));
    if (tables.length === 0 || order.length === 0) {
      shell.show([controls, ...noteNodes, order.length ? null : stateMessage('empty', 'No layers match the filter.')]);
      return;
    }
    // One table per set of runs that share their layers: runs of different models side by side
    // would fill most cells with layers they do not have.
    const blocks = layerSets(tables.map((t) => ({ run: t.run.run, names: t.names })))
      .sets.filter((set) => set.names.length)
      .map((set, k) => {
        const members = tables.filter((t) => set.runs.includes(t.run.run));
        return table(settle(state, members, set.names), set.names, k);
      });
    shell.show([controls, ...noteNodes, ...blocks]);
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
