// @ts-check
/**
 * @file The robustness table of one sweep as DOM: a row per layer in depth order, per metric the
 * change under re-initialization and re-randomization, and the robust / ambient label.
 */

import { chip, el } from '../../core/dom.js';
import { formatValue } from '../../core/scales.js';
import { CONDITIONS, SWEEP_CSS } from './constants.js';
import { formatChange, robustnessRows } from './shaping.js';

/**
 * @typedef {import('./shaping.js').RobustnessSweep} RobustnessSweep
 * @typedef {import('./shaping.js').ChosenSweep} ChosenSweep
 */

const LABEL_CLASS = /** @type {Record<string, string>} */ ({
  robust: SWEEP_CSS.labelRobust,
  ambient: SWEEP_CSS.labelAmbient,
});

/**
 * One sweep's robustness table.
 * @param {ChosenSweep} sweep
 * @param {RobustnessSweep} payload
 * @param {(layer: string) => boolean} keep which layers to list.
 * @param {string} colour the run's colour.
 * @returns {HTMLElement}
 */
export function robustnessTable(sweep, payload, keep, colour) {
  const rows = robustnessRows(payload, keep);
  const end = payload.metrics.map((m) => `${m} ${formatValue(payload.end[m])}`).join(', ');
  const rule = `robust when re-initializing changes ${payload.label_metric} by more than `
    + `${formatValue(payload.threshold)}, ambient otherwise`;
  const caption = el('caption', { className: SWEEP_CSS.caption }, [
    chip(colour),
    el('strong', { text: sweep.label }),
    el('span', { text: ` · end model: ${end} · ${rule}` }),
  ]);
  const top = el('tr', {}, [el('th', { text: 'Layer', attrs: { rowspan: '2', scope: 'col' } })]);
  const sub = el('tr');
  for (const metric of payload.metrics) {
    top.append(el('th', { text: `Δ ${metric}`, attrs: { colspan: String(CONDITIONS.length), scope: 'colgroup' } }));
    for (const c of CONDITIONS) sub.append(el('th', { text: c.label, title: c.title, attrs: { scope: 'col' } }));
  }
  top.append(el('th', { text: 'Label', attrs: { rowspan: '2', scope: 'col' } }));
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr', { attrs: { 'data-layer': row.layer } }, [
      el('th', { text: row.layer, title: row.layer, attrs: { scope: 'row' } }),
    ]);
    for (const metric of payload.metrics) {
      for (const c of CONDITIONS) {
        const value = row.changes[metric][/** @type {'reinitialized' | 'rerandomized'} */ (c.id)];
        tr.append(el('td', { className: SWEEP_CSS.change, text: formatChange(value) }));
      }
    }
    const label = el('span', {
      className: `${SWEEP_CSS.label} ${LABEL_CLASS[row.label] ?? SWEEP_CSS.labelUndefined}`,
      text: row.label,
      attrs: { 'data-label': row.label },
    });
    tr.append(el('td', {}, [label]));
    body.append(tr);
  }
  return el('table', {
    className: SWEEP_CSS.table,
    attrs: { 'data-run': sweep.run, 'data-step': String(sweep.step) },
  }, [caption, el('thead', {}, [top, sub]), body]);
}
