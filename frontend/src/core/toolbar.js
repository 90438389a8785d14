// @ts-check
/**
 * @file The toolbar over the panels: metric, log-y, smoothing, runs overlaid, as small multiples or
 * averaged over seeds (with the pattern that finds the seed in a run name and the spread the band
 * shades), reload.
 */

import { CSS, METRICS } from './constants.js';
import { el } from './dom.js';
import { BAND_KINDS } from './seed_average.js';
import { compileFilter } from './shaping.js';

/**
 * @typedef {import('./selection.js').State} State
 */

/**
 * @param {string} text
 * @param {HTMLElement} control
 * @returns {HTMLElement}
 */
function labelled(text, control) {
  return el('label', { className: CSS.control }, [el('span', { text }), control]);
}

/**
 * Creates the toolbar.
 * @param {import('./panel.js').PanelContext} context
 * @param {() => void} onReload asks the routes again for data logged since.
 * @returns {import('./panel.js').Panel}
 */
export function createToolbar(context, onReload) {
  const { selection } = context;
  const metric = el('select', { attrs: { 'aria-label': 'Metric', 'data-control': 'metric' } });
  metric.addEventListener('change', () => selection.set({ metric: metric.value }));

  const logY = el('input', { attrs: { type: 'checkbox', 'data-control': 'log-y' } });
  logY.addEventListener('change', () => selection.set({ logY: logY.checked }));

  const smoothing = el('input', {
    attrs: { type: 'range', min: '0', max: '0.99', step: '0.01', 'data-control': 'smoothing' },
  });
  const smoothingValue = el('output', { className: CSS.count });
  // Redraw at most once per frame while the slider moves: a deep model's charts take a while.
  let pending = 0;
  smoothing.addEventListener('input', () => {
    smoothingValue.textContent = Number(smoothing.value).toFixed(2);
    cancelAnimationFrame(pending);
    pending = requestAnimationFrame(() => selection.set({ smoothing: Number(smoothing.value) }));
  });

  const layout = el('select', { attrs: { 'aria-label': 'Runs', 'data-control': 'layout' } }, [
    el('option', { text: 'overlaid', attrs: { value: 'overlay' } }),
    el('option', { text: 'small multiples', attrs: { value: 'multiples' } }),
    el('option', { text: 'averaged over seeds', attrs: { value: 'averaged' } }),
  ]);
  layout.addEventListener('change', () => {
    const value = layout.value;
    selection.set({ layout: value === 'multiples' || value === 'averaged' ? value : 'overlay' });
  });

  // Only a valid pattern reaches the selection, so the charts keep the last good grouping while
  // the user is still typing one.
  const seedPattern = el('input', {
    className: CSS.filter,
    title: 'Regular expression for the seed part of a run name; runs whose names are equal once '
      + 'it is cut out are averaged together.',
    attrs: { type: 'text', spellcheck: 'false', 'aria-label': 'Seed pattern', 'data-control': 'seed-pattern' },
  });
  seedPattern.style.width = '16em';
  seedPattern.style.margin = '0';
  const seedMessage = el('span', { className: CSS.filterMessage, attrs: { role: 'status' } });
  seedPattern.addEventListener('input', () => {
    const { error } = compileFilter(seedPattern.value);
    seedPattern.classList.toggle(CSS.filterInvalid, error !== null);
    seedMessage.textContent = error ? `Seed pattern: ${error}` : '';
    if (!error) selection.set({ seedPattern: seedPattern.value });
  });
  const seedControl = labelled('Seed pattern', el('span', {}, [seedPattern, seedMessage]));

  const band = el('select', {
    title: 'What the shaded band around a group’s mean spans: the lowest to the highest run, or '
      + 'one standard deviation of the runs either side of the mean.',
    attrs: { 'aria-label': 'Band', 'data-control': 'band' },
  }, BAND_KINDS.map((b) => el('option', { text: b.label, attrs: { value: b.id } })));
  band.addEventListener('change', () => selection.set({ band: band.value === 'std' ? 'std' : 'minmax' }));
  const bandControl = labelled('Band', band);

  const reload = el('button', { text: 'Reload', attrs: { type: 'button', 'data-control': 'reload' } });
  reload.addEventListener('click', onReload);

  const element = el('div', { className: CSS.toolbar, attrs: { role: 'toolbar' } }, [
    labelled('Metric', metric),
    labelled('Log y', logY),
    labelled('Smoothing', el('span', {}, [smoothing, smoothingValue])),
    labelled('Runs', layout),
    seedControl,
    bandControl,
    reload,
  ]);

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  function update(state, changed) {
    if (changed.has('runs') || changed.has('metric')) {
      const logged = new Set(state.runs.flatMap((r) => r.metrics));
      const offered = METRICS.filter((m) => logged.has(m.id) || m.id === state.metric);
      metric.replaceChildren(...offered.map((m) => el('option', { text: m.label, attrs: { value: m.id } })));
      metric.value = state.metric;
    }
    logY.checked = state.logY;
    smoothing.value = String(state.smoothing);
    smoothingValue.textContent = state.smoothing.toFixed(2);
    layout.value = state.layout;
    seedControl.hidden = state.layout !== 'averaged';
    bandControl.hidden = state.layout !== 'averaged';
    band.value = state.band;
    if (changed.has('seedPattern') && seedPattern.value !== state.seedPattern) seedPattern.value = state.seedPattern;
  }

  return { element, update };
}
