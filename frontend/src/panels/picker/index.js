// @ts-check
/**
 * @file Panel: the runs and layers picker. Several runs (filtered by regex, each with a colour
 * that stays its own), and the layers to draw (filtered by regex or by group).
 */

import { CSS } from '../../core/constants.js';
import { layerColors } from '../../core/colors.js';
import { chip, el, stateMessage } from '../../core/dom.js';
import { layerLabels, shortNames } from '../../core/names.js';
import { activeRuns, visibleLayers } from '../../core/selection.js';
import { compileFilter, unionNames } from '../../core/shaping.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 */

/** Characters of a name that fit the sidebar; longer ones are shortened (names.js). */
const NAME_CHARS = 30;

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
  /** @param {boolean} checked */
  const setShown = (checked) => {
    const { regex } = compileFilter(selection.state.runFilter);
    const shown = selection.state.runs.map((r) => r.run).filter((name) => !regex || regex.test(name));
    const others = selection.state.checked.filter((name) => !shown.includes(name));
    selection.set({ checked: checked ? others.concat(shown) : others });
  };
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
      runList.replaceChildren(stateMessage('error', state.error));
      runCount.textContent = '';
      return;
    }
    if (state.runs.length === 0) {
      runList.replaceChildren(
        stateMessage(state.status === 'loading' ? 'loading' : 'empty',
          state.status === 'loading' ? 'Loading runs…' : 'No run holds layer dynamics yet.'),
      );
      runCount.textContent = '';
      return;
    }
    const { regex } = compileFilter(state.runFilter);
    const checked = new Set(state.checked);
    const rows = state.runs
      .filter((r) => !regex || regex.test(r.run))
      .map((r) => {
        const box = el('input', { attrs: { type: 'checkbox' } });
        box.checked = checked.has(r.run);
        box.addEventListener('change', () => {
          const others = selection.state.checked.filter((name) => name !== r.run);
          selection.set({ checked: box.checked ? others.concat([r.run]) : others });
        });
        /** @type {Record<string, string>} */
        const attrs = { 'data-run': r.run };
        if (r.model !== null) attrs['data-model'] = r.model;
        return el('label', { className: CSS.runRow, title: r.run, attrs }, [
          box, chip(context.runColor(r.run)), el('span', { text: r.run }),
        ]);
      });
    runList.replaceChildren(...(rows.length ? rows : [stateMessage('empty', 'No run matches the filter.')]));
    runCount.textContent = `${activeRuns(state).length} of ${state.runs.length}`;
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
