// @ts-check
/**
 * @file Pure shaping for the interpolation-sweeps panel: which sweeps to draw, their curves put on
 * one alpha column, per-parameter small multiples, and the robustness table's rows. Nothing here
 * touches the DOM, so all of it is tested with `node --test`.
 *
 * Payloads are those of the `sweeps` and `sweep` routes (tb_layerdyn/plugin/http_api.md, section
 * "Sweeps"): `columns[metric]` is uPlot's layout, `[alphas, curve 1, curve 2, ...]`.
 */

import { layerColors } from '../../core/colors.js';
import { DASHED_LINES_MAX, RUN_DASHES } from '../../core/constants.js';
import { formatValue } from '../../core/scales.js';
import { compileFilter, joinColumns, unionNames } from '../../core/shaping.js';
import { EVERY_STEP, LATEST, MULTIPLES_MAX, SWEEPS_MAX } from './constants.js';

/**
 * @typedef {Array<ReadonlyArray<number | null>>} Columns
 * @typedef {{step: number, scope: string, curves?: number, alphas?: number, layers?: number}} SweepEntry
 * @typedef {{run: string, sweeps: SweepEntry[]}} SweepList
 * @typedef {{layer: string, parameter: string, index: number[]}} ParameterInfo
 * @typedef {{
 *   run: string, step: number, scope: string, metrics: string[], alphas: number[], curves: string[],
 *   travel: Array<number | null>, columns: Record<string, Columns>, parameters?: ParameterInfo[]
 * }} CurveSweep
 * @typedef {{
 *   run: string, step: number, scope: string, layers: string[], metrics: string[],
 *   end: Record<string, number | null>, reinitialized: Record<string, Array<number | null>>,
 *   rerandomized: Record<string, Array<number | null>>, threshold: number, label_metric: string,
 *   labels: string[]
 * }} RobustnessSweep
 * @typedef {{run: string, step: number, scopes: string[], label: string, dash: readonly number[]}} ChosenSweep
 * @typedef {{series: string, run: string, color: string, dash: readonly number[]}} Line
 */

/**
 * The steps at which any of some runs took a sweep, ascending.
 * @param {ReadonlyArray<SweepList>} lists
 * @returns {number[]}
 */
export function sweepSteps(lists) {
  const steps = new Set(lists.flatMap((l) => l.sweeps.map((s) => s.step)));
  return [...steps].sort((a, b) => a - b);
}

/** Runs a note names one by one; past that it counts them. */
const NOTE_RUNS_MAX = 6;

/**
 * The sweeps to draw: per run its latest one, every one, or the one at a chosen step. Within a run
 * the latest comes first, so it gets the solid line and older steps the dashes.
 * @param {ReadonlyArray<SweepList>} lists the `sweeps` answers of the runs shown, in run order.
 * @param {string | number} choice `LATEST`, `EVERY_STEP` or a training step.
 * @param {number} [max] most sweeps returned; the oldest steps are dropped first.
 * @returns {{sweeps: ChosenSweep[], notes: string[]}} `notes` says which runs have nothing to show.
 */
export function chooseSweeps(lists, choice, max = SWEEPS_MAX) {
  /** @type {string[]} */
  const notes = [];
  /** @type {string[]} */
  const without = [];
  /** @type {Array<Array<{run: string, step: number, scopes: string[]}>>} */
  const perRun = [];
  for (const list of lists) {
    /** @type {Map<number, string[]>} */
    const byStep = new Map();
    for (const s of list.sweeps) {
      const scopes = byStep.get(s.step) ?? [];
      if (!scopes.includes(s.scope)) scopes.push(s.scope);
      byStep.set(s.step, scopes);
    }
    if (byStep.size === 0) {
      without.push(list.run);
      continue;
    }
    const descending = [...byStep.keys()].sort((a, b) => b - a);
    let steps = descending;
    if (choice === LATEST) steps = descending.slice(0, 1);
    else if (choice !== EVERY_STEP) {
      steps = descending.filter((s) => s === Number(choice));
      if (steps.length === 0) notes.push(`Run ${list.run} took no sweep at step ${choice}.`);
    }
    perRun.push(steps.map((step) => ({ run: list.run, step, scopes: /** @type {string[]} */ (byStep.get(step)) })));
  }
  if (without.length) {
    // A population names a few runs and counts the others.
    const named = without.length > NOTE_RUNS_MAX ? without.slice(0, NOTE_RUNS_MAX - 1) : without;
    const more = without.length - named.length;
    notes.push(`No sweeps logged in ${without.length === 1 ? 'run' : 'runs'} ${named.join(', ')}`
      + `${more ? ` and ${more} more` : ''}.`);
  }
  // Take the newest sweep of every run, then the next newest, and so on, so a cap leaves out old
  // steps rather than whole runs.
  /** @type {Array<{run: string, step: number, scopes: string[]}>} */
  const kept = [];
  for (let depth = 0; kept.length < max && perRun.some((r) => r.length > depth); depth++) {
    for (const r of perRun) if (r.length > depth && kept.length < max) kept.push(r[depth]);
  }
  const total = perRun.reduce((n, r) => n + r.length, 0);
  if (total > kept.length) notes.push(`Showing the ${kept.length} most recent of ${total} sweeps.`);
  const order = lists.map((l) => l.run);
  kept.sort((a, b) => order.indexOf(a.run) - order.indexOf(b.run) || b.step - a.step);
  const sweeps = kept.map((s, k) => ({
    ...s,
    label: `${s.run} @ step ${s.step}`,
    dash: RUN_DASHES[k % RUN_DASHES.length],
  }));
  return { sweeps, notes };
}

/**
 * The columns of a sweep with alphas in ascending order, as a chart's x axis needs; the same
 * object when they already are (the usual case).
 * @param {Columns} columns `[alphas, ...curves]`.
 * @returns {Columns}
 */
export function ascendingAlphas(columns) {
  const alphas = columns[0];
  let sorted = true;
  for (let i = 1; i < alphas.length; i++) {
    if (/** @type {number} */ (alphas[i]) < /** @type {number} */ (alphas[i - 1])) {
      sorted = false;
      break;
    }
  }
  if (sorted) return columns;
  const order = alphas.map((_, i) => i).sort((a, b) => /** @type {number} */ (alphas[a]) - /** @type {number} */ (alphas[b]));
  return columns.map((column) => order.map((i) => column[i]));
}

/**
 * A predicate for the layers that pass the layer filter and the chosen group.
 * @param {string} filterText the layer filter (a regex, empty for all).
 * @param {string} group a group name, empty for all layers.
 * @param {ReadonlyArray<{groups: ReadonlyArray<{name: string, members: string[]}>}>} runs
 * @returns {(layer: string) => boolean}
 */
export function layerPredicate(filterText, group, runs) {
  const { regex } = compileFilter(filterText);
  const members = group
    ? new Set(runs.flatMap((r) => r.groups.filter((g) => g.name === group).flatMap((g) => g.members)))
    : null;
  return (layer) => (!members || members.has(layer)) && (!regex || regex.test(layer));
}

/**
 * The metrics of some sweeps, in first-seen order.
 * @param {ReadonlyArray<{metrics: string[]}>} payloads
 * @returns {string[]}
 */
export function sweepMetrics(payloads) {
  return unionNames(payloads.map((p) => p.metrics));
}

/**
 * The whole-model curve of several sweeps in one chart for one metric: a line per sweep in its
 * run's colour and its own dash.
 * @param {ReadonlyArray<{sweep: ChosenSweep, payload: CurveSweep}>} parts
 * @param {string} metric
 * @param {(run: string) => string} runColor
 * @returns {{columns: Columns, lines: Line[]} | null} `null` when no sweep has the metric.
 */
export function modelChart(parts, metric, runColor) {
  const withMetric = parts.filter((p) => p.payload.columns[metric]);
  if (withMetric.length === 0) return null;
  const tables = withMetric.map((p) => ascendingAlphas(p.payload.columns[metric]));
  const lines = withMetric.flatMap((p) => p.payload.curves.map((curve) => ({
    series: curve, run: p.sweep.label, color: runColor(p.sweep.run), dash: p.sweep.dash,
  })));
  return { columns: /** @type {Columns} */ (joinColumns(tables)), lines };
}

/**
 * The per-layer curves of several sweeps in one chart for one metric: layers coloured by depth
 * (each run's own depth order), a dash per sweep.
 * @param {ReadonlyArray<{sweep: ChosenSweep, payload: CurveSweep}>} parts
 * @param {string} metric
 * @param {(layer: string) => boolean} keep which layers to draw.
 * @returns {{columns: Columns, lines: Line[], layers: Array<{name: string, color: string}>, dashed: boolean} | null}
 *   `null` when nothing is left to draw; `dashed` is false when there are too many lines to
 *   dash (see DASHED_LINES_MAX), and every line is solid then.
 */
export function layersChart(parts, metric, keep) {
  const colours = layerColors(parts.map((p) => p.payload.curves));
  /** @type {Columns[]} */
  const tables = [];
  /** @type {Array<{sweep: ChosenSweep, names: string[]}>} */
  const kept = [];
  for (const { sweep, payload } of parts) {
    const columns = payload.columns[metric];
    if (!columns) continue;
    const indices = payload.curves.map((_, i) => i).filter((i) => keep(payload.curves[i]));
    if (indices.length === 0) continue;
    tables.push(ascendingAlphas([columns[0], ...indices.map((i) => columns[i + 1])]));
    kept.push({ sweep, names: indices.map((i) => payload.curves[i]) });
  }
  if (kept.length === 0) return null;
  const count = kept.reduce((n, k) => n + k.names.length, 0);
  const dashed = kept.length > 1 && count <= DASHED_LINES_MAX;
  const lines = kept.flatMap(({ sweep, names }) => names.map((name) => ({
    series: name, run: sweep.label, color: colours.get(name) ?? '#757575', dash: dashed ? sweep.dash : [],
  })));
  const layers = unionNames(kept.map((k) => k.names)).map((name) => ({ name, color: colours.get(name) ?? '#757575' }));
  return { columns: /** @type {Columns} */ (joinColumns(tables)), lines, layers, dashed };
}

/**
 * One small multiple per swept scalar parameter, for one metric: each holds that scalar's curve
 * from every sweep that has it (the same seed picks the same scalars at every step), and its
 * travel `|theta1 - theta0|` per sweep.
 * @param {ReadonlyArray<{sweep: ChosenSweep, payload: CurveSweep}>} parts
 * @param {string} metric
 * @param {(layer: string) => boolean} keep which layers' parameters to draw.
 * @param {(run: string) => string} runColor
 * @param {number} [max] most multiples returned.
 * @returns {{multiples: Array<{name: string, layer: string, columns: Columns, lines: Line[],
 *   travel: Array<{sweep: ChosenSweep, travel: number | null}>}>, left: number}}
 *   `left` counts the multiples beyond `max`.
 */
export function parameterMultiples(parts, metric, keep, runColor, max = MULTIPLES_MAX) {
  /** @type {Map<string, {layer: string, members: Array<{sweep: ChosenSweep, column: ReadonlyArray<number | null>, alphas: ReadonlyArray<number | null>, travel: number | null}>}>} */
  const byName = new Map();
  for (const { sweep, payload } of parts) {
    const columns = payload.columns[metric];
    if (!columns) continue;
    payload.curves.forEach((name, i) => {
      const layer = payload.parameters?.[i]?.layer ?? name;
      if (!keep(layer)) return;
      const entry = byName.get(name) ?? { layer, members: [] };
      entry.members.push({ sweep, column: columns[i + 1], alphas: columns[0], travel: payload.travel[i] ?? null });
      byName.set(name, entry);
    });
  }
  const names = [...byName.keys()];
  const multiples = names.slice(0, max).map((name) => {
    const { layer, members } = /** @type {{layer: string, members: any[]}} */ (byName.get(name));
    const tables = members.map((m) => ascendingAlphas([m.alphas, m.column]));
    return {
      name,
      layer,
      columns: /** @type {Columns} */ (joinColumns(tables)),
      lines: members.map((m) => ({ series: name, run: m.sweep.label, color: runColor(m.sweep.run), dash: m.sweep.dash })),
      travel: members.map((m) => ({ sweep: m.sweep, travel: m.travel })),
    };
  });
  return { multiples, left: Math.max(0, names.length - max) };
}

/**
 * The robustness table's rows in depth order: per layer and metric, the change from the end model
 * when the layer is re-initialized and when it is re-randomized (`null` where either is missing),
 * and the layer's label.
 * @param {RobustnessSweep} payload
 * @param {(layer: string) => boolean} keep which layers to list.
 * @returns {Array<{layer: string, label: string,
 *   changes: Record<string, {reinitialized: number | null, rerandomized: number | null}>}>}
 */
export function robustnessRows(payload, keep) {
  /**
   * @param {number | null | undefined} value
   * @param {number | null | undefined} end
   * @returns {number | null}
   */
  const change = (value, end) => (typeof value === 'number' && typeof end === 'number' ? value - end : null);
  /** @type {ReturnType<typeof robustnessRows>} */
  const rows = [];
  payload.layers.forEach((layer, i) => {
    if (!keep(layer)) return;
    /** @type {Record<string, {reinitialized: number | null, rerandomized: number | null}>} */
    const changes = {};
    for (const metric of payload.metrics) {
      changes[metric] = {
        reinitialized: change(payload.reinitialized[metric]?.[i], payload.end[metric]),
        rerandomized: change(payload.rerandomized[metric]?.[i], payload.end[metric]),
      };
    }
    rows.push({ layer, label: payload.labels[i] ?? 'undefined', changes });
  });
  return rows;
}

/**
 * Reads the threshold the user typed: empty means the one each sweep was written with.
 * @param {string} text
 * @returns {{value: number | null, error: string | null}}
 */
export function parseThreshold(text) {
  const trimmed = text.trim();
  if (!trimmed) return { value: null, error: null };
  const value = Number(trimmed);
  if (!Number.isFinite(value) || value < 0) {
    return { value: null, error: `Threshold must be a number of at least 0, got “${trimmed}”; clear it for each sweep's own.` };
  }
  return { value, error: null };
}

/**
 * Formats a metric change with its sign ("+0.12", "−0.5", "0"; "–" when undefined).
 * @param {number | null} value
 * @returns {string}
 */
export function formatChange(value) {
  if (value === null || Number.isNaN(value)) return '–';
  const sign = value > 0 ? '+' : value < 0 ? '−' : '';
  return sign + formatValue(Math.abs(value));
}
