// @ts-check
/**
 * @file Names and colours shared by every module: CSS classes, palettes, metric labels, limits.
 *
 * Keeping them here means a restyle or a new metric touches one file, and the stylesheet's class
 * names can be checked against a single list.
 */

/** CSS class names; the stylesheet (src/styles.css) defines each. Prefixed so nothing clashes. */
export const CSS = Object.freeze({
  root: 'ld-root',
  sidebar: 'ld-sidebar',
  main: 'ld-main',
  toolbar: 'ld-toolbar',
  control: 'ld-control',
  panel: 'ld-panel',
  panelHeader: 'ld-panel-header',
  panelTitle: 'ld-panel-title',
  panelHint: 'ld-panel-hint',
  panelBody: 'ld-panel-body',
  state: 'ld-state',
  stateLoading: 'ld-state-loading',
  stateEmpty: 'ld-state-empty',
  stateError: 'ld-state-error',
  section: 'ld-section',
  sectionTitle: 'ld-section-title',
  filter: 'ld-filter',
  filterInvalid: 'ld-filter-invalid',
  filterMessage: 'ld-filter-message',
  list: 'ld-list',
  listSpacer: 'ld-list-spacer',
  listWindow: 'ld-list-window',
  runRow: 'ld-run-row',
  layerRow: 'ld-layer-row',
  chip: 'ld-chip',
  count: 'ld-count',
  linkButton: 'ld-link-button',
  charts: 'ld-charts',
  chartsMultiples: 'ld-charts-multiples',
  chart: 'ld-chart',
  chartTitle: 'ld-chart-title',
  tooltip: 'ld-tooltip',
  legend: 'ld-legend',
  legendRamp: 'ld-legend-ramp',
  legendEntry: 'ld-legend-entry',
  legendMore: 'ld-legend-more',
  legendEnds: 'ld-legend-ends',
  legendSwatch: 'ld-legend-swatch',
  dash: 'ld-dash',
  heatmap: 'ld-heatmap',
  heatmapGrid: 'ld-heatmap-grid',
  heatmapLabels: 'ld-heatmap-labels',
  heatmapLabel: 'ld-heatmap-label',
  legendRuns: 'ld-legend-runs',
  heatmapCanvas: 'ld-heatmap-canvas',
  heatmapAxis: 'ld-heatmap-axis',
  summaryTable: 'ld-summary-table',
  summaryRow: 'ld-summary-row',
  summaryName: 'ld-summary-name',
  summaryCell: 'ld-summary-cell',
  summaryTrack: 'ld-summary-track',
  summaryBar: 'ld-summary-bar',
  summaryValue: 'ld-summary-value',
});

/**
 * Run colours, assigned in the order runs are first seen so a run keeps its colour for the session
 * (a qualitative palette that stays distinct on white and for common colour-vision deficiencies).
 */
export const RUN_PALETTE = Object.freeze([
  '#0072b2', '#e69f00', '#009e73', '#cc3311', '#56b4e9',
  '#cc79a7', '#6a3d9a', '#8c6d1f', '#117733', '#555555',
]);

/**
 * Depth ramp for per-layer lines, input (0) -> output (1). A sequential ramp ending in orange rather
 * than yellow keeps the last layers readable on a white background.
 */
export const DEPTH_RAMP = Object.freeze(['#1d0f8c', '#6a00a8', '#b12a90', '#e16462', '#f59c2f']);

/** Heatmap ramp for a log scale, small (dark) -> large (bright): settled layers read as dark rows. */
export const HEATMAP_RAMP = Object.freeze(['#440154', '#3b528b', '#21918c', '#5ec962', '#fde725']);

/** Heatmap cell whose value is exactly zero (a frozen layer): off the log scale, so its own colour. */
export const HEATMAP_ZERO = '#ffffff';

/** Heatmap cell with no defined value (not logged, or undefined such as RWC at the first step). */
export const HEATMAP_MISSING = '#d6d6d6';

/** Line dash per run when runs are overlaid in one chart (colour already encodes depth). */
export const RUN_DASHES = Object.freeze([[], [7, 4], [2, 3], [10, 3, 2, 3], [4, 2], [1, 2]]);

/** Most lines an overlaid chart draws dashed (see panels/curves.js for why there is a limit). */
export const DASHED_LINES_MAX = 120;

/**
 * Fewest solid lines a chart paints pixel by pixel (charts/raster.js) instead of stroking them:
 * past a few hundred, stroking each line is what the page spends its time on.
 */
export const RASTER_LINES_MIN = 400;

/** Metrics the curves can show, in menu order, with how they are labelled. */
export const METRICS = Object.freeze([
  { id: 'rwc', label: 'RWC (‖Δw‖₁ / ‖w‖₁)' },
  { id: 'rwc_elementwise', label: 'RWC, element-wise mean of |Δw| / |w|' },
  { id: 'distance_from_init', label: 'Distance from init ‖w − w₀‖₂' },
  { id: 'relative_distance_from_init', label: 'Relative distance ‖w − w₀‖₂ / ‖w₀‖₂' },
  { id: 'update_size', label: 'Update size ‖Δw‖₂' },
  { id: 'weight_norm', label: 'Weight norm ‖w‖₂' },
  { id: 'grad_norm', label: 'Gradient norm ‖g‖₂' },
]);

/** Columns of the per-layer summary, from the `summary` route. */
export const SUMMARY_METRICS = Object.freeze([
  { id: 'distance_from_init', label: 'Distance travelled' },
  { id: 'relative_distance_from_init', label: 'Relative distance' },
  { id: 'rwc', label: 'Latest RWC' },
]);

/**
 * Points per series asked of the `series` route. The server keeps a min/max envelope beyond it (a
 * bin's low and high), so about one bin per pixel of a wide chart loses nothing visible, spikes
 * included, while bounding the transfer and the work per redraw.
 */
export const CURVE_MAX_POINTS = 2000;

/** Heatmap columns asked of the `heatmap` route: about one per pixel of a wide chart. */
export const HEATMAP_MAX_STEPS = 1200;

/** Heatmap row height bounds in CSS pixels; rows shrink towards the minimum for deep models. */
export const HEATMAP_ROW_MIN = 2;
export const HEATMAP_ROW_MAX = 16;

/** Smallest label spacing in CSS pixels; denser rows get every k-th label. */
export const LABEL_MIN_SPACING = 12;

/** Layers listed one by one in the curve legend; deeper models show the ramp and its ends only. */
export const LEGEND_MAX_ENTRIES = 24;

/**
 * Most runs a panel that draws one picture per run (the heatmap, the summary's bars, the small
 * multiples) draws at once; a population of a thousand ticked runs draws the first ones and says
 * so. The overlaid and averaged curves, the settling table and the population panel take every run.
 */
export const RUNS_DRAWN_MAX = 12;

/** Chart heights in CSS pixels. */
export const CHART_HEIGHT = 320;
export const MULTIPLE_HEIGHT = 220;
