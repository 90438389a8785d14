// @ts-check
/**
 * @file Panel: the runs and layers picker. Several runs (filtered by regex, each with a colour
 * that stays its own), and the layers to draw (filtered by regex or by group).
 *
 * The run list is virtualized: a population of a thousand runs keeps only the rows in view (and a
 * few either side) in the DOM, placed over a spacer as tall as the whole list, so filtering and
 * scrolling cost the same for ten runs and for ten thousand (core/virtual_list.js).
 */

import { CSS } from '../../core/constants.js';
import { layerColors } from '../../core/colors.js';
import { chip, el, stateMessage } from '../../core/dom.js';
import { layerLabels, shortNames } from '../../core/names.js';
import { activeRuns, visibleLayers } from '../../core/selection.js';
import { compileFilter, unionNames } from '../../core/shaping.js';
import { rowWindow, sameWindow } from '../../core/virtual_list.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 */

/** Characters of a name that fit the sidebar; longer ones are shortened (names.js). */
const NAME_CHARS = 30;

/** Height of a run row in CSS pixels; the stylesheet's `.ld-run-row` has the same. */
export const RUN_ROW_HEIGHT = 22;

/** Rows rendered above and below the visible ones. */
const RUN_OVERSCAN = 8;

/**
 * A text box for a regex that marks itself and says why when the text is no regex.
 * @param {string} label
 * @param {string} placeholder
 * @param {(text: string) => void} onInput
 * @returns {{element: HTMLElement, input: HTMLInputElement}}
 */
function regexFilter(label, placeholder, onInput) {
  const input = el('input', {
    className: CSS.filter,
    attrs: { type: 'search', placeholder, 'aria-label': label, spellcheck: 'false' },
  });
  const message = el('div', { className: CSS.filterMessage, attrs: { role: 'status' } });
  input.addEventListener('input', () => {
    const { error } = compileFilter(input.value);
    input.classList.toggle(CSS.filterInvalid, error !== null);
    message.textContent = error ?? '';
    onInput(input.value);
  });
  return { element: el('div', {}, [input, message]), input };
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createPickerPanel(context) {
  const { selection } = context;

  const runFilter = regexFilter('Filter runs (regex)', 'Filter runs (regex)', (text) => selection.set({ runFilter: text }));
  const runCount = el('span', { className: CSS.count });
  const runList = el('div', { className: CSS.list, attrs: { 'data-list': 'runs' } });
  const runSpacer = el('div', { className: CSS.listSpacer });
  const runWindow = el('div', { className: CSS.listWindow });
  runSpacer.append(runWindow);
  /** The runs passing the filter, and the ticked ones, as last drawn. */
  let listed = /** @type {import('../../core/api.js').RunInfo[]} */ ([]);
  let ticked = new Set();
  /** @type {import('../../core/virtual_list.js').RowWindow | null} */
  let drawnWindow = null;
  let scrollPending = false;

  /** @param {boolean} checked */
  const setShown = (checked) => {
    const { regex } = compileFilter(selection.state.runFilter);
    const shown = selection.state.runs.map((r) => r.run).filter((name) => !regex || regex.test(name));
    const shownSet = new Set(shown);
    const others = selection.state.checked.filter((name) => !shownSet.has(name));
    selection.set({ checked: checked ? others.concat(shown) : others });
  };
  // One listener for every row, present or future: rows come and go as the list scrolls.
  runList.addEventListener('change', (event) => {
    const box = /** @type {HTMLInputElement} */ (event.target);
    const row = box.closest('[data-run]');
    if (!(row instanceof HTMLElement) || box.type !== 'checkbox') return;
    const name = /** @type {string} */ (row.dataset.run);
    const others = selection.state.checked.filter((n) => n !== name);
    selection.set({ checked: box.checked ? others.concat([name]) : others });
  });
  runList.addEventListener('scroll', () => {
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => {
      scrollPending = false;
      renderWindow(false);
    });
  }, { passive: true });

  /**
   * One run's row.
   * @param {import('../../core/api.js').RunInfo} r
   * @param {number} index its place in the filtered list.
   */
  function runRow(r, index) {
    const box = el('input', { attrs: { type: 'checkbox' } });
    box.checked = ticked.has(r.run);
    /** @type {Record<string, string>} */
    const attrs = { 'data-run': r.run, 'data-index': String(index) };
    if (r.model !== null) attrs['data-model'] = r.model;
    return el('label', { className: CSS.runRow, title: r.run, attrs }, [
      box, chip(context.runColor(r.run)), el('span', { text: r.run }),
    ]);
  }

  /**
   * Renders the rows the list's viewport shows.
   * @param {boolean} force redraw even when the same rows are in view (their ticks changed).
   */
  function renderWindow(force) {
    const w = rowWindow({
      count: listed.length, rowHeight: RUN_ROW_HEIGHT, scrollTop: runList.scrollTop,
      viewportHeight: runList.clientHeight, overscan: RUN_OVERSCAN,
    });
    if (!force && sameWindow(drawnWindow, w)) return;
    drawnWindow = w;
    runSpacer.style.height = `${w.total}px`;
    runWindow.style.transform = `translateY(${w.offset}px)`;
    const rows = [];
    for (let i = w.start; i < w.end; i++) rows.push(runRow(listed[i], i));
    runWindow.replaceChildren(...rows);
  }
  const allButton = el('button', { className: CSS.linkButton, text: 'all', attrs: { type: 'button' } });
  const noneButton = el('button', { className: CSS.linkButton, text: 'none', attrs: { type: 'button' } });
  allButton.addEventListener('click', () => setShown(true));
  noneButton.addEventListener('click', () => setShown(false));

  const layerFilter = regexFilter('Filter layers (regex)', 'Filter layers (regex)', (text) => selection.set({ layerFilter: text }));
  const groupSelect = el('select', { className: CSS.filter, attrs: { 'aria-label': 'Layer group' } });
  groupSelect.addEventListener('change', () => selection.set({ group: groupSelect.value }));
  const layerCount = el('span', { className: CSS.count });
  const layerList = el('div', { className: CSS.list, attrs: { 'data-list': 'layers' } });

  const element = el('aside', { className: CSS.sidebar, attrs: { 'data-panel': 'picker' } }, [
    el('section', { className: CSS.section }, [
      el('h3', { className: CSS.sectionTitle }, [el('span', { text: 'Runs' }), runCount, allButton, noneButton]),
      runFilter.element,
      runList,
    ]),
    el('section', { className: CSS.section }, [
      el('h3', { className: CSS.sectionTitle }, [el('span', { text: 'Layers' }), layerCount]),
      layerFilter.element,
      groupSelect,
      layerList,
    ]),
  ]);

  /** @param {State} state */
  function drawRuns(state) {
    if (state.status === 'error') {
      drawnWindow = null;
      runList.replaceChildren(stateMessage('error', state.error));
      runCount.textContent = '';
      return;
    }
    if (state.runs.length === 0) {
      drawnWindow = null;
      runList.replaceChildren(
        stateMessage(state.status === 'loading' ? 'loading' : 'empty',
          state.status === 'loading' ? 'Loading runs…' : 'No run holds layer dynamics yet.'),
      );
      runCount.textContent = '';
      return;
    }
    const { regex } = compileFilter(state.runFilter);
    ticked = new Set(state.checked);
    listed = state.runs.filter((r) => !regex || regex.test(r.run));
    // Colours are handed out in list order, whichever rows scroll into view first.
    for (const r of state.runs) context.runColor(r.run);
    if (listed.length === 0) {
      drawnWindow = null;
      runList.replaceChildren(stateMessage('empty', 'No run matches the filter.'));
    } else {
      if (runSpacer.parentNode !== runList) {
        drawnWindow = null;
        runList.replaceChildren(runSpacer);
      }
      renderWindow(true);
    }
    runList.dataset.count = String(listed.length);
    let active = 0;
    for (const r of listed) if (ticked.has(r.run)) active++;
    runCount.textContent = `${active} of ${state.runs.length}`;
  }

  /** @param {State} state */
  function drawLayers(state) {
    const runs = activeRuns(state);
    const groups = unionNames(runs.map((r) => r.groups.map((g) => g.name)));
    const options = [el('option', { text: 'All layers', attrs: { value: '' } })];
    for (const name of groups) options.push(el('option', { text: `Group: ${name}`, attrs: { value: name } }));
    groupSelect.replaceChildren(...options);
    groupSelect.value = groups.includes(state.group) ? state.group : '';
    groupSelect.disabled = groups.length === 0;

    const names = unionNames(runs.map((r) => r.layers));
    const colours = layerColors(runs.map((r) => r.layers));
    const keep = visibleLayers(state, runs);
    layerCount.textContent = names.length ? `${keep.size} of ${names.length}` : '';
    // A name is labelled by the first run that has it (`1 · Linear 784→512` for a bare index).
    const labels = layerLabels(runs);
    const owner = new Map();
    for (const r of runs) for (const name of r.layers) if (!owner.has(name)) owner.set(name, r.run);
    const shown = names.filter((name) => keep.has(name));
    const full = new Map(shown.map((name) => [name, labels(owner.get(name), name)]));
    const short = shortNames([...full.values()], NAME_CHARS);
    const rows = shown.map((name) => {
      const text = /** @type {string} */ (full.get(name));
      return el('div', { className: CSS.layerRow, title: text, attrs: { 'data-layer': name } }, [
        chip(colours.get(name) ?? '#757575'), el('span', { text: short.get(text) ?? text }),
      ]);
    });
    layerList.replaceChildren(...(rows.length || !names.length ? rows : [stateMessage('empty', 'No layer matches.')]));
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  function update(state, changed) {
    if (['runs', 'checked', 'runFilter', 'status', 'error'].some((k) => changed.has(k))) drawRuns(state);
    if (['runs', 'checked', 'runFilter', 'layerFilter', 'group', 'status'].some((k) => changed.has(k))) drawLayers(state);
  }

  return { element, update };
}
