import assert from 'node:assert/strict';
import { test } from 'node:test';

import { DEPTH_RAMP, RUN_PALETTE } from '../src/core/constants.js';
import {
  createRunColors, depthColor, hexToRgb, layerColors, rampTable, rgbToHex, sampleRamp,
} from '../src/core/colors.js';

test('hex colours round-trip and bad ones are refused with the value', () => {
  assert.deepEqual(hexToRgb('#0a80ff'), [10, 128, 255]);
  assert.equal(rgbToHex([10, 128, 255]), '#0a80ff');
  assert.throws(() => hexToRgb('red'), /"red"/);
});

test('ramps hit their stops and interpolate linearly between them', () => {
  const stops = ['#000000', '#ff0000', '#ffffff'];
  assert.deepEqual(sampleRamp(stops, 0), [0, 0, 0]);
  assert.deepEqual(sampleRamp(stops, 0.5), [255, 0, 0]);
  assert.deepEqual(sampleRamp(stops, 1), [255, 255, 255]);
  assert.deepEqual(sampleRamp(stops, 0.25), [127.5, 0, 0]);
  assert.deepEqual(sampleRamp(stops, 0.75), [255, 127.5, 127.5]);
  assert.deepEqual(sampleRamp(stops, -3), [0, 0, 0]);
  assert.deepEqual(sampleRamp(stops, 7), [255, 255, 255]);
  assert.deepEqual(sampleRamp(stops, NaN), [0, 0, 0]);
});

test('a ramp table holds the same colours as sampling', () => {
  const table = rampTable(DEPTH_RAMP, 9);
  for (let i = 0; i < 9; i++) {
    const want = sampleRamp(DEPTH_RAMP, i / 8);
    // Bytes round halves to even, so allow half a level either way.
    [...table.slice(i * 3, i * 3 + 3)].forEach((got, k) => assert.ok(Math.abs(got - want[k]) <= 0.5));
  }
});

test('depth colours run from the first stop (input) to the last (output)', () => {
  assert.equal(depthColor(0, 5), DEPTH_RAMP[0]);
  assert.equal(depthColor(4, 5), DEPTH_RAMP[DEPTH_RAMP.length - 1]);
  assert.equal(depthColor(0, 1), DEPTH_RAMP[0]);
  // Five stops, nine layers: every other layer lands on a stop.
  assert.equal(depthColor(2, 9), DEPTH_RAMP[1]);
});

test('layers are coloured by depth within their own run; shared names keep the first colour', () => {
  const colours = layerColors([['a', 'b', 'c'], ['x', 'b', 'y', 'z', 'w']]);
  assert.equal(colours.get('a'), depthColor(0, 3));
  assert.equal(colours.get('b'), depthColor(1, 3));
  assert.equal(colours.get('c'), depthColor(2, 3));
  assert.equal(colours.get('x'), depthColor(0, 5));
  assert.equal(colours.get('w'), depthColor(4, 5));
});

test('run colours are stable: the order of first sight decides, later calls agree', () => {
  const colour = createRunColors();
  const first = ['b', 'a', 'c'].map(colour);
  assert.deepEqual(first, RUN_PALETTE.slice(0, 3));
  assert.equal(colour('a'), first[1]);
  assert.equal(colour('d'), RUN_PALETTE[3]);
  assert.equal(colour('b'), first[0]);
  const many = createRunColors(['#111111', '#222222']);
  assert.deepEqual(['p', 'q', 'r'].map(many), ['#111111', '#222222', '#111111']);
});

test('runs with other layers get their own set, and shared names their own colours', async () => {
  const { layerSets, depthColor } = await import('../src/core/colors.js');
  const { sets, colorOf } = layerSets([
    { run: 'mlp-seed0', names: ['1', '3', '5'] },
    { run: 'lenet', names: ['conv1', '1', 'fc'] },
    { run: 'mlp-seed1', names: ['1', '3', '5'] },
  ]);
  assert.deepEqual(sets.map((s) => s.runs), [['mlp-seed0', 'mlp-seed1'], ['lenet']]);
  assert.equal(colorOf('mlp-seed1', '1'), depthColor(0, 3));
  assert.equal(colorOf('lenet', '1'), depthColor(1, 3));
  assert.notEqual(colorOf('mlp-seed0', '1'), colorOf('lenet', '1'));
});
