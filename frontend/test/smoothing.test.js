import assert from 'node:assert/strict';
import { test } from 'node:test';

import { smoothSeries } from '../src/core/smoothing.js';

/**
 * Slow reference: the debiased EMA at each point, summed afresh over the defined values so far.
 * @param {Array<number|null>} values
 * @param {number} w
 */
function reference(values, w) {
  const defined = [];
  return values.map((v) => {
    if (v === null || !Number.isFinite(v)) return null;
    defined.push(v);
    const n = defined.length;
    let sum = 0;
    for (let k = 0; k < n; k++) sum += (1 - w) * w ** (n - 1 - k) * defined[k];
    return sum / (1 - w ** n);
  });
}

test('matches the debiased EMA written out term by term, gaps kept', () => {
  const values = [3, null, 1, 4, NaN, 1, 5, Infinity, 9, 2, 6];
  for (const w of [0.3, 0.6, 0.95]) {
    const got = smoothSeries(values, w);
    const want = reference(values, w);
    assert.equal(got.length, want.length);
    got.forEach((g, i) => {
      if (want[i] === null) assert.equal(g, null, `index ${i}`);
      else assert.ok(Math.abs(g - want[i]) < 1e-12, `index ${i}: ${g} vs ${want[i]}`);
    });
  }
});

test('a constant series stays constant: no pull towards zero at the start', () => {
  const got = smoothSeries([2, 2, 2, 2], 0.9);
  for (const v of got) assert.ok(Math.abs(v - 2) < 1e-12);
});

test('weight 0 returns an equal copy, weight 1 is refused', () => {
  const values = [1, null, 3];
  const got = smoothSeries(values, 0);
  assert.deepEqual(got, values);
  assert.notEqual(got, values);
  assert.throws(() => smoothSeries(values, 1), /below 1/);
});
