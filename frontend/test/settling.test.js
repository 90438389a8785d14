import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { groupRunsBySeed, DEFAULT_SEED_PATTERN, spreadOf } from '../src/core/seed_average.js';
import { smoothSeries } from '../src/core/smoothing.js';
import {
  earliestStep, parsePercent, rankCorrelation, settlingCorrelation, settlingStep,
} from '../src/panels/settling/rule.js';

/** Curves and answers the reader's tests (tests/test_settling.py) check too. */
const CASES = JSON.parse(readFileSync(new URL('../../tests/fixtures/settling_cases.json', import.meta.url), 'utf8'));
/** @type {Record<string, number>} */
const TOKENS = { NaN, Infinity, '-Infinity': -Infinity };

/**
 * Plain reference: try every step in order and return the first whose value, and every later one,
 * is defined-and-below the threshold or undefined, provided the step's own value is defined.
 * @param {number[]} steps
 * @param {Array<number|null>} values
 * @param {number} fraction
 */
function reference(steps, values, fraction) {
  const finite = values.filter((v) => typeof v === 'number' && Number.isFinite(v));
  if (finite.length === 0) return { state: 'no data', step: null };
  const peak = Math.max(...finite);
  if (peak <= 0) return { state: 'never moved', step: null };
  const ok = (v) => !(typeof v === 'number' && Number.isFinite(v)) || v < fraction * peak;
  for (let i = 0; i < steps.length; i++) {
    const v = values[i];
    if (!(typeof v === 'number' && Number.isFinite(v))) continue;
    if (values.slice(i).every(ok)) return { state: 'settled', step: steps[i] };
  }
  return { state: 'not yet', step: null };
}

test('settles at the first step after which the metric stays below the fraction of its peak', () => {
  const steps = [0, 10, 20, 30, 40, 50];
  // Peak 1.0: 10% is 0.1; the dip at step 20 does not count, the rise at 30 undoes it.
  const values = [null, 1.0, 0.05, 0.2, 0.09, 0.01];
  assert.deepEqual(settlingStep(steps, values, 0.1), { state: 'settled', step: 40, peak: 1.0 });
  assert.deepEqual(settlingStep(steps, values, 0.5), { state: 'settled', step: 20, peak: 1.0 });
});

test('a layer still above the threshold at its last value has not settled yet', () => {
  const got = settlingStep([0, 1, 2], [1, 0.01, 0.5], 0.1);
  assert.equal(got.state, 'not yet');
  assert.equal(got.step, null);
});

test('gaps, NaN and infinities are skipped; frozen and empty series are told apart', () => {
  assert.deepEqual(settlingStep([0, 1, 2, 3], [2, NaN, 0.1, null], 0.1), { state: 'settled', step: 2, peak: 2 });
  assert.equal(settlingStep([0, 1], [Infinity, 1], 0.5).peak, 1);
  assert.equal(settlingStep([0, 1], [0, 0], 0.1).state, 'never moved');
  assert.equal(settlingStep([0, 1], [null, NaN], 0.1).state, 'no data');
});

test('random series agree with the reference', () => {
  let seed = 3;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let trial = 0; trial < 200; trial++) {
    const n = 1 + Math.floor(random() * 30);
    const steps = Array.from({ length: n }, (_, i) => i * 3);
    const decay = random();
    const values = steps.map((_, i) => {
      const u = random();
      if (u < 0.1) return null;
      if (u < 0.13) return NaN;
      return Math.exp(-decay * i) * (0.5 + random());
    });
    const fraction = [0.05, 0.1, 0.3, 1][trial % 4];
    const got = settlingStep(steps, values, fraction);
    const want = reference(steps, values, fraction);
    assert.equal(got.state, want.state, `trial ${trial}`);
    assert.equal(got.step, want.step, `trial ${trial}`);
  }
});

test('the earliest settled step, ignoring layers that have not settled', () => {
  assert.equal(
    earliestStep([
      { state: 'not yet', step: null, peak: 1 },
      { state: 'settled', step: 40, peak: 1 },
      { state: 'settled', step: 20, peak: 1 },
      { state: 'no data', step: null, peak: null },
    ]),
    20,
  );
  assert.equal(earliestStep([{ state: 'not yet', step: null, peak: 1 }]), null);
});

test('the percentage a user types is checked and named in the message', () => {
  assert.deepEqual(parsePercent(' 10 '), { fraction: 0.1, error: null });
  assert.deepEqual(parsePercent('100'), { fraction: 1, error: null });
  for (const bad of ['', '0', '-5', '101', 'ten']) {
    const got = parsePercent(bad);
    assert.equal(got.fraction, null);
    assert.match(/** @type {string} */ (got.error), /% of peak/);
  }
});

test('curves with known answers, shared with the reader', () => {
  for (const c of CASES.runs) {
    /** @type {Array<Array<number | null>>} */
    const values = c.values.map((/** @type {Array<number | string | null>} */ layer) => layer.map(
      (v) => (typeof v === 'string' ? TOKENS[v] : v),
    ));
    const results = values.map((v) => settlingStep(c.steps, c.smoothing > 0 ? smoothSeries(v, c.smoothing) : v, c.fraction));
    assert.deepEqual(
      results.map((r) => ({ state: r.state, step: r.step })),
      c.expected,
      c.name,
    );
    const rho = settlingCorrelation(results);
    if (c.correlation === null) assert.equal(rho, null, c.name);
    else assert.ok(Math.abs(/** @type {number} */ (rho) - c.correlation) < 1e-12, `${c.name}: ${rho}`);
  }
});

test('seed groups and the spread of their correlations, shared with the reader', () => {
  const { runs, expected } = CASES.groups;
  const byName = new Map(runs.map((/** @type {{name: string, correlation: number | null}} */ r) => [r.name, r.correlation]));
  const { groups } = groupRunsBySeed(runs.map((/** @type {{name: string}} */ r) => r.name), DEFAULT_SEED_PATTERN);
  assert.deepEqual(groups.map((g) => g.name), expected.map((/** @type {{name: string}} */ e) => e.name));
  groups.forEach((group, k) => {
    const want = expected[k];
    assert.deepEqual(group.runs, want.runs);
    const got = spreadOf(group.runs.map((run) => byName.get(run) ?? null));
    assert.equal(got.count, want.count);
    for (const key of /** @type {const} */ (['mean', 'std', 'low', 'high'])) {
      if (want[key] === null) assert.equal(got[key], null, key);
      else assert.ok(Math.abs(/** @type {number} */ (got[key]) - want[key]) < 1e-12, `${group.name} ${key}`);
    }
  });
});

/**
 * Spearman's rho from its definition: mean ranks counted by comparison, then Pearson.
 * @param {number[]} x
 * @param {number[]} y
 */
function referenceSpearman(x, y) {
  const ranks = (/** @type {number[]} */ v) => v.map(
    (a) => 1 + v.filter((b) => b < a).length + (v.filter((b) => b === a).length - 1) / 2,
  );
  const rx = ranks(x);
  const ry = ranks(y);
  const mean = (/** @type {number[]} */ v) => v.reduce((a, b) => a + b, 0) / v.length;
  const mx = mean(rx);
  const my = mean(ry);
  let cov = 0;
  let vx = 0;
  let vy = 0;
  rx.forEach((a, i) => {
    cov += (a - mx) * (ry[i] - my);
    vx += (a - mx) ** 2;
    vy += (ry[i] - my) ** 2;
  });
  return cov / Math.sqrt(vx * vy);
}

test('the rank correlation agrees with its definition, ties and Infinity included', () => {
  let seed = 11;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let trial = 0; trial < 200; trial++) {
    const n = 2 + Math.floor(random() * 11);
    const x = Array.from({ length: n }, () => Math.floor(random() * 6));
    const y = Array.from({ length: n }, () => (random() < 0.2 ? Infinity : Math.floor(random() * 5) * 10));
    const got = rankCorrelation(x, y);
    if (new Set(x).size === 1 || new Set(y).size === 1) {
      assert.equal(got, null, `trial ${trial}`);
      continue;
    }
    assert.ok(Math.abs(/** @type {number} */ (got) - referenceSpearman(x, y)) < 1e-12, `trial ${trial}`);
  }
  assert.equal(rankCorrelation([1], [2]), null);
  assert.throws(() => rankCorrelation([1, 2], [1]), /equal lengths/);
});

test('depth against settling step: not yet counts last, frozen and empty layers are left out', () => {
  /** @type {import('../src/panels/settling/rule.js').Settling[]} */
  const results = [
    { state: 'never moved', step: null, peak: 0 },
    { state: 'settled', step: 30, peak: 1 },
    { state: 'not yet', step: null, peak: 1 },
    { state: 'no data', step: null, peak: null },
    { state: 'settled', step: 10, peak: 1 },
  ];
  // Kept: depths 1, 2, 4 with steps 30, after everything, 10.
  assert.ok(Math.abs(/** @type {number} */ (settlingCorrelation(results)) - referenceSpearman([1, 2, 4], [30, 99, 10])) < 1e-12);
  assert.equal(settlingCorrelation(results.slice(0, 2)), null);
});
