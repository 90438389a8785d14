// @ts-check
/**
 * @file The curves view shared by the per-layer and the group panels: one metric against step,
 * one line per series coloured by depth, runs overlaid (a dash per run), as small multiples, or
 * averaged over seeds (a chart per group of runs: the mean as a line, min to max shaded).
 */

import {
  CHART_HEIGHT, CSS, CURVE_MAX_POINTS, DASHED_LINES_MAX, METRICS, MULTIPLE_HEIGHT, RUN_DASHES,
} from '../../core/constants.js';
import { layerSets } from '../../core/colors.js';
import { layerLabels } from '../../core/names.js';
import { averageRuns, bandEdges, groupRunsBySeed } from '../../core/seed_average.js';
import { createCurveChart } from '../../charts/curve_chart.js';
import { el, chip, yieldToBrowser } from '../../core/dom.js';
import { depthLegend, runLegend } from '../../core/legend.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell, firstRuns, tickedRunsOrState } from '../../core/panel.js';
import { RunNotes } from '../../core/run_notes.js';
import { isGap, joinColumns, pickColumns, positiveOnly, unionNames } from '../../core/shaping.js';
import { smoothSeries } from '../../core/smoothing.js';

/**
 * @typedef {import('../../core/panel.js').PanelContext} PanelContext
 * @typedef {import('../../core/panel.js').Panel} Panel
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('../../core/api.js').RunInfo} RunInfo
 * @typedef {import('../../charts/curve_chart.js').Line} Line
 * @typedef {import('../../charts/curve_chart.js').Band} Band
 * @typedef {{
 *   id: string, title: string, hint: string, target: 'layers' | 'groups',
 *   seriesOf: (run: RunInfo) => string[],
 *   keep: (state: State, runs: RunInfo[]) => Set<string>,
 *   nothing: string, leads?: boolean
 * }} CurvesConfig `leads`: this panel draws first; the others wait for it (`context.firstPaint`).
 * @typedef {{
 *   name: string, runs: string[], columns: Columns, lines: Line[], bands: Band[]
 * }} RunCurves one chart's worth: a run's lines, or a seed group's means (`runs` lists its runs).
 * @typedef {import('../../core/shaping.js').Column} Column
 * @typedef {import('../../core/shaping.js').Columns} Columns
 * @typedef {ReturnType<typeof layerSets> & {labelOf: (run: string, name: string) => string}} Palette
 */

/** State fields this view draws from. */
const WATCHED = [
  'runs', 'checked', 'runFilter', 'layerFilter', 'group', 'metric', 'logY', 'smoothing', 'layout', 'seedPattern', 'band',
  'status',
];

/** Fewest points a zoomed chart asks for, however narrow it is. */
const ZOOM_MIN_POINTS = 200;

/** Most lines a seed group's chart shades a spread for: past that the bands would hide the lines. */
const BANDED_LINES_MAX = 48;

/**
 * Says how an averaged chart reads; the readout's n is the runs with a value at that step.
 * @param {import('../../core/seed_average.js').BandKind} band
 */
function spreadLegend(band) {
  const shaded = band === 'std' ? 'mean ± one standard deviation of the runs' : 'min to max across them';
  return `Line: mean over the group’s runs · shaded: ${shaded} · n in the readout: runs with a value at that step`;
}

/**
 * @param {string} metric
 * @returns {string}
 */
export function metricLabel(metric) {
  return METRICS.find((m) => m.id === metric)?.label ?? metric;
}

/**
 * Whether a column has any value to draw.
 * @param {Column} column
 */
function hasValue(column) {
  for (let i = 0; i < column.length; i++) if (!isGap(column[i])) return true;
  return false;
}

/**
 * A series as drawn: on a log axis, without the values it has no place for.
 * @param {State} state
 * @param {Column} values
 */
function display(state, values) {
  return state.logY ? positiveOnly(values) : values;
}

/**
 * Creates a curves panel.
 * @param {PanelContext} context
 * @param {CurvesConfig} config
 * @returns {Panel}
 */
export function createCurvesPanel(context, config) {
  const shell = new PanelShell(config.id, config.title, config.hint);
  const guard = createRequestGuard();
  /** @type {Array<{plot: import('uplot'), height: number}>} */
  let plots = [];
  let columnsPerRow = 1;

  const resize = () => {
    const width = chartWidth();
    for (const { plot, height } of plots) plot.setSize({ width, height });
  };
  new ResizeObserver(() => {
    if (plots.length && Math.abs(plots[0].plot.width - chartWidth()) > 1) resize();
  }).observe(shell.body);

  function chartWidth() {
    const available = Math.max(240, shell.body.clientWidth - 4);
    return Math.floor((available - (columnsPerRow - 1) * 16) / columnsPerRow);
  }

  function destroyPlots() {
    for (const { plot } of plots) plot.destroy();
    plots = [];
  }

  /**
   * One chart per seed group: each series' mean over the group's runs, its min to max shaded.
   * @param {State} state
   * @param {Array<{run: RunInfo, names: string[], columns: Columns}>} kept runs with something to draw.
   * @param {string[]} order series in depth order.
   * @param {(run: string, name: string) => string} colours
   * @returns {RunCurves[]}
   */
  function averaged(state, kept, order, colours) {
    const byRun = new Map(kept.map((k) => [k.run.run, k]));
    const { groups } = groupRunsBySeed(kept.map((k) => k.run.run), state.seedPattern);
    return groups.map((group) => {
      const tables = group.runs.map((run) => /** @type {{names: string[], columns: Columns}} */ (byRun.get(run)));
      const table = averageRuns(tables, order);
      const lines = table.series.map((s) => ({
        series: s.name, run: group.name, color: colours(group.runs[0], s.name), dash: [], count: s.count,
      }));
      const banded = group.runs.length > 1 && lines.length <= BANDED_LINES_MAX;
      const bands = banded
        ? table.series.map((s, line) => {
          const { lower, upper } = bandEdges(s, state.band, state.logY);
          return { line, lower: display(state, lower), upper: display(state, upper) };
        })
        : [];
      return { name: group.name, runs: group.runs, columns: [table.steps, ...table.series.map((s) => display(state, s.mean))], lines, bands };
    });
  }

  /**
   * @param {State} state
   * @param {RunInfo[]} runs
   * @param {import('../../core/api.js').SeriesPayload[]} payloads
   * @returns {{curves: RunCurves[], notes: string[], order: string[], palette: Palette}}
   */
  function shape(state, runs, payloads) {
    const keep = config.keep(state, runs);
    const palette = { ...layerSets(runs.map((r) => ({ run: r.run, names: config.seriesOf(r) }))), labelOf: layerLabels(runs) };
    const colours = palette.colorOf;
    const order = unionNames(runs.map(config.seriesOf)).filter((n) => keep.has(n));
    const left = new RunNotes();
    /** @type {Array<{run: RunInfo, names: string[], columns: Columns}>} */
    const kept = [];
    payloads.forEach((payload, r) => {
      const run = runs[r];
      if (payload.total_steps === 0) {
        left.add(run.run, 'has nothing logged yet', 'have nothing logged yet');
        return;
      }
      const indices = [];
      for (let i = 0; i < payload.names.length; i++) if (keep.has(payload.names[i])) indices.push(i);
      if (indices.length === 0) return;
      const picked = pickColumns(payload.columns, indices);
      // Smoothing comes before averaging (each run's own curve is smoothed), the log axis's
      // cleaning after it (a zero still counts towards a mean).
      /** @type {Columns} */
      const columns = [picked[0]];
      for (let c = 1; c < picked.length; c++) {
        columns.push(state.smoothing > 0 ? smoothSeries(picked[c], state.smoothing) : picked[c]);
      }
      if (!columns.slice(1).some((values) => hasValue(display(state, values)))) {
        const what = `no ${state.logY ? 'positive ' : ''}values of ${state.metric} for these ${config.target}`;
        left.add(run.run, `has ${what}`, `have ${what}`);
        return;
      }
      kept.push({ run, names: indices.map((i) => payload.names[i]), columns });
    });
    const notes = left.lines();
    if (state.layout === 'averaged') return { curves: averaged(state, kept, order, colours), notes, order, palette };
    if (state.layout === 'multiples') {
      const { shown, note } = firstRuns(kept);
      if (note) notes.push(note);
      kept.splice(shown.length);
    }
    const lineCount = kept.reduce((n, k) => n + k.names.length, 0);
    // Dashed strokes cost many times a solid one to rasterise; past a few dozen lines they would
    // stall the page, and so many lines are told apart by run in small multiples anyway.
    const dashed = state.layout === 'overlay' && kept.length > 1 && lineCount <= DASHED_LINES_MAX;
    /** @type {RunCurves[]} */
    const curves = kept.map(({ run, names, columns }, k) => {
      const dash = dashed ? RUN_DASHES[k % RUN_DASHES.length] : [];
      const lines = names.map((name) => ({ series: name, run: run.run, color: colours(run.run, name), dash }));
      return { name: run.run, runs: [run.run], columns: [columns[0], ...columns.slice(1).map((values) => display(state, values))], lines, bands: [] };
    });
    if (state.layout === 'overlay' && kept.length > 1 && !dashed) {
      notes.push(`${lineCount} lines are too many to tell runs apart by dash: pick “small multiples” to see each run on its own.`);
    }
    return { curves, notes, order, palette };
  }

  /**
   * Zooming fetches finer data: the runs of a chart again over the steps dragged over, at about
   * two points per pixel, so a range of up to the chart's width in steps shows every logged step.
   * @param {import('../../charts/curve_chart.js').CurveChart} chart
   * @param {State} state
   * @param {RunInfo[]} chartRuns
   * @param {string | null} curveName the curve a per-run or per-group chart draws; `null` for the
   *   overlaid chart of every run.
   * @returns {{onZoom: (min: number, max: number) => void, onReset: () => void}}
   */
  function zoomable(chart, state, chartRuns, curveName) {
    let latest = 0;
    /** @type {{columns: Columns, bands: Band[]} | null} */
    let whole = null;
    const pick = (/** @type {RunCurves[]} */ curves) => {
      if (curveName === null) return { columns: joinColumns(curves.map((c) => c.columns)), bands: [] };
      const found = curves.find((c) => c.name === curveName);
      return found ? { columns: found.columns, bands: found.bands } : null;
    };
    return {
      onZoom: async (min, max) => {
        const ticket = ++latest;
        const range = { start: Math.max(0, Math.floor(min)), end: Math.max(0, Math.ceil(max)) };
        const points = Math.max(ZOOM_MIN_POINTS, 2 * Math.round(chart.plot.width));
        let payloads;
        try {
          payloads = await Promise.all(
            chartRuns.map((r) => context.model.series(r.run, state.metric, config.target, points, range)),
          );
        } catch (e) {
          return; // the chart keeps the coarser points it has
        }
        if (ticket !== latest || !plots.some((p) => p.plot === chart.plot)) return;
        const finer = pick(shape(state, chartRuns, payloads).curves);
        if (finer === null) return;
        if (whole === null) whole = pick(shape(state, chartRuns, lastPayloads(chartRuns)).curves);
        chart.setData(finer.columns, finer.bands, false);
      },
      onReset: () => {
        latest++;
        if (whole !== null) chart.setData(whole.columns, whole.bands, true);
      },
    };
  }

  /** @type {Map<string, import('../../core/api.js').SeriesPayload>} */
  let drawnPayloads = new Map();

  /**
   * The payloads the charts were drawn from, for some runs.
   * @param {RunInfo[]} chartRuns
   */
  function lastPayloads(chartRuns) {
    return chartRuns.map((r) => /** @type {import('../../core/api.js').SeriesPayload} */ (drawnPayloads.get(r.run)));
  }

  /**
   * @param {State} state
   * @param {RunCurves[]} curves
   * @param {string[]} order
   * @param {Palette} palette
   * @param {string[]} notes
   * @param {RunInfo[]} usable the runs the curves were shaped from.
   */
  function draw(state, curves, order, palette, notes, usable) {
    destroyPlots();
    const yLabel = metricLabel(state.metric);
    /** @type {Node[]} */
    const nodes = [];
    // One depth legend per set of runs that share their layers; a single set needs no caption.
    const shown = new Set(order);
    for (const set of palette.sets) {
      const layers = set.names.filter((name) => shown.has(name)).map((name) => ({
        name, color: /** @type {string} */ (set.colors.get(name)), label: palette.labelOf(set.runs[0], name),
      }));
      if (layers.length) nodes.push(depthLegend(layers, palette.sets.length > 1 ? set.runs : undefined));
    }
    const averagedMode = state.layout === 'averaged';
    if (averagedMode) {
      nodes.push(el('div', { className: CSS.legend, attrs: { 'data-legend': 'spread', 'data-band': state.band } }, [
        el('span', { className: CSS.legendEntry, text: spreadLegend(state.band) }),
      ]));
    }
    const multiples = (state.layout === 'multiples' && curves.length > 1) || averagedMode;
    const height = averagedMode && curves.length === 1 ? CHART_HEIGHT : MULTIPLE_HEIGHT;
    columnsPerRow = multiples && shell.body.clientWidth > 900 ? 2 : 1;
    const container = el('div', { className: multiples ? `${CSS.charts} ${CSS.chartsMultiples}` : CSS.charts });
    const syncKey = `${config.id}-cursor`;
    if (!multiples && curves.length > 0) {
      if (curves.length > 1) {
        nodes.push(
          runLegend(curves.map((c) => ({ run: c.name, color: context.runColor(c.name), dash: c.lines[0].dash }))),
        );
      }
      const columns = joinColumns(curves.map((c) => c.columns));
      const spanGaps = curves.length > 1 && columns[0] !== curves[0].columns[0];
      /** @type {{onZoom: (min: number, max: number) => void, onReset: () => void}} */
      const zoom = { onZoom: () => {}, onReset: () => {} };
      const chart = createCurveChart({
        columns, lines: curves.flatMap((c) => c.lines), width: chartWidth(), height: CHART_HEIGHT,
        logY: state.logY, yLabel, syncKey, spanGaps, showRun: curves.length > 1,
        onZoom: (min, max) => zoom.onZoom(min, max), onReset: () => zoom.onReset(),
      });
      const drawn = new Set(curves.flatMap((c) => c.runs));
      Object.assign(zoom, zoomable(chart, state, usable.filter((r) => drawn.has(r.run)), null));
      plots.push({ plot: chart.plot, height: CHART_HEIGHT });
      container.append(chart.element);
    } else {
      for (const c of curves) {
        /** @type {{onZoom: (min: number, max: number) => void, onReset: () => void}} */
        const zoom = { onZoom: () => {}, onReset: () => {} };
        const chart = createCurveChart({
          columns: c.columns, lines: c.lines, width: chartWidth(), height,
          logY: state.logY, yLabel, syncKey, spanGaps: false, showRun: false, bands: c.bands,
          onZoom: (min, max) => zoom.onZoom(min, max), onReset: () => zoom.onReset(),
        });
        const members = new Set(c.runs);
        Object.assign(zoom, zoomable(chart, state, usable.filter((r) => members.has(r.run)), c.name));
        plots.push({ plot: chart.plot, height });
        const text = averagedMode ? `${c.name} · mean of ${c.runs.length} run${c.runs.length === 1 ? '' : 's'}` : c.name;
        const title = el('div', { className: CSS.chartTitle, title: c.runs.join(', ') }, [
          chip(context.runColor(c.name)), el('span', { text }),
        ]);
        /** @type {Record<string, string>} */
        const attrs = averagedMode ? { 'data-seed-group': c.name } : { 'data-run': c.name };
        container.append(el('div', { attrs }, [title, chart.element]));
      }
    }
    const noteNodes = notes.map((text) => el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text, attrs: { role: 'status' } }));
    shell.show([...nodes, ...noteNodes, container]);
    // The container was measured before it was attached; fit the charts to the final width.
    resize();
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  async function update(state, changed) {
    if (!WATCHED.some((key) => changed.has(key))) return;
    const ticket = guard.next();
    // A new cycle: whatever this update ends in, it decides when the others may fetch.
    if (config.leads) context.firstPaint.open();
    const runs = tickedRunsOrState(state, shell, { nothing: config.nothing, clear: destroyPlots });
    if (runs === null) return;
    const left = new RunNotes();
    const usable = runs.filter((r) => {
      if (!r.metrics.includes(state.metric)) {
        left.add(r.run, `did not log ${state.metric}`);
        return false;
      }
      if (config.seriesOf(r).length === 0) {
        left.add(r.run, `has no ${config.target} to show`, `have no ${config.target} to show`);
        return false;
      }
      return true;
    });
    const notes = left.lines();
    shell.setBusy(true);
    if (config.leads) context.firstPaint.close();
    else await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    let payloads;
    try {
      payloads = await Promise.all(
        usable.map((r) => context.model.series(r.run, state.metric, config.target, CURVE_MAX_POINTS)),
      );
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      if (config.leads) context.firstPaint.open();
      destroyPlots();
      shell.showError(e);
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket)) return;
    shell.setBusy(false);
    drawnPayloads = new Map(usable.map((r, i) => [r.run, payloads[i]]));
    const shaped = shape(state, usable, payloads);
    if (shaped.curves.length === 0) {
      if (config.leads) context.firstPaint.open();
      destroyPlots();
      const why = notes.concat(shaped.notes);
      shell.showState('empty', why.length ? why.join(' ') : `No ${config.target} match the filter.`);
      return;
    }
    draw(state, shaped.curves, shaped.order, shaped.palette, notes.concat(shaped.notes), usable);
    // Let the other panels fetch once the browser has painted these charts: the frame after the
    // next one, since work started in the next frame's callbacks would run before its paint.
    if (config.leads) {
      requestAnimationFrame(() => requestAnimationFrame(() => {
        if (guard.isCurrent(ticket)) context.firstPaint.open();
      }));
    }
  }

  return { element: shell.element, update };
}
