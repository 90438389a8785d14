import assert from 'node:assert/strict';
import { test } from 'node:test';

import { hexToRgb, sampleRamp } from '../src/core/colors.js';
import {
  compileFilter, heatmapPixels, joinColumns, matchingIndices, pickColumns, positiveOnly, unionNames,
} from '../src/core/shaping.js';

test('filters are case-insensitive regexes; a bad one says why', () => {
  assert.equal(compileFilter('  ').regex, null);
  const { regex } = compileFilter('^FC\\d');
  assert.ok(regex.test('fc1') && !regex.test('conv1'));
  const bad = compileFilter('conv(');
  assert.equal(bad.regex, null);
  assert.match(bad.error, /regular expression/);
});

test('matching indices honour both the regex and the group members', () => {
  const names = ['conv1', 'conv2', 'fc1', 'fc2'];
  assert.deepEqual(matchingIndices(names, null, null), [0, 1, 2, 3]);
  assert.deepEqual(matchingIndices(names, /2$/, null), [1, 3]);
  assert.deepEqual(matchingIndices(names, null, new Set(['fc2', 'conv1'])), [0, 3]);
  assert.deepEqual(matchingIndices(names, /fc/, new Set(['fc2', 'conv1'])), [3]);
});

test('picking columns keeps the steps and passes the chosen columns by reference', () => {
  const columns = [[0, 1], [1, 2], [3, 4], [5, 6]];
  const picked = pickColumns(columns, [2, 0]);
  assert.deepEqual(picked, [[0, 1], [5, 6], [1, 2]]);
  assert.equal(picked[0], columns[0]);
  assert.equal(picked[1], columns[3]);
});

test('union of names keeps first-seen order', () => {
  assert.deepEqual(unionNames([['a', 'b'], ['b', 'c', 'a'], []]), ['a', 'b', 'c']);
});

/**
 * Slow reference join: a map from step to the row of every series.
 * @param {Array<Array<Array<number|null>>>} tables
 */
function referenceJoin(tables) {
  const steps = [...new Set(tables.flatMap((t) => t[0]))].sort((a, b) => a - b);
  const out = [steps];
  for (const t of tables) {
    for (let c = 1; c < t.length; c++) {
      const byStep = new Map(t[0].map((s, i) => [s, t[c][i]]));
      out.push(steps.map((s) => (byStep.has(s) ? byStep.get(s) : null)));
    }
  }
  return out;
}

test('runs at the same steps are joined without copying', () => {
  const a = [[0, 10, 20], [1, 2, 3]];
  const b = [[0, 10, 20], [4, null, 6], [7, 8, 9]];
  const joined = joinColumns([a, b]);
  assert.deepEqual(joined, referenceJoin([a, b]));
  assert.equal(joined[0], a[0]);
  assert.equal(joined[2], b[1]);
});

test('runs at different steps are merged, gaps where a run has no step', () => {
  const a = [[0, 5, 10, 1000], [1, 2, null, 4]];
  const b = [[2, 5, 7], [10, 20, 30], [-1, -2, -3]];
  const c = [[], []];
  assert.deepEqual(joinColumns([a, b, c]), referenceJoin([a, b, c]));
  assert.deepEqual(joinColumns([]), [[]]);
});

test('log-y cleaning turns zeros and negatives into gaps, and copies only when needed', () => {
  const clean = [1, null, 2];
  assert.equal(positiveOnly(clean), clean);
  assert.deepEqual(positiveOnly([1, 0, -2, null, 3]), [1, null, null, null, 3]);
  // Typed columns (the binary routes') have NaN for gaps, and keep NaN for the values removed.
  const typed = new Float32Array([1, NaN, 2]);
  assert.equal(positiveOnly(typed), typed);
  const cleaned = positiveOnly(new Float32Array([1, 0, -2, NaN, 3]));
  assert.ok(cleaned instanceof Float64Array);
  assert.deepEqual(Array.from(cleaned), [1, NaN, NaN, NaN, 3]);
});

test('heatmap pixels: log colour by value, own colours for zero and missing', () => {
  const ramp = ['#000000', '#ff0000', '#ffffff'];
  const colours = { ramp, zero: '#00ff00', missing: '#0000ff' };
  const rows = [
    [1e-4, 1e-2, 1],
    [0, null, NaN],
    [1e-9, 100, 1e-3],
  ];
  const pixels = heatmapPixels(rows, 3, { min: 1e-4, max: 1 }, colours);
  assert.equal(pixels.length, 3 * 3 * 4);
  const at = (r, c) => [...pixels.slice((r * 3 + c) * 4, (r * 3 + c) * 4 + 4)];
  /** Asserts the colour at a log position t, on the table's 256 levels, to half a byte level. */
  const onRamp = (pixel, t) => {
    const want = [...sampleRamp(ramp, Math.round(t * 255) / 255), 255];
    pixel.forEach((got, k) => assert.ok(Math.abs(got - want[k]) <= 0.5, `${pixel} vs ${want}`));
  };
  onRamp(at(0, 0), 0);
  onRamp(at(0, 1), 0.5);
  onRamp(at(0, 2), 1);
  assert.deepEqual(at(1, 0), [...hexToRgb('#00ff00'), 255]);
  assert.deepEqual(at(1, 1), [...hexToRgb('#0000ff'), 255]);
  assert.deepEqual(at(1, 2), [...hexToRgb('#0000ff'), 255]);
  // Off-scale values clamp to the ends.
  onRamp(at(2, 0), 0);
  onRamp(at(2, 1), 1);
  onRamp(at(2, 2), 0.25);
});
