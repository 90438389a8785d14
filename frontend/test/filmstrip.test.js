import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';

import { parseFrame } from '../src/panels/filmstrip/api.js';
import { FrameCache } from '../src/panels/filmstrip/cache.js';
import {
  chooseScales, drawnShape, frameScale, levelValue, pictureRgba, valueAt,
} from '../src/panels/filmstrip/picture.js';
import { nextIndex, prefetchOrder, shownIndex, unionSteps, zoomFor } from '../src/panels/filmstrip/playback.js';

// Written from tb_layerdyn/format/pictures.py (tests/test_filmstrip_fixture.py keeps it current).
const fixture = JSON.parse(readFileSync(new URL('./fixtures/filmstrip_pictures.json', import.meta.url), 'utf8'));

/**
 * RGB bytes of an RGBA picture.
 * @param {Uint8ClampedArray} rgba
 * @returns {number[]}
 */
function rgbOf(rgba) {
  const out = [];
  for (let i = 0; i < rgba.length; i += 4) out.push(rgba[i], rgba[i + 1], rgba[i + 2]);
  return out;
}

test('levels read back as the values Python decodes, level 0 as NaN', () => {
  for (const c of fixture.cases) {
    c.levels.forEach((/** @type {number[]} */ levels, /** @type {number} */ p) => {
      const got = levels.map((level) => levelValue(level, c.picture.planes[p].interval));
      assert.deepEqual(got.map((v) => (Number.isNaN(v) ? null : v)), c.values[p], `${c.name} plane ${p}`);
    });
  }
  assert.ok(Number.isNaN(levelValue(0, [-1, 1])));
  assert.equal(levelValue(1, [-1, 1]), -1);
  assert.equal(levelValue(255, [-1, 1]), 1);
  assert.equal(levelValue(128, [-1, 1]), 0);
});

test('each frame\'s own scale is Python\'s, and the fixed one is the listing\'s', () => {
  for (const c of fixture.cases) {
    const own = c.maps.map((/** @type {any} */ m, /** @type {number} */ p) => frameScale(m, c.picture.planes[p].quantiles));
    assert.deepEqual(own, c.frame_scales, c.name);
    assert.deepEqual(chooseScales('frame', c.fixed, c.picture, c.maps), c.frame_scales);
    assert.equal(chooseScales('fixed', c.fixed, c.picture, c.maps), c.fixed);
  }
  assert.deepEqual(frameScale('diverging', [-0.5, 0.2]), [-0.5, 0.5]);
  assert.deepEqual(frameScale('opacity', [0, -1]), [0, 0]);
  assert.deepEqual(frameScale('gray', [-2, 3]), [-2, 3]);
});

test('pictures are drawn pixel for pixel as Python draws them, with either scale', () => {
  for (const c of fixture.cases) {
    assert.deepEqual(drawnShape(c.picture), c.drawn, c.name);
    for (const [mode, expected] of [['fixed', c.rgb_fixed], ['frame', c.rgb_frame]]) {
      const scales = chooseScales(/** @type {any} */ (mode), c.fixed, c.picture, c.maps);
      const { width, height, data } = pictureRgba(c.picture, c.maps, c.levels, scales);
      assert.deepEqual([height, width], c.drawn);
      assert.deepEqual(rgbOf(data), expected, `${c.name}, ${mode} scale`);
      for (let i = 3; i < data.length; i += 4) assert.equal(data[i], 255);
    }
  }
  // The two scales give other pixels: the toggle is visible.
  const [conv] = fixture.cases;
  assert.notDeepEqual(conv.rgb_fixed, conv.rgb_frame);
});

test('the value under the cursor is the stored pixel\'s, gaps and empty cells give none', () => {
  const conv = fixture.cases[0];  // 3 x 2 tiles of 2 x 3, five cells
  const [, width] = conv.drawn;
  const stored = conv.picture.shape[1];
  // Drawn (x 5, y 4) lies in tile (1, 1) at (1, 1): stored row 3, column 4.
  const found = valueAt(conv.picture, conv.levels, 5, 4);
  assert.deepEqual(found, { row: 3, column: 4, tile: [1, 1], values: [conv.values[0][3 * stored + 4]] });
  assert.equal(valueAt(conv.picture, conv.levels, 3, 0), null);  // the column between tiles
  assert.equal(valueAt(conv.picture, conv.levels, 0, 2), null);  // the row between tiles
  assert.equal(valueAt(conv.picture, conv.levels, 4, 6), null);  // the empty sixth cell
  assert.equal(valueAt(conv.picture, conv.levels, width, 0), null);
  assert.ok(Number.isNaN(/** @type {any} */ (valueAt(conv.picture, conv.levels, 1, 0)).values[0]));  // NaN logged
  const travel = fixture.cases[2];
  assert.deepEqual(/** @type {any} */ (valueAt(travel.picture, travel.levels, 2, 0)).values,
    [travel.values[0][2], travel.values[1][2]]);
});

test('a frame answer splits into its header and each plane\'s PNG', () => {
  const header = {
    run: 'r', model: null, kind: 'travel', step: 3, wall_time: 1.5, layers: ['a', 'b', 'c'],
    pictures: [
      { description: 'a', shape: [1, 2], tile: [1, 2], cells: 1, planes: [{ interval: [0, 1], quantiles: [0, 1], bytes: 3 }, { interval: [0, 1], quantiles: [0, 1], bytes: 2 }] },
      null,
      { description: 'c', shape: [1, 1], tile: [1, 1], cells: 1, planes: [{ interval: [0, 1], quantiles: [0, 1], bytes: 1 }, { interval: [0, 1], quantiles: [0, 1], bytes: 4 }] },
    ],
  };
  const text = new TextEncoder().encode(JSON.stringify(header));
  const body = new Uint8Array(4 + text.length + 10);
  new DataView(body.buffer).setUint32(0, text.length, true);
  body.set(text, 4);
  body.set([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 4 + text.length);
  const { header: parsed, pngs } = parseFrame(body.buffer);
  assert.deepEqual(parsed, header);
  assert.deepEqual(pngs.map((planes) => planes && planes.map((p) => [...p])), [[[1, 2, 3], [4, 5]], null, [[6], [7, 8, 9, 10]]]);
  assert.throws(() => parseFrame(body.buffer.slice(0, body.length - 1)), /header accounts for/);
});

test('slider steps, the frame each run shows, and the order frames are fetched in', () => {
  assert.deepEqual(unionSteps([[0, 10, 20], [0, 5, 10]]), [0, 5, 10, 20]);
  assert.equal(shownIndex([0, 10, 20], 15), 1);
  assert.equal(shownIndex([0, 10, 20], 20), 2);
  assert.equal(shownIndex([0, 10, 20], 99), 2);
  assert.equal(shownIndex([5, 10], 4), -1);
  assert.equal(shownIndex([], 4), -1);
  assert.deepEqual(prefetchOrder(3, 10, 4, 2), [3, 4, 5, 6, 7, 2, 1]);
  assert.deepEqual(prefetchOrder(8, 10, 4, 2), [8, 9, 7, 6]);
  assert.deepEqual(prefetchOrder(0, 3, 24, 4), [0, 1, 2]);
  assert.equal(nextIndex(2, 3), 0);
  assert.equal(nextIndex(1, 3), 2);
  const box = { height: 120, minHeight: 16, maxWidth: 320, maxZoom: 8 };
  assert.deepEqual(zoomFor([35, 5], box), { x: 120 / 35, y: 120 / 35 });
  assert.deepEqual(zoomFor([30, 100], box), { x: 3.2, y: 3.2 });
  assert.deepEqual(zoomFor([1, 10], box), { x: 8, y: 16 });  // a row is stretched down
  assert.deepEqual(zoomFor([1, 120], box), { x: 320 / 120, y: 16 });
  assert.deepEqual(zoomFor([200, 4096], box), { x: 1, y: 1 });
});

/**
 * A cache over a loader that answers when told to, recording what it was asked.
 * @param {{maxBytes?: number, inFlight?: number, bytes?: number}} [options]
 */
function controlledCache({ maxBytes = 1000, inFlight = 2, bytes = 10 } = {}) {
  /** @type {string[]} */
  const asked = [];
  /** @type {Map<string, {resolve: (v: any) => void, reject: (e: Error) => void}>} */
  const open = new Map();
  const cache = new FrameCache((key) => {
    asked.push(key);
    return new Promise((resolve, reject) => open.set(key, { resolve, reject }));
  }, { maxBytes, inFlight });
  /** @param {string} key */
  const answer = async (key) => {
    /** @type {any} */ (open.get(key)).resolve({ value: `frame ${key}`, bytes });
    open.delete(key);
    await new Promise((r) => setTimeout(r, 0));
  };
  /** @param {string} key */
  const fail = async (key) => {
    /** @type {any} */ (open.get(key)).reject(new Error(`no ${key}`));
    open.delete(key);
    await new Promise((r) => setTimeout(r, 0));
  };
  return { cache, asked, open, answer, fail };
}

test('a frame held or on its way is never asked for again', async () => {
  const { cache, asked, answer } = controlledCache();
  const first = cache.get('a');
  const again = cache.get('a');
  cache.prefetch(['a', 'b']);
  assert.deepEqual(asked, ['a', 'b']);
  await answer('a');
  assert.equal(await first, 'frame a');
  assert.equal(await again, 'frame a');
  assert.equal(await cache.get('a'), 'frame a');
  cache.prefetch(['a', 'b', 'c']);
  assert.deepEqual(asked, ['a', 'b', 'c']);
  assert.equal(cache.loads, 3);
  assert.equal(cache.peek('a'), 'frame a');
  assert.equal(cache.peek('c'), undefined);
});

test('prefetching keeps a few requests in flight, in the order asked, the newest order winning', async () => {
  const { cache, asked, answer, open } = controlledCache({ inFlight: 2 });
  /** @type {string[]} */
  const arrived = [];
  cache.onLoad((key) => arrived.push(key));
  cache.prefetch(['1', '2', '3', '4', '5']);
  assert.deepEqual(asked, ['1', '2']);
  await answer('2');
  assert.deepEqual(asked, ['1', '2', '3']);
  cache.prefetch(['9', '8', '3', '1']);  // the user scrubbed: 4 and 5 are no longer wanted
  assert.deepEqual(asked, ['1', '2', '3']);
  await answer('1');
  assert.deepEqual(asked, ['1', '2', '3', '9']);
  await answer('3');
  await answer('9');
  await answer('8');
  assert.deepEqual(asked, ['1', '2', '3', '9', '8']);
  assert.deepEqual(arrived, ['2', '1', '3', '9', '8']);
  assert.equal(open.size, 0);
});

test('past its byte budget the least recently used frames go; a failed load is asked again', async () => {
  const { cache, asked, answer, fail } = controlledCache({ maxBytes: 30, bytes: 10, inFlight: 4 });
  for (const key of ['a', 'b', 'c']) {
    cache.get(key);
    await answer(key);
  }
  cache.peek('a');  // a is used again: b is now the oldest
  cache.get('d');
  await answer('d');
  assert.deepEqual([...cache.held.keys()], ['c', 'a', 'd']);
  assert.equal(cache.bytes, 30);
  const failing = assert.rejects(cache.get('e'), /no e/);
  await fail('e');
  await failing;
  cache.get('e');
  assert.deepEqual(asked, ['a', 'b', 'c', 'd', 'e', 'e']);
});
