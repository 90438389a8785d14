// @ts-check
/**
 * @file Names and limits of the interpolation-sweeps panel: its CSS classes, scopes, labels and
 * how much it draws at once. Kept apart from constants.js so the sweeps panel is one self-contained
 * slice of the tab; colours and the depth ramp still come from constants.js.
 */

/** CSS class names; style.css beside this module defines each. */
export const SWEEP_CSS = Object.freeze({
  controls: 'ld-sweep-controls',
  section: 'ld-sweep-section',
  sectionTitle: 'ld-sweep-section-title',
  grid: 'ld-sweep-grid',
  multiples: 'ld-sweep-multiples',
  multiple: 'ld-sweep-multiple',
  travel: 'ld-sweep-travel',
  tables: 'ld-sweep-tables',
  table: 'ld-sweep-table',
  caption: 'ld-sweep-caption',
  change: 'ld-sweep-change',
  label: 'ld-sweep-label',
  labelRobust: 'ld-sweep-label-robust',
  labelAmbient: 'ld-sweep-label-ambient',
  labelUndefined: 'ld-sweep-label-undefined',
  thresholdInvalid: 'ld-sweep-threshold-invalid',
  message: 'ld-sweep-message',
});

/** The scopes of an interpolation sweep, in the order the routes sort them. */
export const SWEEP_SCOPES = Object.freeze(['model', 'layers', 'parameters', 'robustness']);

/** The `sweep` route's scopes that hold curves against alpha (robustness holds a table). */
export const CURVE_SCOPES = Object.freeze(['model', 'layers', 'parameters']);

/** Step choices besides a number: each run's latest sweep, or every sweep of each run. */
export const LATEST = 'latest';
export const EVERY_STEP = 'every';

/**
 * Most sweeps (run and step pairs) drawn together. Past it the oldest steps are left out: a dozen
 * overlaid sweeps are already hard to tell apart, and each costs a request per scope.
 */
export const SWEEPS_MAX = 12;

/** Most per-parameter small multiples drawn; more would be too many charts to read or to draw. */
export const MULTIPLES_MAX = 60;

/** Heights of the sweep charts in CSS pixels. */
export const SWEEP_CHART_HEIGHT = 260;
export const SWEEP_MULTIPLE_HEIGHT = 170;

/** Narrowest chart in CSS pixels before charts stop sharing a row. */
export const SWEEP_CHART_MIN_WIDTH = 380;
export const SWEEP_MULTIPLE_MIN_WIDTH = 260;

/** Column headers of the robustness table, per condition. */
export const CONDITIONS = Object.freeze([
  { id: 'reinitialized', label: 're-initialized', title: 'the layer put back to its start weights θ₀' },
  { id: 'rerandomized', label: 're-randomized', title: 'the layer given a fresh draw of its initializer' },
]);
