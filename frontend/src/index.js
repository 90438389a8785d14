// @ts-check
/**
 * @file Entry point of the Layer Dynamics tab. TensorBoard loads this module in the plugin's
 * iframe and calls `render()` once; it lays out the picker, the toolbar and the panels, and wires
 * them to one selection and one model.
 *
 * A new panel is a module exporting a `PanelFactory` plus one entry in `PANELS`.
 */

import 'uplot/dist/uPlot.min.css';
import './styles.css';

import { createRunColors } from './core/colors.js';
import { CSS } from './core/constants.js';
import { el } from './core/dom.js';
import { Model } from './core/api.js';
import { createGroupCurvesPanel } from './panels/curves/groups.js';
import { createFilmstripPanel } from './panels/filmstrip/index.js';
import { createHeatmapPanel } from './panels/heatmap/index.js';
import { createLayerCurvesPanel } from './panels/curves/layers.js';
import { createPickerPanel } from './panels/picker/index.js';
import { createPopulationPanel } from './panels/population/index.js';
import { createSettlingPanel } from './panels/settling/index.js';
import { createSummaryPanel } from './panels/summary/index.js';
import { createSweepsPanel } from './panels/sweeps/index.js';
import { createPaintGate } from './core/paint_gate.js';
import { Selection } from './core/selection.js';
import { createToolbar } from './core/toolbar.js';

/** Panels in page order. */
/** @type {import('./core/panel.js').PanelFactory[]} */
const PANELS = [
  createLayerCurvesPanel,
  createHeatmapPanel,
  createSettlingPanel,
  createPopulationPanel,
  createSummaryPanel,
  createGroupCurvesPanel,
  createSweepsPanel,
  createFilmstripPanel,
];

/** Links the bundle's stylesheet, which sits next to this module. */
function linkStylesheet() {
  const href = new URL('./index.css', import.meta.url).href;
  if (document.querySelector(`link[href="${href}"]`)) return;
  document.head.append(el('link', { attrs: { rel: 'stylesheet', href } }));
}

/** How long to wait before asking again while the server is still reading the logdir. */
const LOADING_POLL_MS = 1500;

/**
 * Asks for the run list, keeping what the user chose; runs not seen before start ticked. While the
 * server is still reading the logdir for the first time, asks again until it is done.
 * @param {Model} model
 * @param {Selection} selection
 * @param {Set<string>} seen runs listed by earlier loads.
 * @param {{timer: ReturnType<typeof setTimeout> | null}} polling the pending follow-up, if any.
 */
async function loadRuns(model, selection, seen, polling) {
  if (polling.timer !== null) clearTimeout(polling.timer);
  polling.timer = null;
  if (selection.state.runs.length === 0) selection.set({ status: 'loading', error: '' });
  try {
    const { runs, loading } = await model.runs();
    const names = new Set(runs.map((r) => r.run));
    const checked = selection.state.checked
      .filter((name) => names.has(name))
      .concat(runs.map((r) => r.run).filter((name) => !seen.has(name)));
    for (const name of names) seen.add(name);
    const logged = runs.flatMap((r) => r.metrics);
    const metric = logged.includes(selection.state.metric) || logged.length === 0 ? selection.state.metric : logged[0];
    const unchanged = JSON.stringify(runs) === JSON.stringify(selection.state.runs);
    if (!unchanged || selection.state.status !== 'ready') selection.set({ runs, checked, metric, status: 'ready' });
    if (loading) {
      polling.timer = setTimeout(() => {
        model.reload();
        loadRuns(model, selection, seen, polling);
      }, LOADING_POLL_MS);
    }
  } catch (e) {
    selection.set({ status: 'error', error: e instanceof Error ? e.message : String(e) });
  }
}

/** Builds the tab into the document; TensorBoard calls this once. */
export function render() {
  linkStylesheet();
  const model = new Model();
  const selection = new Selection();
  const context = { model, selection, runColor: createRunColors(), firstPaint: createPaintGate() };
  /** @type {Set<string>} */
  const seen = new Set();
  const polling = { timer: null };
  const reload = () => {
    model.reload();
    loadRuns(model, selection, seen, polling);
  };
  const picker = createPickerPanel(context);
  const toolbar = createToolbar(context, reload);
  const panels = PANELS.map((create) => create(context));
  const root = el('div', { className: CSS.root }, [
    picker.element,
    el('main', { className: CSS.main }, [toolbar.element, ...panels.map((p) => p.element)]),
  ]);
  document.body.append(root);
  const everything = new Set(Object.keys(selection.state));
  for (const part of [picker, toolbar, ...panels]) {
    selection.subscribe(part.update);
    part.update(selection.state, everything);
  }
  loadRuns(model, selection, seen, polling);
}
