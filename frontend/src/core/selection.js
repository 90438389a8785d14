// @ts-check
/**
 * @file What the user has chosen (runs, layers, metric, display options), and who to tell.
 *
 * Panels never talk to each other: the picker and the toolbar write here, every panel redraws from
 * here. Derived views (the runs and layers currently shown) are pure functions of the state and
 * the run list, so they are tested without a browser.
 */

import { DEFAULT_SEED_PATTERN } from './seed_average.js';
import { compileFilter, matchingIndices, unionNames } from './shaping.js';

/**
 * @typedef {import('./api.js').RunInfo} RunInfo
 * @typedef {{
 *   runs: RunInfo[], checked: string[], runFilter: string, layerFilter: string, group: string,
 *   metric: string, logY: boolean, smoothing: number, layout: 'overlay' | 'multiples' | 'averaged',
 *   seedPattern: string, band: import('./seed_average.js').BandKind,
 *   status: 'loading' | 'ready' | 'error', error: string
 * }} State `band`: the spread an average over seeds shades.
 */

/** @returns {State} */
export function initialState() {
  return {
    runs: [],
    checked: [],
    runFilter: '',
    layerFilter: '',
    group: '',
    metric: 'rwc',
    logY: true,
    smoothing: 0,
    layout: 'overlay',
    seedPattern: DEFAULT_SEED_PATTERN,
    band: 'minmax',
    status: 'loading',
    error: '',
  };
}

/**
 * The runs to draw: checked and matching the run filter, in the run list's order.
 * @param {State} state
 * @returns {RunInfo[]}
 */
export function activeRuns(state) {
  const { regex } = compileFilter(state.runFilter);
  const checked = new Set(state.checked);
  return state.runs.filter((r) => checked.has(r.run) && (!regex || regex.test(r.run)));
}

/**
 * The layers of some runs that pass the layer filter and the chosen group, in depth order.
 * @param {State} state
 * @param {RunInfo[]} runs
 * @returns {Set<string>} layer names to draw.
 */
export function visibleLayers(state, runs) {
  const names = unionNames(runs.map((r) => r.layers));
  const { regex } = compileFilter(state.layerFilter);
  let members = null;
  if (state.group) {
    members = new Set(
      runs.flatMap((r) => r.groups.filter((g) => g.name === state.group).flatMap((g) => g.members)),
    );
  }
  return new Set(matchingIndices(names, regex, members).map((i) => names[i]));
}

/**
 * Holds the state and calls listeners after each change.
 */
export class Selection {
  /** @param {State} [state] */
  constructor(state = initialState()) {
    this.state = state;
    /** @type {Array<(state: State, changed: Set<string>) => void>} */
    this.listeners = [];
  }

  /**
   * @param {(state: State, changed: Set<string>) => void} listener
   */
  subscribe(listener) {
    this.listeners.push(listener);
  }

  /**
   * Changes some fields and tells every listener which ones changed.
   * @param {Partial<State>} patch
   */
  set(patch) {
    /** @type {Set<string>} */
    const changed = new Set();
    for (const [key, value] of Object.entries(patch)) {
      if (/** @type {any} */ (this.state)[key] !== value) changed.add(key);
    }
    if (changed.size === 0) return;
    this.state = { ...this.state, ...patch };
    for (const listener of this.listeners) listener(this.state, changed);
  }
}
