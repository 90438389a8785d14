// @ts-check
/**
 * @file Talks to the plugin's routes (see tb_layerdyn/plugin/http_api.md) and caches answers.
 *
 * URLs are relative (`./runs`), so the tab works under `--path_prefix` and `/experiment/<id>/`.
 * A failed request rejects with a `RequestError` carrying the server's message; it is never turned
 * into `null`, and it is dropped from the cache so the next attempt asks again.
 */

import { entryName } from './names.js';

/**
 * @typedef {{name: string, kind: string, members: string[]}} Group
 * @typedef {{
 *   run: string, layers: string[], param_counts: number[], groups: Group[], metrics: string[],
 *   rwc: string, granularity: string, order: string, last_step: number | null,
 *   model: string | null, descriptions: string[] | null, source: {run: string, model: string | null}
 * }} RunInfo One entry of the run list: a run, or one model of a run that logged several. Its
 *   `run` is the entry's name (`run · model` for a named model), which the tab shows and keys
 *   selections by; `source` holds the route parameters.
 * @typedef {{
 *   run: string, metric: string, target: string, names: string[],
 *   columns: Array<Array<number | null>>, total_steps: number, downsampled: boolean
 * }} SeriesPayload
 * @typedef {{
 *   run: string, metric: string, target: string, names: string[], steps: number[],
 *   values: Array<Array<number | null>>, min_positive: number | null, max: number | null,
 *   downsampled: boolean
 * }} HeatmapPayload
 * @typedef {{names: string[], param_counts?: number[]} & Record<string, any>} SummaryPart
 * @typedef {{run: string, step: number | null, layers: SummaryPart, groups: SummaryPart}} SummaryPayload
 */

/** A request that failed: an HTTP error status or no answer at all. */
export class RequestError extends Error {
  /**
   * @param {string} url
   * @param {number | null} status HTTP status, `null` when the request got no answer.
   * @param {string} detail the server's message or the network error.
   */
  constructor(url, status, detail) {
    super(`${status === null ? 'No answer' : `Error ${status}`} from ${url}: ${detail}`);
    this.name = 'RequestError';
    this.url = url;
    this.status = status;
  }
}

/**
 * Fetches a route and parses its JSON.
 * @param {string} url relative URL.
 * @returns {Promise<any>}
 */
async function fetchJson(url) {
  let response;
  try {
    response = await fetch(url, { headers: { Accept: 'application/json' } });
  } catch (e) {
    throw new RequestError(url, null, e instanceof Error ? e.message : String(e));
  }
  if (!response.ok) {
    const text = (await response.text()).trim();
    throw new RequestError(url, response.status, text || response.statusText);
  }
  try {
    return await response.json();
  } catch (e) {
    throw new RequestError(url, response.status, 'the answer is not valid JSON');
  }
}

/**
 * Builds a relative route URL with encoded query parameters.
 * @param {string} route
 * @param {Record<string, string | number>} params
 * @returns {string}
 */
export function routeUrl(route, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) query.set(key, String(value));
  const text = query.toString();
  return `./${route}${text ? `?${text}` : ''}`;
}

/** Route client with a per-URL cache of in-flight and finished requests. */
export class Model {
  constructor() {
    /** @type {Map<string, Promise<any>>} */
    this.cache = new Map();
    /** @type {Map<string, {run: string, model: string | null}>} entry name -> route parameters */
    this.entries = new Map();
  }

  /**
   * The route parameters of an entry: its run, and `model` only for a named model.
   * @param {string} entry an entry's name (`RunInfo.run`).
   * @returns {Record<string, string>}
   */
  entryParams(entry) {
    const source = this.entries.get(entry);
    if (!source) return { run: entry };
    return source.model === null ? { run: source.run } : { run: source.run, model: source.model };
  }

  /**
   * @param {string} url
   * @returns {Promise<any>}
   */
  get(url) {
    let pending = this.cache.get(url);
    if (!pending) {
      pending = fetchJson(url);
      this.cache.set(url, pending);
      pending.catch(() => {
        if (this.cache.get(url) === pending) this.cache.delete(url);
      });
    }
    return pending;
  }

  /** Forgets every answer, so the next requests see data logged since. */
  reload() {
    this.cache.clear();
  }

  /** @returns {Promise<RunInfo[]>} */
  async runs() {
    const body = await this.get(routeUrl('runs', {}));
    return body.runs.map((/** @type {any} */ entry) => {
      const model = entry.model ?? null;
      const name = entryName(entry.run, model);
      this.entries.set(name, { run: entry.run, model });
      return { ...entry, run: name, model, descriptions: entry.descriptions ?? null, source: { run: entry.run, model } };
    });
  }

  /**
   * @param {string} run
   * @param {string} metric
   * @param {'layers' | 'groups'} target
   * @param {number} maxPoints
   * @returns {Promise<SeriesPayload>}
   */
  series(run, metric, target, maxPoints) {
    return this.get(routeUrl('series', { ...this.entryParams(run), metric, target, max_points: maxPoints }));
  }

  /**
   * @param {string} run
   * @param {string} metric
   * @param {number} maxSteps
   * @returns {Promise<HeatmapPayload>}
   */
  heatmap(run, metric, maxSteps) {
    return this.get(routeUrl('heatmap', { ...this.entryParams(run), metric, target: 'layers', max_steps: maxSteps }));
  }

  /**
   * @param {string} run
   * @returns {Promise<SummaryPayload>}
   */
  summary(run) {
    return this.get(routeUrl('summary', this.entryParams(run)));
  }
}

/**
 * Drops answers to requests that are no longer wanted: each update takes a ticket, and only the
 * newest ticket may draw, so a slow answer for an old selection never overwrites a newer one.
 * @returns {{next: () => number, isCurrent: (ticket: number) => boolean}}
 */
export function createRequestGuard() {
  let latest = 0;
  return {
    next: () => ++latest,
    isCurrent: (ticket) => ticket === latest,
  };
}
