import assert from 'node:assert/strict';
import { test } from 'node:test';

import { depthColor } from '../src/core/colors.js';
import { RUN_DASHES } from '../src/core/constants.js';
import { EVERY_STEP, LATEST } from '../src/panels/sweeps/constants.js';
import {
  ascendingAlphas, chooseSweeps, formatChange, layerPredicate, layersChart, modelChart,
  parameterMultiples, parseThreshold, robustnessRows, sweepMetrics, sweepSteps,
} from '../src/panels/sweeps/shaping.js';

/** A `sweeps` answer with every scope at each step. */
function list(run, steps, scopes = ['model', 'layers', 'robustness']) {
  return { run, sweeps: steps.flatMap((step) => scopes.map((scope) => ({ step, scope }))) };
}

/** A `sweep` answer of an interpolation scope: curve c at alpha a is `base + c + a` per metric. */
function curves(run, step, scope, names, alphas, extra = {}) {
  const columns = {};
  for (const [k, metric] of ['loss', 'accuracy'].entries()) {
    columns[metric] = [alphas, ...names.map((_, c) => alphas.map((a) => 10 * k + c + a))];
  }
  return {
    run, step, scope, metrics: ['loss', 'accuracy'], alphas, curves: names,
    travel: names.map((_, c) => c + 0.5), columns, ...extra,
  };
}

const colourOf = (run) => ({ a: '#111111', b: '#222222' })[run];

test('steps are the union over runs, ascending', () => {
  assert.deepEqual(sweepSteps([list('a', [30, 10]), list('b', [20, 30])]), [10, 20, 30]);
  assert.deepEqual(sweepSteps([{ run: 'a', sweeps: [] }]), []);
});

test('latest by default: one sweep per run, with every scope it logged at that step', () => {
  const { sweeps, notes } = chooseSweeps([list('a', [10, 30]), list('b', [20])], LATEST);
  assert.deepEqual(sweeps.map((s) => [s.run, s.step]), [['a', 30], ['b', 20]]);
  assert.deepEqual(sweeps[0].scopes, ['model', 'layers', 'robustness']);
  assert.equal(sweeps[0].label, 'a @ step 30');
  assert.deepEqual(sweeps.map((s) => s.dash), [RUN_DASHES[0], RUN_DASHES[1]]);
  assert.deepEqual(notes, []);
});

test('every step compares within a run, newest first; a chosen step notes runs without it', () => {
  const lists = [list('a', [10, 30, 20]), list('b', [20]), { run: 'c', sweeps: [] }];
  const every = chooseSweeps(lists, EVERY_STEP);
  assert.deepEqual(every.sweeps.map((s) => [s.run, s.step]), [['a', 30], ['a', 20], ['a', 10], ['b', 20]]);
  assert.deepEqual(every.notes, ['No sweeps logged in run c.']);
  const at = chooseSweeps(lists, '10');
  assert.deepEqual(at.sweeps.map((s) => [s.run, s.step]), [['a', 10]]);
  assert.deepEqual(at.notes, ['Run b took no sweep at step 10.', 'No sweeps logged in run c.']);
  const none = chooseSweeps([{ run: 'c', sweeps: [] }, { run: 'd', sweeps: [] }], LATEST);
  assert.deepEqual(none, { sweeps: [], notes: ['No sweeps logged in runs c, d.'] });
});

test('a cap keeps the newest sweep of every run before older steps of any', () => {
  const lists = [list('a', [1, 2, 3, 4]), list('b', [5, 6])];
  const { sweeps, notes } = chooseSweeps(lists, EVERY_STEP, 3);
  assert.deepEqual(sweeps.map((s) => [s.run, s.step]), [['a', 4], ['a', 3], ['b', 6]]);
  assert.deepEqual(notes, ['Showing the 3 most recent of 6 sweeps.']);
});

test('alphas are put in ascending order with their values, and left alone when they are', () => {
  const sorted = [[0, 0.5, 1], [3, 2, 1]];
  assert.equal(ascendingAlphas(sorted), sorted);
  assert.deepEqual(ascendingAlphas([[1, -0.5, 0], [10, 20, 30], [null, 2, 3]]), [[-0.5, 0, 1], [20, 30, 10], [2, 3, null]]);
});

test('the model chart overlays sweeps on one alpha column, one line per sweep in its run colour', () => {
  const { sweeps } = chooseSweeps([list('a', [10, 30]), list('b', [30])], EVERY_STEP);
  const alphas = [0, 0.5, 1];
  const parts = sweeps.map((sweep) => ({ sweep, payload: curves(sweep.run, sweep.step, 'model', ['model'], alphas) }));
  const chart = modelChart(parts, 'accuracy', colourOf);
  assert.equal(chart.columns[0], alphas);
  assert.deepEqual(chart.columns.slice(1), [[10, 10.5, 11], [10, 10.5, 11], [10, 10.5, 11]]);
  assert.deepEqual(chart.lines.map((l) => [l.run, l.color, l.dash]), sweeps.map((s) => [s.label, colourOf(s.run), s.dash]));
  assert.equal(modelChart(parts, 'no_such_metric', colourOf), null);
});

test('sweeps with different alphas are merged, with gaps where a sweep has no value', () => {
  const [a, b] = chooseSweeps([list('a', [1]), list('b', [1])], LATEST).sweeps;
  const parts = [
    { sweep: a, payload: curves('a', 1, 'model', ['model'], [0, 1]) },
    { sweep: b, payload: curves('b', 1, 'model', ['model'], [0, 0.5, 1]) },
  ];
  const chart = modelChart(parts, 'loss', colourOf);
  assert.deepEqual(chart.columns, [[0, 0.5, 1], [0, null, 1], [0, 0.5, 1]]);
});

test('layer curves are coloured by depth, filtered, and dashed per sweep only when compared', () => {
  const layers = ['conv1', 'conv2', 'fc1'];
  const alphas = [0, 1];
  const one = chooseSweeps([list('a', [5])], LATEST).sweeps;
  const single = layersChart([{ sweep: one[0], payload: curves('a', 5, 'layers', layers, alphas) }], 'loss', () => true);
  assert.deepEqual(single.lines.map((l) => [l.series, l.color]), layers.map((n, i) => [n, depthColor(i, 3)]));
  assert.deepEqual(single.lines.map((l) => l.dash), [[], [], []]);
  assert.equal(single.dashed, false);
  assert.deepEqual(single.columns, [alphas, [0, 1], [1, 2], [2, 3]]);

  const two = chooseSweeps([list('a', [5, 9])], EVERY_STEP).sweeps;
  const parts = two.map((sweep) => ({ sweep, payload: curves('a', sweep.step, 'layers', layers, alphas) }));
  const filtered = layersChart(parts, 'loss', (name) => name.startsWith('conv'));
  assert.deepEqual(filtered.lines.map((l) => [l.series, l.run]), [
    ['conv1', 'a @ step 9'], ['conv2', 'a @ step 9'], ['conv1', 'a @ step 5'], ['conv2', 'a @ step 5'],
  ]);
  assert.equal(filtered.dashed, true);
  assert.deepEqual(filtered.lines.map((l) => l.dash), [two[0].dash, two[0].dash, two[1].dash, two[1].dash]);
  assert.deepEqual(filtered.layers.map((l) => l.name), ['conv1', 'conv2']);
  assert.equal(layersChart(parts, 'loss', () => false), null);
});

test('a small multiple per scalar gathers it from every sweep, with each sweep\'s travel', () => {
  const names = ['conv1.weight[0, 0, 1, 2]', 'fc1.bias[3]'];
  const parameters = [
    { layer: 'conv1', parameter: 'conv1.weight', index: [0, 0, 1, 2] },
    { layer: 'fc1', parameter: 'fc1.bias', index: [3] },
  ];
  const sweeps = chooseSweeps([list('a', [5]), list('b', [5])], LATEST).sweeps;
  const parts = sweeps.map((sweep) => ({ sweep, payload: curves(sweep.run, 5, 'parameters', names, [0, 1], { parameters }) }));
  const { multiples, left } = parameterMultiples(parts, 'loss', () => true, colourOf);
  assert.equal(left, 0);
  assert.deepEqual(multiples.map((m) => [m.name, m.layer]), [[names[0], 'conv1'], [names[1], 'fc1']]);
  assert.deepEqual(multiples[1].columns, [[0, 1], [1, 2], [1, 2]]);
  assert.deepEqual(multiples[1].lines.map((l) => [l.run, l.color]), [['a @ step 5', '#111111'], ['b @ step 5', '#222222']]);
  assert.deepEqual(multiples[1].travel.map((t) => [t.sweep.run, t.travel]), [['a', 1.5], ['b', 1.5]]);

  const onlyFc = parameterMultiples(parts, 'loss', (layer) => layer === 'fc1', colourOf);
  assert.deepEqual(onlyFc.multiples.map((m) => m.name), [names[1]]);
  const capped = parameterMultiples(parts, 'loss', () => true, colourOf, 1);
  assert.equal(capped.multiples.length, 1);
  assert.equal(capped.left, 1);
});

test('robustness rows: change from the end model per condition, null where undefined', () => {
  const payload = {
    run: 'a', step: 5, scope: 'robustness', layers: ['conv1', 'fc1', 'fc2'], metrics: ['loss', 'accuracy'],
    end: { loss: 0.25, accuracy: 0.75 },
    reinitialized: { loss: [2.5, 0.5, null], accuracy: [0.125, 0.5, 0.75] },
    rerandomized: { loss: [3, null, 0.25], accuracy: [0.0625, null, 0.75] },
    threshold: 0.02, label_metric: 'accuracy', labels: ['robust', 'robust', 'ambient'],
  };
  const rows = robustnessRows(payload, () => true);
  // Reference: each value minus the end value, written out.
  assert.deepEqual(rows.map((r) => r.layer), ['conv1', 'fc1', 'fc2']);
  assert.deepEqual(rows.map((r) => r.label), ['robust', 'robust', 'ambient']);
  assert.deepEqual(rows[0].changes, {
    loss: { reinitialized: 2.25, rerandomized: 2.75 },
    accuracy: { reinitialized: -0.625, rerandomized: -0.6875 },
  });
  assert.deepEqual(rows[1].changes.loss, { reinitialized: 0.25, rerandomized: null });
  assert.deepEqual(rows[2].changes.loss, { reinitialized: null, rerandomized: 0 });
  assert.deepEqual(robustnessRows(payload, (l) => l !== 'fc1').map((r) => r.layer), ['conv1', 'fc2']);
});

test('the layer predicate applies the regex and the chosen group', () => {
  const runs = [{ groups: [{ name: 'early', members: ['conv1', 'conv2'] }] }];
  const all = layerPredicate('', '', runs);
  assert.ok(all('conv1') && all('fc3'));
  const early = layerPredicate('', 'early', runs);
  assert.ok(early('conv2') && !early('fc1'));
  const both = layerPredicate('2$', 'early', runs);
  assert.ok(both('conv2') && !both('conv1'));
  // A filter that is no regex yet (mid-typing) hides nothing, as in the other panels.
  assert.ok(layerPredicate('conv(', '', runs)('fc1'));
});

test('metrics come in first-seen order across sweeps', () => {
  assert.deepEqual(sweepMetrics([{ metrics: ['loss', 'accuracy'] }, { metrics: ['loss', 'top5'] }]), ['loss', 'accuracy', 'top5']);
});

test('thresholds: empty means each sweep\'s own; bad ones are refused with the text', () => {
  assert.deepEqual(parseThreshold('  '), { value: null, error: null });
  assert.deepEqual(parseThreshold('0.05'), { value: 0.05, error: null });
  assert.deepEqual(parseThreshold('0'), { value: 0, error: null });
  for (const bad of ['-1', 'abc', 'Infinity']) {
    const { value, error } = parseThreshold(bad);
    assert.equal(value, null);
    assert.match(error, new RegExp(bad));
  }
});

test('changes read with their sign', () => {
  assert.equal(formatChange(0.125), '+0.125');
  assert.equal(formatChange(-2.5), '−2.5');
  assert.equal(formatChange(0), '0');
  assert.equal(formatChange(null), '–');
});

test('a population without sweeps is named by a few runs and counted', async () => {
  const { chooseSweeps: choose } = await import('../src/panels/sweeps/shaping.js');
  const lists = Array.from({ length: 1000 }, (_, i) => ({ run: `run${i}`, sweeps: [] }));
  const { sweeps, notes } = choose(lists, 'latest');
  assert.equal(sweeps.length, 0);
  assert.deepEqual(notes, ['No sweeps logged in runs run0, run1, run2, run3, run4 and 995 more.']);
  assert.deepEqual(choose(lists.slice(0, 2), 'latest').notes, ['No sweeps logged in runs run0, run1.']);
});
