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
 *   rwc: string, granularity: string, order: string, last_step: number | null, sweeps: number,
 *   model: string | null, descriptions: string[] | null, pictures: string[],
 *   source: {run: string, model: string | null}
 * }} RunInfo One entry of the run list: a run, or one model of a run that logged several. Its
 *   `run` is the entry's name (`run · model` for a named model), which the tab shows and keys
 *   selections by; `source` holds the route parameters.
 * @typedef {{runs: RunInfo[], loading: boolean}} RunsPayload
 * @typedef {{
 *   run: string, metric: string, target: string, names: string[],
 *   columns: Array<Float64Array | Float32Array>, total_steps: number, downsampled: boolean
 * }} SeriesPayload `columns`: the steps, then one column per series, NaN where a value is missing.
 * @typedef {{start?: number, end?: number}} StepRange logged steps from `start` to `end`, both
 *   included; a missing end is open.
 * @typedef {{
 *   run: string, metric: string, target: string, names: string[], steps: Float64Array,
 *   values: Float32Array[], min_positive: number | null, max: number | null,
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
 * Requests in flight at once. A browser holds six connections to a host and queues the rest; a
 * population of a thousand runs would queue thousands of requests, which Chromium refuses past a
 * few hundred (`net::ERR_INSUFFICIENT_RESOURCES`). Requests wait here instead, in order.
 */
export const MAX_REQUESTS_IN_FLIGHT = 6;

/**
 * Runs async tasks at most `limit` at a time, in the order they were queued.
 * @param {number} limit
 * @returns {<T>(task: () => Promise<T>) => Promise<T>}
 */
export function createLimiter(limit) {
  let running = 0;
  /** @type {Array<() => void>} */
  const queue = [];
  const next = () => {
    if (running >= limit || queue.length === 0) return;
    running++;
    /** @type {() => void} */ (queue.shift())();
  };
  return (task) => new Promise((resolve, reject) => {
    queue.push(() => {
      task().then(resolve, reject).finally(() => {
        running--;
        next();
      });
    });
    next();
  });
}

const limited = createLimiter(MAX_REQUESTS_IN_FLIGHT);

/**
 * `fetch` under the limit of requests in flight; the body is read before the slot is given back.
 * @template T
 * @param {string} url
 * @param {string} accept
 * @param {(response: Response) => Promise<T>} read
 * @returns {Promise<T>}
 */
function limitedFetch(url, accept, read) {
  return limited(async () => read(await fetch(url, { headers: { Accept: accept } })));
}

/**
 * Fetches a route and parses its JSON.
 * @param {string} url relative URL.
 * @returns {Promise<any>}
 */
async function fetchJson(url) {
  /** @type {{response: Response, text: string | null, body: any, bad: boolean}} */
  let got;
  try {
    got = await limitedFetch(url, 'application/json', async (response) => {
      if (!response.ok) return { response, text: (await response.text()).trim(), body: null, bad: false };
      try {
        return { response, text: null, body: await response.json(), bad: false };
      } catch (e) {
        return { response, text: null, body: null, bad: true };
      }
    });
  } catch (e) {
    throw new RequestError(url, null, e instanceof Error ? e.message : String(e));
  }
  const { response } = got;
  if (!response.ok) throw new RequestError(url, response.status, got.text || response.statusText);
  if (got.bad) throw new RequestError(url, response.status, 'the answer is not valid JSON');
  return got.body;
}

/**
 * Fetches a route's binary answer.
 * @param {string} url relative URL.
 * @returns {Promise<ArrayBuffer>}
 */
export async function fetchBinary(url) {
  /** @type {{response: Response, text: string | null, body: ArrayBuffer | null}} */
  let got;
  try {
    got = await limitedFetch(url, 'application/octet-stream', async (response) => (response.ok
      ? { response, text: null, body: await response.arrayBuffer() }
      : { response, text: (await response.text()).trim(), body: null }));
  } catch (e) {
    throw new RequestError(url, null, e instanceof Error ? e.message : String(e));
  }
  const { response } = got;
  if (!response.ok) throw new RequestError(url, response.status, got.text || response.statusText);
  return /** @type {ArrayBuffer} */ (got.body);
}

/**
 * Reads the binary form of a `series` answer (http_api.md) into the JSON form's shape: the steps
 * and one column per series, as typed arrays over the answer's own bytes (no copy), NaN where a
 * value is missing. The charts take them as they are.
 * @param {ArrayBuffer} buffer
 * @returns {SeriesPayload}
 */
export function decodeSeries(buffer) {
  const { header, steps, rows } = decodeBinary(buffer);
  return {
    run: header.run, metric: header.metric, target: header.target, names: header.names,
    columns: [steps, ...rows], total_steps: header.total_steps, downsampled: header.downsampled,
  };
}

/**
 * Reads the binary form of a `heatmap` answer into the JSON form's shape, NaN where a value is
 * missing.
 * @param {ArrayBuffer} buffer
 * @returns {HeatmapPayload}
 */
export function decodeHeatmap(buffer) {
  const { header, steps, rows } = decodeBinary(buffer);
  return {
    run: header.run, metric: header.metric, target: header.target, names: header.names, steps,
    values: rows, min_positive: header.min_positive, max: header.max, downsampled: header.downsampled,
  };
}

/**
 * The parts of a binary answer (http_api.md): its JSON header, its steps, and one row of values per
 * series (NaN where missing), all views of `buffer`.
 *
 * Views, not arrays: a chart of every layer of 20 runs holds 4,000 series of 2,000 points, and
 * arrays of numbers and `null` would allocate each value on its own.
 * @param {ArrayBuffer} buffer
 * @returns {{header: any, steps: Float64Array, rows: Float32Array[]}}
 */
function decodeBinary(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const points = header.points;
  const start = 4 + length;
  const steps = new Float64Array(buffer, start, points);
  const values = new Float32Array(buffer, start + 8 * points, header.names.length * points);
  /** @type {Float32Array[]} */
  const rows = [];
  for (let s = 0; s < header.names.length; s++) rows.push(values.subarray(s * points, (s + 1) * points));
  return { header, steps, rows };
}

/**
 * Builds a relative route URL with encoded query parameters.
 * @param {string} route
 * @param {Record<string, string | number | null | undefined>} params those `null` or `undefined`
 *   are left out.
 * @returns {string}
 */
export function routeUrl(route, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) query.set(key, String(value));
  }
  const text = query.toString();
  return `./${route}${text ? `?${text}` : ''}`;
}

/**
 * Entries asked for together before their series go out in `series_batch` requests; fewer go out
 * one `series` request each, as a tab of a few runs always did.
 */
export const BATCH_MIN = 8;

/** Most entries in one `series_batch` request (the route takes up to 256). */
export const BATCH_SIZE = 100;

/**
 * Most values (points × series, estimated) in one `series_batch` request: past that, answers of
 * long runs of many layers go in several requests, so that they are built on several of the
 * server's threads and arrive in parts.
 */
export const BATCH_VALUES = 1_000_000;

/**
 * The parts of a `series_batch` answer (http_api.md): a uint32 count, then per entry a uint32
 * length and the entry's binary `series` answer, each copied into a buffer of its own (so its
 * float64 steps stay aligned).
 * @param {ArrayBuffer} buffer
 * @returns {ArrayBuffer[]}
 */
export function splitBatch(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 4) throw new Error('the batch answer is shorter than its count');
  const count = view.getUint32(0, true);
  const parts = [];
  let offset = 4;
  for (let i = 0; i < count; i++) {
    if (offset + 4 > buffer.byteLength) throw new Error('the batch answer is shorter than its parts');
    const length = view.getUint32(offset, true);
    if (offset + 4 + length > buffer.byteLength) throw new Error('the batch answer is shorter than its parts');
    parts.push(buffer.slice(offset + 4, offset + 4 + length));
    offset += 4 + length;
  }
  return parts;
}

/**
 * Series requests made together, gathered: when `flush` runs (in the microtask after the code that
 * asked, so that no other task, a redraw or another panel's work, comes between), those that share
 * every parameter but the entry go out together, `BATCH_SIZE` entries a request.
 * @typedef {{params: Record<string, string>, weight: number, resolve: (p: SeriesPayload) => void,
 *            reject: (e: unknown) => void}} PendingSeries `weight`: the values its answer holds at
 *   most, estimated.
 */
export class SeriesBatcher {
  /**
   * @param {(url: string) => Promise<ArrayBuffer>} load fetches a binary answer.
   */
  constructor(load = fetchBinary) {
    this.load = load;
    /** @type {Map<string, {query: Record<string, string | number | undefined>, items: PendingSeries[]}>} */
    this.pending = new Map();
    this.scheduled = false;
  }

  /**
   * One entry's series, batched with others asked for before the next microtask.
   * @param {Record<string, string>} params the entry's `run` and `model`.
   * @param {Record<string, string | number | undefined>} query the other parameters.
   * @param {number} [weight] how many values its answer may hold (points × series), estimated.
   * @returns {Promise<SeriesPayload>}
   */
  series(params, query, weight = 0) {
    const key = JSON.stringify(query);
    let group = this.pending.get(key);
    if (!group) {
      group = { query, items: [] };
      this.pending.set(key, group);
    }
    const items = group.items;
    const promise = new Promise((resolve, reject) => items.push({ params, weight, resolve, reject }));
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => this.flush());
    }
    return /** @type {Promise<SeriesPayload>} */ (promise);
  }

  /** Sends what was gathered. */
  flush() {
    this.scheduled = false;
    const groups = [...this.pending.values()];
    this.pending.clear();
    for (const { query, items } of groups) {
      if (items.length < BATCH_MIN) {
        for (const item of items) this.single(item, query);
        continue;
      }
      let chunk = [];
      let values = 0;
      for (const item of items) {
        if (chunk.length && (chunk.length >= BATCH_SIZE || values + item.weight > BATCH_VALUES)) {
          this.send(chunk, query);
          chunk = [];
          values = 0;
        }
        chunk.push(item);
        values += item.weight;
      }
      this.send(chunk, query);
    }
  }

  /**
   * @param {PendingSeries[]} chunk
   * @param {Record<string, string | number | undefined>} query
   */
  send(chunk, query) {
    if (chunk.length === 1) this.single(chunk[0], query);
    else this.batch(chunk, query);
  }

  /**
   * @param {PendingSeries} item
   * @param {Record<string, string | number | undefined>} query
   */
  single(item, query) {
    this.load(routeUrl('series', { ...item.params, ...query, format: 'binary' }))
      .then((buffer) => item.resolve(decodeSeries(buffer)), item.reject);
  }

  /**
   * One `series_batch` request; when it fails, each entry is asked on its own, so an entry the
   * server refuses gets its own message and the others still draw.
   * @param {PendingSeries[]} items
   * @param {Record<string, string | number | undefined>} query
   */
  async batch(items, query) {
    const search = new URLSearchParams();
    for (const item of items) search.append('run', item.params.run);
    if (items.some((item) => item.params.model !== undefined)) {
      for (const item of items) search.append('model', item.params.model ?? '');
    }
    for (const [key, value] of Object.entries(query)) if (value !== undefined && value !== null) search.set(key, String(value));
    let parts;
    try {
      parts = splitBatch(await this.load(`./series_batch?${search}`));
      if (parts.length !== items.length) throw new Error('the batch answer holds another number of entries');
    } catch (e) {
      for (const item of items) this.single(item, query);
      return;
    }
    items.forEach((item, k) => {
      try {
        item.resolve(decodeSeries(parts[k]));
      } catch (e) {
        item.reject(e);
      }
    });
  }
}

/** Route client with a per-URL cache of in-flight and finished requests. */
export class Model {
  constructor() {
    /** @type {Map<string, Promise<any>>} */
    this.cache = new Map();
    /** @type {Map<string, {run: string, model: string | null}>} entry name -> route parameters */
    this.entries = new Map();
    /** @type {Map<string, {layers: number, groups: number}>} entry name -> how many series */
    this.widths = new Map();
    this.batcher = new SeriesBatcher();
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
   * @param {(url: string) => Promise<any>} [load] how to fetch it (JSON by default).
   * @returns {Promise<any>}
   */
  get(url, load = fetchJson) {
    let pending = this.cache.get(url);
    if (!pending) {
      pending = load(url);
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

  /**
   * The run list; `loading` says the server is still reading the logdir for the first time.
   * @returns {Promise<RunsPayload>}
   */
  async runs() {
    const body = await this.get(routeUrl('runs', {}));
    const runs = body.runs.map((/** @type {any} */ entry) => {
      const model = entry.model ?? null;
      const name = entryName(entry.run, model);
      this.entries.set(name, { run: entry.run, model });
      this.widths.set(name, { layers: (entry.layers ?? []).length, groups: (entry.groups ?? []).length });
      return {
        ...entry, run: name, model, descriptions: entry.descriptions ?? null, pictures: entry.pictures ?? [],
        source: { run: entry.run, model },
      };
    });
    return { runs, loading: Boolean(body.loading) };
  }

  /**
   * One metric of one run against step, fetched in the binary form (many series load faster).
   * @param {string} run
   * @param {string} metric
   * @param {'layers' | 'groups'} target
   * @param {number} maxPoints
   * @param {StepRange} [range] only these steps (a zoomed chart); all by default.
   * @returns {Promise<SeriesPayload>}
   */
  series(run, metric, target, maxPoints, range = {}) {
    const params = this.entryParams(run);
    const query = { metric, target, max_points: maxPoints, start: range.start, end: range.end };
    const url = routeUrl('series', { ...params, ...query, format: 'binary' });
    // Cached under the entry's own URL; asked, with the others asked for together, in batches.
    const width = this.widths.get(run)?.[target] ?? 0;
    return this.get(url, () => this.batcher.series(params, query, width * maxPoints));
  }

  /**
   * @param {string} run
   * @param {string} metric
   * @param {number} maxSteps
   * @returns {Promise<HeatmapPayload>}
   */
  heatmap(run, metric, maxSteps) {
    const url = routeUrl('heatmap', {
      ...this.entryParams(run), metric, target: 'layers', max_steps: maxSteps, format: 'binary',
    });
    return this.get(url, async (u) => decodeHeatmap(await fetchBinary(u)));
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
