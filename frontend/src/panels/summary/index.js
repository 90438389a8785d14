// @ts-check
/**
 * @file Panel: per-layer summary bars at each run's last step: distance travelled (absolute and
 * relative to the initial weights) and the latest RWC, in depth order, runs side by side.
 */

import { CSS, SUMMARY_METRICS } from '../../core/constants.js';
import { chip, el, yieldToBrowser } from '../../core/dom.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell, firstRuns, tickedRunsOrState } from '../../core/panel.js';
import { formatValue } from '../../core/scales.js';
import { visibleLayers } from '../../core/selection.js';
import { unionNames } from '../../core/shaping.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('../../core/api.js').SummaryPayload} SummaryPayload
 * @typedef {import('../../core/api.js').SummaryPart} SummaryPart
 */

const WATCHED = ['runs', 'checked', 'runFilter', 'layerFilter', 'group', 'status'];

/**
 * Largest finite value of one metric over the rows shown, for a shared bar scale.
 * @param {SummaryPart[]} parts
 * @param {string} metric
 * @param {Set<string>} names
 */
function largest(parts, metric, names) {
  let max = 0;
  for (const part of parts) {
    const values = part[metric] ?? [];
    part.names.forEach((name, i) => {
      const v = values[i];
      if (names.has(name) && typeof v === 'number' && Number.isFinite(v) && v > max) max = v;
    });
  }
  return max;
}

/**
 * A table of bars: one row per name, one column per metric, one bar per run in each cell.
 * @param {string} caption
 * @param {string[]} names rows, in depth order.
 * @param {Array<{run: string, part: SummaryPart, step: number | null}>} runs
 * @param {(run: string) => string} runColor
 * @returns {HTMLElement}
 */
function barTable(caption, names, runs, runColor) {
  const shown = new Set(names);
  const maxima = SUMMARY_METRICS.map((m) => largest(runs.map((r) => r.part), m.id, shown));
  const table = el('div', { className: CSS.summaryTable, attrs: { role: 'table', 'aria-label': caption } });
  table.append(
    el('div', { className: CSS.summaryRow, attrs: { role: 'row' } }, [
      el('span', { className: CSS.summaryName, text: caption, attrs: { role: 'columnheader' } }),
      ...SUMMARY_METRICS.map((m) => el('span', { className: CSS.summaryCell, text: m.label, attrs: { role: 'columnheader' } })),
    ]),
  );
  for (const name of names) {
    const cells = SUMMARY_METRICS.map((metric, k) => {
      const cell = el('div', { className: CSS.summaryCell, attrs: { role: 'cell' } });
      for (const { run, part, step } of runs) {
        const i = part.names.indexOf(name);
        // A run without this layer gets no bar; a layer with no value yet gets an empty one.
        if (i < 0) continue;
        const value = part[metric.id]?.[i] ?? null;
        const bar = el('div', {
          className: CSS.summaryBar,
          title: `${run} · ${name} · ${metric.label} at step ${step}: ${formatValue(value)}`,
          attrs: { 'data-run': run },
        });
        bar.style.background = runColor(run);
        const fraction = typeof value === 'number' && maxima[k] > 0 ? Math.max(0, value / maxima[k]) : 0;
        bar.style.width = `${(fraction * 100).toFixed(2)}%`;
        const line = el('div', { className: CSS.summaryValue }, [
          el('div', { className: CSS.summaryTrack }, [bar]),
          el('span', { text: formatValue(value) }),
        ]);
        cell.append(line);
      }
      return cell;
    });
    table.append(
      el('div', { className: CSS.summaryRow, attrs: { role: 'row', 'data-name': name } }, [
        el('span', { className: CSS.summaryName, text: name, title: name, attrs: { role: 'rowheader' } }),
        ...cells,
      ]),
    );
  }
  return table;
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createSummaryPanel(context) {
  const shell = new PanelShell(
    'summary',
    'Per-layer summary',
    'At each run\'s last logged step: distance from the initial weights (absolute and relative) and '
      + 'the latest RWC, one bar per run, layers from input to output.',
  );
  const guard = createRequestGuard();

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  async function update(state, changed) {
    if (!WATCHED.some((key) => changed.has(key))) return;
    const ticket = guard.next();
    const ticked = tickedRunsOrState(state, shell, { nothing: 'No layer dynamics logged yet.' });
    if (ticked === null) return;
    const { shown: runs, note } = firstRuns(ticked);
    shell.setBusy(true);
    await context.firstPaint.wait();
    if (!guard.isCurrent(ticket)) return;
    /** @type {SummaryPayload[]} */
    let payloads;
    try {
      // Each payload under its entry's name (a run's models share the run's name on the server).
      payloads = (await Promise.all(runs.map((r) => context.model.summary(r.run)))).map((p, k) => ({ ...p, run: runs[k].run }));
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      shell.showError(e);
      return;
    }
    await yieldToBrowser();
    if (!guard.isCurrent(ticket)) return;
    shell.setBusy(false);
    const keep = visibleLayers(state, runs);
    const layers = unionNames(payloads.map((p) => p.layers.names)).filter((n) => keep.has(n));
    const groups = unionNames(payloads.map((p) => p.groups?.names ?? []));
    if (layers.length === 0 && groups.length === 0) {
      shell.showState('empty', 'No layers match the filter.');
      return;
    }
    const legend = el('div', { className: CSS.legend, attrs: { 'data-legend': 'runs' } },
      payloads.map((p) => el('span', { className: CSS.legendEntry }, [
        chip(context.runColor(p.run)),
        el('span', { text: p.step === null ? `${p.run} (nothing logged yet)` : `${p.run} @ step ${p.step}` }),
      ])));
    const layerRuns = payloads.map((p) => ({ run: p.run, part: p.layers, step: p.step }));
    const groupRuns = payloads.map((p) => ({ run: p.run, part: p.groups ?? { names: [] }, step: p.step }));
    shell.show([
      legend,
      note ? el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text: note, attrs: { role: 'status' } }) : null,
      layers.length ? barTable('Layer', layers, layerRuns, context.runColor) : null,
      groups.length ? barTable('Group', groups, groupRuns, context.runColor) : null,
    ]);
  }

  return { element: shell.element, update };
}
