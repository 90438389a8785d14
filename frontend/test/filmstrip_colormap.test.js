import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import {
  BACKGROUND_RGB, NAN_RGB, PIYG, diverging, gray, overWhite,
} from '../src/panels/filmstrip/colormap.js';

// Written from tb_layerdyn/format/colormaps.py (tests/test_picture_format.py keeps it current).
const fixture = JSON.parse(readFileSync(new URL('./fixtures/picture_colormap.json', import.meta.url), 'utf8'));

test('the PiYG table and the special colours are the Python ones', () => {
  assert.deepEqual(PIYG, fixture.piyg);
  assert.deepEqual(NAN_RGB, fixture.nan);
  assert.deepEqual(BACKGROUND_RGB, fixture.background);
});

test('diverging colours match Python pixel for pixel', () => {
  const { scale, values, rgb, zero_scale_rgb: zeroScale } = fixture.diverging;
  values.forEach((/** @type {number} */ v, /** @type {number} */ i) => assert.deepEqual(diverging(v, scale), rgb[i], `value ${v}`));
  assert.deepEqual([diverging(-5, 0), diverging(5, 0)], zeroScale);
  assert.deepEqual(diverging(0, 3), PIYG[5]);
  assert.deepEqual(diverging(-3, 3), PIYG[0]);
  assert.deepEqual(diverging(3, 3), PIYG[10]);
  assert.deepEqual(diverging(NaN, 1), NAN_RGB);
});

test('gray levels match Python', () => {
  const { low, high, values, rgb } = fixture.gray;
  values.forEach((/** @type {number} */ v, /** @type {number} */ i) => assert.deepEqual(gray(v, low, high), rgb[i], `value ${v}`));
  assert.deepEqual(gray(Infinity, 0, 1), NAN_RGB);
});

test('travel opacity over white matches Python', () => {
  const { colour, scale, travel, rgb } = fixture.opacity;
  travel.forEach((/** @type {number} */ t, /** @type {number} */ i) => assert.deepEqual(overWhite(colour, t, scale), rgb[i], `travel ${t}`));
  assert.deepEqual(overWhite(colour, 0, scale), [255, 255, 255]);
  assert.deepEqual(overWhite(colour, 10 * scale, scale), colour);
});
