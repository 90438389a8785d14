// @ts-check
/**
 * @file Panel: the chosen metric aggregated per group of layers (early / middle / late, blocks).
 */

import { unionNames } from '../../core/shaping.js';
import { createCurvesPanel } from './view.js';

/** @type {import('../../core/panel.js').PanelFactory} */
export function createGroupCurvesPanel(context) {
  return createCurvesPanel(context, {
    id: 'group-curves',
    title: 'Groups and blocks',
    hint: 'The same metric over groups of layers (blocks, or the groups given when logging), '
      + 'coloured from the first group to the last.',
    target: 'groups',
    seriesOf: (run) => run.groups.map((g) => g.name),
    keep: (_state, runs) => new Set(unionNames(runs.map((r) => r.groups.map((g) => g.name)))),
    nothing: 'No layer dynamics logged yet.',
  });
}
