import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { rampTable } from '../src/core/colors.js';
import {
  cellAt, chosenRuns, decodeDistances, decodeTrajectories, entryNames, matrixPixels, nearestPoint,
  paddedRange, stepIndex,
} from '../src/panels/population/shaping.js';

const FIXTURE = JSON.parse(readFileSync(new URL('./fixtures/population.json', import.meta.url), 'utf8'));

/**
 * The binary form of an answer as http_api.md describes it: a uint32 length, the JSON header
 * padded with spaces to a multiple of 8 bytes past the length field, then float32 arrays.
 */
function binary(header, ...arrays) {
  let json = JSON.stringify(header);
  while ((4 + json.length) % 8 !== 0) json += ' ';
  const bytes = new TextEncoder().encode(json);
  const total = arrays.reduce((n, a) => n + a.length, 0);
  const buffer = new ArrayBuffer(4 + bytes.length + 4 * total);
  new DataView(buffer).setUint32(0, bytes.length, true);
  new Uint8Array(buffer, 4, bytes.length).set(bytes);
  let offset = 4 + bytes.length;
  for (const a of arrays) {
    new Float32Array(buffer, offset, a.length).set(a);
    offset += 4 * a.length;
  }
  return buffer;
}

test('a distances answer decodes the same from JSON and from binary', () => {
  const json = decodeDistances(FIXTURE.distances);
  assert.equal(json.points, 3);
  assert.deepEqual([...json.matrix].map((v) => (Number.isNaN(v) ? null : Number(v.toFixed(2)))),
    [0, 3.21, 1.07, 3.21, 0, null, 1.07, null, 0]);
  const { matrix, ...header } = FIXTURE.distances;
  const flat = matrix.flat().map((v) => (v === null ? NaN : v));
  const bin = decodeDistances(binary({ ...header, points: 3 }, flat));
  assert.deepEqual(bin.runs, json.runs);
  assert.deepEqual(bin.order, json.order);
  assert.deepEqual([...bin.matrix].map(String), [...json.matrix].map(String));
  assert.throws(() => decodeDistances(binary({ ...header, points: 4 }, flat)), /shorter/);
});

test('a trajectories answer decodes the same from JSON and from binary', () => {
  const json = decodeTrajectories(FIXTURE.trajectories);
  assert.equal(json.points, 3);
  const { x, y, ...header } = FIXTURE.trajectories;
  const nan = (rows) => rows.flat().map((v) => (v === null ? NaN : v));
  const bin = decodeTrajectories(binary({ ...header, points: 3 }, nan(x), nan(y)));
  assert.deepEqual([...bin.x].map(String), [...json.x].map(String));
  assert.deepEqual([...bin.y].map(String), [...json.y].map(String));
  assert.ok(Number.isNaN(json.x[5]) && Number.isNaN(json.y[5]));
  assert.equal(json.x[1], Math.fround(-0.4));
});

test('the matrix pixels follow the clustering order, cell by cell against a plain reference', () => {
  const d = decodeDistances(FIXTURE.distances);
  const table = rampTable(['#000000', '#ffffff'], 256);
  const missing = [1, 2, 3];
  const pixels = matrixPixels(d.matrix, d.points, d.order, d.max, table, missing);
  for (let a = 0; a < 3; a++) {
    for (let b = 0; b < 3; b++) {
      const v = FIXTURE.distances.matrix[d.order[a]][d.order[b]];
      const p = 4 * (a * 3 + b);
      const got = [...pixels.slice(p, p + 4)];
      if (v === null) assert.deepEqual(got, [1, 2, 3, 255], `${a},${b}`);
      else {
        const grey = Math.round((v / d.max) * 255);
        assert.deepEqual(got, [grey, grey, grey, 255], `${a},${b}`);
      }
    }
  }
  // Row 1 of the drawing is run 2 (order [0, 2, 1]): its cell against run 0 is 1.07.
  assert.equal(pixels[4 * 3], Math.round((1.07 / 3.21) * 255));
  // No scale (every distance zero): the ramp's start, no NaN arithmetic.
  const flat = matrixPixels(new Float32Array(4), 2, [0, 1], 0, table, missing);
  assert.deepEqual([...flat], [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255]);
});

test('a large matrix fills every cell once', () => {
  const n = 1000;
  const matrix = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) matrix[i * n + j] = Math.abs(i - j);
  const order = Array.from({ length: n }, (_, i) => n - 1 - i);
  const table = rampTable(['#000000', '#ffffff'], 256);
  const pixels = matrixPixels(matrix, n, order, n - 1, table, [255, 0, 0]);
  assert.equal(pixels.length, 4 * n * n);
  // Reversed order keeps |i - j|: the diagonal is black, the far corners white.
  assert.deepEqual([...pixels.slice(0, 3)], [0, 0, 0]);
  const corner = 4 * (n - 1);
  assert.deepEqual([...pixels.slice(corner, corner + 3)], [255, 255, 255]);
});

test('the cell under the cursor names both runs and their distance', () => {
  const d = decodeDistances(FIXTURE.distances);
  // Side 300: each cell 100 pixels. Row 2 is run order[2] = 1, column 1 run order[1] = 2.
  const cell = cellAt(d, 150, 250, 300);
  assert.deepEqual(cell, { row: 'pop/run0001', column: 'pop/run0002', distance: null, a: 2, b: 1 });
  const near = cellAt(d, 10, 150, 300);
  assert.equal(near.row, 'pop/run0002');
  assert.equal(near.column, 'pop/run0000');
  assert.ok(Math.abs(near.distance - 1.07) < 1e-6);
  assert.equal(cellAt(d, 300, 10, 300), null);
  assert.equal(cellAt(d, -1, 10, 300), null);
});

test('the runs asked for: none when all are ticked, else the ticked ones in population order', () => {
  const population = FIXTURE.sketches.populations[0];
  const all = new Set(population.runs);
  assert.equal(chosenRuns(population, all), null);
  assert.deepEqual(chosenRuns(population, new Set(['pop/run0002', 'pop/run0000', 'other'])), ['pop/run0000', 'pop/run0002']);
  assert.deepEqual(chosenRuns(population, new Set()), []);
  // A named tracker's runs are listed as `run · model` entries.
  const named = { ...population, model: 'generator' };
  assert.deepEqual(entryNames(named, ['a']), ['a · generator']);
  assert.deepEqual(chosenRuns(named, new Set(['pop/run0001 · generator'])), ['pop/run0001']);
});

test('the slider index of a step, and the nearest trajectory point', () => {
  assert.equal(stepIndex([0, 10, 20, 30], null), 3);
  assert.equal(stepIndex([0, 10, 20, 30], 20), 2);
  assert.equal(stepIndex([0, 10, 20, 30], 25), 2);
  assert.equal(stepIndex([10, 20], 5), 0);
  assert.equal(stepIndex([], 5), -1);
  const t = decodeTrajectories(FIXTURE.trajectories);
  assert.equal(nearestPoint(t, 1, 0.1, -1.0, 1).run, 1);
  assert.equal(nearestPoint(t, 1, -0.5, 1.0, 1).run, 0);
  // Column 2: run 1 has no point there.
  assert.equal(nearestPoint(t, 2, 0.2, -1.1, 1).run, 0);
  assert.deepEqual(paddedRange(new Float32Array([0, 10, NaN])), [-0.5, 10.5]);
  assert.deepEqual(paddedRange(new Float32Array([2, 2])), [1, 3]);
  assert.deepEqual(paddedRange(new Float32Array([NaN])), [-1, 1]);
});

test('a choice too long to name is cut from the whole answer, keeping the clustering order', async () => {
  const { subsetDistances, subsetTrajectories, runQueryLength, RUN_QUERY_BUDGET } = await import('../src/panels/population/shaping.js');
  // Four runs, order [3, 1, 0, 2]; keep runs 0, 2, 3.
  const n = 4;
  const matrix = new Float32Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) matrix[i * n + j] = i === j ? 0 : 10 * Math.max(i, j) + Math.min(i, j);
  const d = { runs: ['a', 'b', 'c', 'd'], points: n, matrix, order: [3, 1, 0, 2], max: 32, missing: ['e'], step: 1 };
  const cut = subsetDistances(d, new Set(['a', 'c', 'd']));
  assert.deepEqual(cut.runs, ['a', 'c', 'd']);
  assert.equal(cut.points, 3);
  // Server order 3, 1, 0, 2 without 1: d, a, c -> indices 2, 0, 1 of the cut.
  assert.deepEqual(cut.order, [2, 0, 1]);
  for (const [a, i] of [[0, 0], [1, 2], [2, 3]]) {
    for (const [b, j] of [[0, 0], [1, 2], [2, 3]]) assert.equal(cut.matrix[a * 3 + b], matrix[i * n + j]);
  }
  assert.equal(cut.max, 32);
  assert.deepEqual(cut.missing, []);
  assert.equal(subsetDistances(d, new Set(['a', 'b'])).max, 10);

  const t = decodeTrajectories(FIXTURE.trajectories);
  const one = subsetTrajectories(t, new Set(['pop/run0001']));
  assert.deepEqual(one.runs, ['pop/run0001']);
  assert.deepEqual([...one.x].map(String), [...t.x.slice(3, 6)].map(String));
  assert.deepEqual([...one.y].map(String), [...t.y.slice(3, 6)].map(String));

  const names = Array.from({ length: 2000 }, (_, i) => `a/long/run/name/number/${i}`);
  assert.ok(runQueryLength(names) > RUN_QUERY_BUDGET);
  assert.ok(runQueryLength(names.slice(0, 100)) < RUN_QUERY_BUDGET);
  assert.equal(runQueryLength(['a/b']), 'run=a%2Fb&'.length);
});
