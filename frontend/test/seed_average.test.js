import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  averageRuns, bandEdges, DEFAULT_SEED_PATTERN, groupRunsBySeed, spreadOf,
} from '../src/core/seed_average.js';

/**
 * Slow reference: for each step any run logged, look up every run's value of the series at that
 * step by search, and take mean, min and max of the finite ones.
 * @param {Array<{names: string[], columns: Array<Array<number|null>>}>} tables
 * @param {string} name
 */
function reference(tables, name) {
  const steps = [...new Set(tables.flatMap((t) => t.columns[0]))].sort((a, b) => a - b);
  return {
    steps,
    rows: steps.map((step) => {
      const values = [];
      for (const t of tables) {
        const c = t.names.indexOf(name);
        if (c < 0) continue;
        const i = t.columns[0].indexOf(step);
        if (i < 0) continue;
        const v = t.columns[c + 1][i];
        if (typeof v === 'number' && Number.isFinite(v)) values.push(v);
      }
      if (values.length === 0) return { mean: null, low: null, high: null, std: null, count: 0 };
      const mean = values.reduce((a, b) => a + b, 0) / values.length;
      // Population standard deviation, from its definition.
      const std = Math.sqrt(values.map((v) => (v - mean) ** 2).reduce((a, b) => a + b, 0) / values.length);
      return { mean, low: Math.min(...values), high: Math.max(...values), std, count: values.length };
    }),
  };
}

/**
 * @param {ReturnType<typeof averageRuns>} got
 * @param {Array<{names: string[], columns: Array<Array<number|null>>}>} tables
 * @param {string[]} order
 */
function assertMatchesReference(got, tables, order) {
  for (const [k, name] of order.entries()) {
    const want = reference(tables, name);
    assert.deepEqual(got.steps, want.steps);
    const series = got.series[k];
    assert.equal(series.name, name);
    want.rows.forEach((row, i) => {
      assert.equal(series.count[i], row.count, `${name} count at step ${want.steps[i]}`);
      for (const key of /** @type {const} */ (['mean', 'low', 'high', 'std'])) {
        if (row[key] === null) assert.equal(series[key][i], null);
        else assert.ok(Math.abs(/** @type {number} */ (series[key][i]) - row[key]) < 1e-12, `${name} ${key} at ${i}`);
      }
    });
  }
}

test('groups runs by the name left once the seed is cut out, in first-seen order', () => {
  const runs = ['lenet5-seed0', 'mlp_seed0', 'lenet5-seed1', 'lenet/seed2', 'lenet/seed10', 'baseline', 'Seed3'];
  const { groups, error } = groupRunsBySeed(runs, DEFAULT_SEED_PATTERN);
  assert.equal(error, null);
  assert.deepEqual(groups, [
    { name: 'lenet5', runs: ['lenet5-seed0', 'lenet5-seed1'] },
    { name: 'mlp', runs: ['mlp_seed0'] },
    { name: 'lenet', runs: ['lenet/seed2', 'lenet/seed10'] },
    { name: 'baseline', runs: ['baseline'] },
    // The pattern would leave nothing: the run keeps its name.
    { name: 'Seed3', runs: ['Seed3'] },
  ]);
});

test('a blank pattern keeps runs apart; a broken one says why and keeps them apart too', () => {
  const runs = ['a-seed0', 'a-seed1'];
  assert.deepEqual(groupRunsBySeed(runs, ' ').groups.map((g) => g.runs), [['a-seed0'], ['a-seed1']]);
  const broken = groupRunsBySeed(runs, 'seed(');
  assert.match(/** @type {string} */ (broken.error), /Not a valid regular expression/);
  assert.equal(broken.groups.length, 2);
  assert.deepEqual(groupRunsBySeed(['x_rep1', 'x_rep2'], '_rep\\d').groups, [{ name: 'x', runs: ['x_rep1', 'x_rep2'] }]);
});

test('averages over unequal step sets with null, NaN and infinite gaps', () => {
  const tables = [
    { names: ['conv1', 'fc'], columns: [[0, 10, 20, 30], [null, 1, 2, 3], [5, NaN, 7, 8]] },
    { names: ['conv1', 'fc'], columns: [[0, 20, 40], [null, 4, 6], [1, Infinity, 2]] },
    { names: ['fc'], columns: [[10, 20], [3, -1]] },
  ];
  const order = ['conv1', 'fc'];
  const got = averageRuns(tables, order);
  assert.deepEqual(got.steps, [0, 10, 20, 30, 40]);
  assertMatchesReference(got, tables, order);
  // Step 0 of conv1: no run has a value, a gap rather than a zero.
  assert.equal(got.series[0].mean[0], null);
  assert.equal(got.series[0].mean[2], 3);
  assert.equal(got.series[1].low[2], -1);
});

test('a single-run group returns that run, with no spread', () => {
  const tables = [{ names: ['a', 'b'], columns: [[1, 2, 3], [0.5, null, 0.25], [2, 3, 4]] }];
  const got = averageRuns(tables, ['b', 'a']);
  assert.deepEqual(got.steps, [1, 2, 3]);
  assert.deepEqual(got.series.map((s) => s.name), ['b', 'a']);
  assert.deepEqual(got.series[1].mean, [0.5, null, 0.25]);
  assert.deepEqual(got.series[1].low, got.series[1].mean);
  assert.deepEqual(got.series[1].high, got.series[1].mean);
  assert.deepEqual(got.series[1].count, [1, 0, 1]);
});

test('a series no run has is left out; layers missing from some runs average over the others', () => {
  const tables = [
    { names: ['a'], columns: [[0, 1], [1, 2]] },
    { names: ['a', 'b'], columns: [[0, 1], [3, 4], [9, 9]] },
  ];
  const got = averageRuns(tables, ['a', 'b', 'nowhere']);
  assert.deepEqual(got.series.map((s) => s.name), ['a', 'b']);
  assertMatchesReference(got, tables, ['a', 'b']);
  assert.deepEqual(got.series[1].count, [1, 1]);
});

test('random tables agree with the reference', () => {
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let trial = 0; trial < 30; trial++) {
    const tables = [];
    const runs = 1 + Math.floor(random() * 4);
    for (let r = 0; r < runs; r++) {
      const steps = [];
      for (let s = 0; s < 40; s++) if (random() < 0.6) steps.push(s * 5);
      const names = ['l0', 'l1', 'l2'].filter(() => random() < 0.8);
      const value = () => {
        const u = random();
        if (u < 0.1) return null;
        if (u < 0.15) return NaN;
        return random() * 10 - 2;
      };
      tables.push({ names, columns: [steps, ...names.map(() => steps.map(value))] });
    }
    const order = ['l0', 'l1', 'l2'].filter((n) => tables.some((t) => t.names.includes(n)));
    assertMatchesReference(averageRuns(tables, order), tables, order);
  }
});

test('the band spans min to max, or the mean ± one standard deviation', () => {
  const tables = [
    { names: ['a'], columns: [[0, 1, 2], [1, 2, null]] },
    { names: ['a'], columns: [[0, 1, 2], [3, 10, 4]] },
  ];
  const [series] = averageRuns(tables, ['a']).series;
  assert.deepEqual(series.std, [1, 4, 0]);
  assert.deepEqual(bandEdges(series, 'minmax', false), { lower: [1, 2, 4], upper: [3, 10, 4] });
  assert.deepEqual(bandEdges(series, 'std', false), { lower: [1, 2, 4], upper: [3, 10, 4] });
  const skewed = averageRuns([
    { names: ['a'], columns: [[0], [1]] }, { names: ['a'], columns: [[0], [1]] }, { names: ['a'], columns: [[0], [10]] },
  ], ['a']).series[0];
  const sd = Math.sqrt(18);
  assert.ok(Math.abs(/** @type {number} */ (skewed.std[0]) - sd) < 1e-12);
  const linear = bandEdges(skewed, 'std', false);
  assert.ok(Math.abs(/** @type {number} */ (linear.lower[0]) - (4 - sd)) < 1e-12);
  assert.ok(Math.abs(/** @type {number} */ (linear.upper[0]) - (4 + sd)) < 1e-12);
  // 4 - 4.24 < 0 has no place on a log axis: the band reaches down to the lowest run.
  assert.deepEqual(bandEdges(skewed, 'std', true).lower, [1]);
  const gap = averageRuns([{ names: ['a'], columns: [[0, 1], [null, 2]] }], ['a']).series[0];
  assert.deepEqual(bandEdges(gap, 'std', true), { lower: [null, 2], upper: [null, 2] });
});

test('the spread of some values leaves gaps out and agrees with its definition', () => {
  assert.deepEqual(spreadOf([null, NaN, Infinity]), { mean: null, std: null, low: null, high: null, count: 0 });
  let seed = 13;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let trial = 0; trial < 50; trial++) {
    const values = Array.from({ length: 1 + Math.floor(random() * 8) }, () => random() * 2 - 1);
    const got = spreadOf([null, ...values, NaN]);
    const mean = values.reduce((a, b) => a + b, 0) / values.length;
    const std = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / values.length);
    assert.equal(got.count, values.length);
    assert.ok(Math.abs(/** @type {number} */ (got.mean) - mean) < 1e-12);
    assert.ok(Math.abs(/** @type {number} */ (got.std) - std) < 1e-12);
    assert.equal(got.low, Math.min(...values));
    assert.equal(got.high, Math.max(...values));
  }
});
