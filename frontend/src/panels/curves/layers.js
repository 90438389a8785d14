// @ts-check
/**
 * @file Panel: per-layer curves of the chosen metric, one line per layer coloured by depth.
 */

import { visibleLayers } from '../../core/selection.js';
import { createCurvesPanel } from './view.js';

/** @type {import('../../core/panel.js').PanelFactory} */
export function createLayerCurvesPanel(context) {
  return createCurvesPanel(context, {
    id: 'layer-curves',
    title: 'Per-layer curves',
    hint: 'The chosen metric against step, one line per layer, coloured from input to output. '
      + 'Drag to zoom, double-click to reset.',
    target: 'layers',
    seriesOf: (run) => run.layers,
    keep: visibleLayers,
    nothing: 'No layer dynamics logged yet.',
    leads: true,
  });
}
