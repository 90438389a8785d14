// @ts-check
/**
 * @file Requests of the population panel: the `sketches`, `distances` and `trajectories` routes
 * (tb_layerdyn/plugin/http_api.md, "Distances between runs"), through the tab's shared `Model` so
 * they share its cache, its limit on requests in flight and its error reporting. Matrices and
 * trajectories come in the binary form (a thousand runs' matrix is 4 MB that way, 10 MB as JSON).
 */

import { fetchBinary } from '../../core/api.js';
import { decodeDistances, decodeTrajectories } from './shaping.js';

/**
 * @typedef {import('../../core/api.js').Model} Model
 * @typedef {import('./shaping.js').Population} Population
 * @typedef {{population: Population, layer: string | null, runs: string[] | null}} Choice the
 *   population, one of its layers (`null`: the whole model) and the runs (`null`: all of them).
 */

/**
 * A route's URL with a population's parameters, repeating `run` once per chosen run.
 * @param {string} route
 * @param {Choice} choice
 * @param {Record<string, string | number>} [extra]
 */
export function populationUrl(route, { population, layer, runs }, extra = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(extra)) query.set(key, String(value));
  if (population.model !== null) query.set('model', population.model);
  query.set('architecture', population.architecture);
  if (layer !== null) query.set('layer', layer);
  for (const run of runs ?? []) query.append('run', run);
  query.set('format', 'binary');
  return `./${route}?${query}`;
}

/**
 * Every population with sketches.
 * @param {Model} model
 * @returns {Promise<{populations: Population[], loading: boolean}>}
 */
export function sketches(model) {
  return model.get('./sketches');
}

/**
 * @param {Model} model
 * @param {Choice} choice
 * @param {number} step
 * @returns {Promise<import('./shaping.js').Distances>}
 */
export function distances(model, choice, step) {
  return model.get(populationUrl('distances', choice, { step }), async (u) => decodeDistances(await fetchBinary(u)));
}

/**
 * @param {Model} model
 * @param {Choice} choice
 * @returns {Promise<import('./shaping.js').Trajectories>}
 */
export function trajectories(model, choice) {
  return model.get(populationUrl('trajectories', choice), async (u) => decodeTrajectories(await fetchBinary(u)));
}
