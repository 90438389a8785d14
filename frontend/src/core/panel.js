// @ts-check
/**
 * @file The frame every panel shares: a titled card whose body shows content or a state message.
 */

import { CSS, RUNS_DRAWN_MAX } from './constants.js';
import { el, stateMessage } from './dom.js';
import { activeRuns } from './selection.js';

/**
 * @typedef {import('./selection.js').State} State
 * @typedef {import('./api.js').Model} Model
 * @typedef {{model: Model, selection: import('./selection.js').Selection,
 *            runColor: (run: string) => string,
 *            firstPaint: import('./paint_gate.js').PaintGate}} PanelContext
 * @typedef {{element: HTMLElement, update: (state: State, changed: Set<string>) => void}} Panel
 * @typedef {(context: PanelContext) => Panel} PanelFactory
 * @typedef {import('./api.js').RunInfo} RunInfo
 */

/** What a panel says when runs have data but none is ticked. */
export const NO_RUN_TICKED = 'No run selected: tick runs on the left.';

/** A titled card with a replaceable body. */
export class PanelShell {
  /**
   * @param {string} id stable identifier, used as the card's `data-panel` attribute.
   * @param {string} title
   * @param {string} hint one line under the title saying how to read the panel.
   */
  constructor(id, title, hint) {
    this.body = el('div', { className: CSS.panelBody });
    this.element = el('section', { className: CSS.panel, attrs: { 'data-panel': id } }, [
      el('header', { className: CSS.panelHeader }, [
        el('h2', { className: CSS.panelTitle, text: title }),
        el('p', { className: CSS.panelHint, text: hint }),
      ]),
      this.body,
    ]);
  }

  /**
   * Replaces the body with some nodes.
   * @param {Array<Node | null>} nodes
   */
  show(nodes) {
    this.body.replaceChildren(...nodes.filter((n) => n !== null));
  }

  /**
   * Replaces the body with a state message.
   * @param {'loading' | 'empty' | 'error'} kind
   * @param {string} text
   */
  showState(kind, text) {
    this.body.replaceChildren(stateMessage(kind, text));
  }

  /**
   * Shows "loading" over the current content without removing it, so a redraw does not flicker.
   * @param {boolean} busy
   */
  setBusy(busy) {
    this.element.toggleAttribute('aria-busy', busy);
    if (busy && this.body.childElementCount === 0) this.showState('loading', 'Loading…');
  }

  /**
   * Says why a failed request left this panel empty.
   * @param {unknown} error
   */
  showError(error) {
    this.setBusy(false);
    this.showState('error', error instanceof Error ? error.message : String(error));
  }
}

/**
 * Shows the states every panel shares before it fetches anything: the run list still loading, its
 * request failed, or no run ticked.
 * @param {State} state
 * @param {PanelShell} shell
 * @param {{nothing: string, clear?: () => void, showEmpty?: (text: string) => void}} options
 *   `nothing` is said when no run has logged anything; `clear` drops what the panel drew;
 *   `showEmpty` shows the empty message (in the shell's body by default).
 * @returns {RunInfo[] | null} the ticked runs, or `null` when a state is shown instead.
 */
export function tickedRunsOrState(state, shell, { nothing, clear = () => {}, showEmpty }) {
  if (state.status === 'loading') {
    shell.setBusy(true);
    return null;
  }
  if (state.status === 'error') {
    clear();
    shell.showError(state.error);
    return null;
  }
  const runs = activeRuns(state);
  if (runs.length === 0) {
    clear();
    const text = state.runs.length ? NO_RUN_TICKED : nothing;
    if (showEmpty) showEmpty(text);
    else shell.showState('empty', text);
    return null;
  }
  return runs;
}

/**
 * The first runs of many that a per-run panel draws, and the note that says what was left out.
 * @template T
 * @param {T[]} runs
 * @param {number} [max]
 * @returns {{shown: T[], note: string | null}}
 */
export function firstRuns(runs, max = RUNS_DRAWN_MAX) {
  if (runs.length <= max) return { shown: runs, note: null };
  return {
    shown: runs.slice(0, max),
    note: `Showing the first ${max} of ${runs.length} runs: filter the run list to see others.`,
  };
}
