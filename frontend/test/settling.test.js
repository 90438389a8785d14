import assert from 'node:assert/strict';
import { test } from 'node:test';

import { earliestStep, parsePercent, settlingStep } from '../src/panels/settling/rule.js';

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
