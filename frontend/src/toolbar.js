// @ts-check
/**
 * @file The toolbar over the panels: metric, log-y, smoothing, overlay or small multiples, reload.
 */

import { CSS, METRICS } from './constants.js';
import { el } from './dom.js';

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
  ]);
  layout.addEventListener('change', () => selection.set({ layout: layout.value === 'multiples' ? 'multiples' : 'overlay' }));

  const reload = el('button', { text: 'Reload', attrs: { type: 'button', 'data-control': 'reload' } });
  reload.addEventListener('click', onReload);

  const element = el('div', { className: CSS.toolbar, attrs: { role: 'toolbar' } }, [
    labelled('Metric', metric),
    labelled('Log y', logY),
    labelled('Smoothing', el('span', {}, [smoothing, smoothingValue])),
    labelled('Runs', layout),
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
  }

  return { element, update };
}
