// @ts-check
/**
 * @file Requests of the sweeps panel: the `sweeps` and `sweep` routes (tb_layerdyn/plugin/
 * http_api.md, section "Sweeps"), through the tab's shared `Model`, so they share its cache and
 * its error reporting.
 */

import { routeUrl } from '../../core/api.js';

/**
 * @typedef {import('../../core/api.js').Model} Model
 * @typedef {import('./shaping.js').SweepList} SweepList
 * @typedef {import('./shaping.js').CurveSweep} CurveSweep
 * @typedef {import('./shaping.js').RobustnessSweep} RobustnessSweep
 */

/**
 * Every sweep a run logged.
 * @param {Model} model
 * @param {string} run
 * @returns {Promise<SweepList>}
 */
export function sweepList(model, run) {
  return model.get(routeUrl('sweeps', model.entryParams(run)));
}

/**
 * One interpolation sweep's curves.
 * @param {Model} model
 * @param {string} run
 * @param {number} step
 * @param {string} scope `model`, `layers` or `parameters`.
 * @returns {Promise<CurveSweep>}
 */
export function curveSweep(model, run, step, scope) {
  return model.get(routeUrl('sweep', { ...model.entryParams(run), step, scope }));
}

/**
 * One robustness table, labelled with `threshold` or, when `null`, the one it was written with.
 * @param {Model} model
 * @param {string} run
 * @param {number} step
 * @param {number | null} threshold
 * @returns {Promise<RobustnessSweep>}
 */
export function robustnessSweep(model, run, step, threshold) {
  /** @type {Record<string, string | number>} */
  const params = { ...model.entryParams(run), step, scope: 'robustness' };
  if (threshold !== null) params.threshold = threshold;
  return model.get(routeUrl('sweep', params));
}
