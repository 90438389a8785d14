import assert from 'node:assert/strict';
import { test } from 'node:test';

import { formatValue, logPosition, logTicks, niceTicks, valueRange } from '../src/core/scales.js';

test('log positions: ends at 0 and 1, the geometric mean in the middle, clamped', () => {
  assert.equal(logPosition(1e-4, 1e-4, 1), 0);
  assert.equal(logPosition(1, 1e-4, 1), 1);
  assert.ok(Math.abs(logPosition(1e-2, 1e-4, 1) - 0.5) < 1e-12);
  assert.equal(logPosition(1e-9, 1e-4, 1), 0);
  assert.equal(logPosition(10, 1e-4, 1), 1);
  assert.ok(Number.isNaN(logPosition(0, 1e-4, 1)));
  assert.ok(Number.isNaN(logPosition(-1, 1e-4, 1)));
  assert.equal(logPosition(3, 3, 3), 1);
});

test('log ticks are the powers of ten inside the range, or its ends within a decade', () => {
  assert.deepEqual(logTicks(3e-5, 0.2), [1e-4, 1e-3, 1e-2, 1e-1]);
  assert.deepEqual(logTicks(1e-3, 1e-1), [1e-3, 1e-2, 1e-1]);
  assert.deepEqual(logTicks(2, 5), [2, 5]);
  assert.deepEqual(logTicks(0, 5), []);
});

test('nice ticks are round, evenly spaced and inside the range', () => {
  assert.deepEqual(niceTicks(0, 199, 6), [0, 50, 100, 150]);
  assert.deepEqual(niceTicks(0, 10000, 5), [0, 2000, 4000, 6000, 8000, 10000]);
  assert.deepEqual(niceTicks(3, 17, 4), [5, 10, 15]);
  assert.deepEqual(niceTicks(7, 7, 4), [7]);
  for (const [lo, hi, n] of [[0, 1, 6], [12, 9999, 7], [0.001, 0.0173, 5]]) {
    const ticks = niceTicks(lo, hi, n);
    assert.ok(ticks.length >= 2, `${lo}..${hi}`);
    assert.ok(ticks.every((t) => t >= lo && t <= hi));
    const gaps = ticks.slice(1).map((t, i) => t - ticks[i]);
    assert.ok(gaps.every((g) => Math.abs(g - gaps[0]) < 1e-9 * hi));
    const mantissa = gaps[0] / 10 ** Math.floor(Math.log10(gaps[0]));
    assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-9), `gap ${gaps[0]}`);
  }
});

test('value range skips gaps and non-finite values, and finds the smallest positive one', () => {
  assert.deepEqual(valueRange([[null, 0, 3], [NaN, 0.5, Infinity], [2]]), { minPositive: 0.5, max: 3 });
  assert.deepEqual(valueRange([[null], [0]]), { minPositive: null, max: 0 });
  assert.deepEqual(valueRange([[]]), { minPositive: null, max: null });
});

test('numbers read compactly', () => {
  assert.equal(formatValue(null), '–');
  assert.equal(formatValue(NaN), '–');
  assert.equal(formatValue(0), '0');
  assert.equal(formatValue(0.012345), '0.01235');
  assert.equal(formatValue(2.5), '2.5');
  assert.equal(formatValue(1e-4), '1e-4');
  assert.equal(formatValue(1.5e-6), '1.5e-6');
  assert.equal(formatValue(123456), '1.23e5');
});
