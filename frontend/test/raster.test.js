import assert from 'node:assert/strict';
import { test } from 'node:test';

import { edgeY, paintLines, pixelMap, pixelYs } from '../src/charts/raster.js';

/**
 * The slow, obvious painter the fast one must equal: every pixel column on its own, from every
 * point that falls in it and every segment that reaches it. A segment contributes its own end
 * where that end lies in the column, and its y at the column's edge where it goes on past it.
 * The points' pixel rows come from `pixelYs`, tested on its own below.
 */
function referencePaint(pixels, xs, lines, map, spanGaps) {
  const { width, height, data } = pixels;
  for (const line of lines) {
    const points = [];
    const n = Math.min(xs.length, line.values.length);
    const rows = new Float64Array(n);
    pixelYs(line.values, n, map, rows);
    for (let i = 0; i < n; i++) {
      const y = rows[i];
      points.push({ i, x: map.ax * xs[i] + map.bx, y, ok: Number.isFinite(y) });
    }
    const valid = points.filter((p) => p.ok);
    const segments = [];
    for (let k = 1; k < valid.length; k++) {
      const [p, q] = [valid[k - 1], valid[k]];
      if (spanGaps || q.i === p.i + 1) segments.push(p.x <= q.x ? [p, q] : [q, p]);
    }
    for (let c = 0; c < width; c++) {
      const ys = valid.filter((p) => Math.floor(p.x) === c).map((p) => p.y);
      for (const [a, b] of segments) {
        const ca = Math.floor(a.x);
        const cb = Math.floor(b.x);
        if (ca === cb || cb < c || ca > c) continue;
        const slope = (b.y - a.y) / (b.x - a.x);
        ys.push(ca === c ? a.y : edgeY(a.x, a.y, slope, c));
        ys.push(cb === c ? b.y : edgeY(a.x, a.y, slope, c + 1));
      }
      if (ys.length === 0) continue;
      const top = Math.floor(Math.min(...ys));
      const bottom = Math.floor(Math.max(...ys));
      for (let r = Math.max(0, top); r <= Math.min(height - 1, bottom); r++) {
        data.set([...line.color, 255], 4 * (r * width + c));
      }
    }
  }
}

/** A small seeded generator, so that a failing case can be replayed. */
function random(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function pixels(width, height, background) {
  const data = new Uint8ClampedArray(4 * width * height);
  for (let i = 0; i < data.length; i++) data[i] = background ? (i * 37) % 251 : 0;
  return { width, height, data };
}

/** A random chart: ascending xs (repeats included), lines with gaps, zeros, negatives, outliers. */
function randomCase(seed) {
  const rnd = random(seed);
  const width = 1 + Math.floor(rnd() * 70);
  const height = 1 + Math.floor(rnd() * 50);
  const n = Math.floor(rnd() * 120);
  const xs = new Float64Array(n);
  let x = rnd() * 10 - 5;
  for (let i = 0; i < n; i++) {
    x += rnd() < 0.1 ? 0 : rnd() * (rnd() < 0.5 ? 0.3 : 4);
    xs[i] = x;
  }
  const logY = rnd() < 0.5;
  const lines = [];
  const count = 1 + Math.floor(rnd() * 6);
  for (let l = 0; l < count; l++) {
    const values = rnd() < 0.5 ? new Float32Array(n) : new Array(n);
    let level = rnd() * 10;
    for (let i = 0; i < n; i++) {
      const u = rnd();
      level += (rnd() - 0.5) * (rnd() < 0.1 ? 40 : 3);
      if (u < 0.06) values[i] = values instanceof Float32Array ? NaN : null;
      else if (u < 0.08) values[i] = 0;
      else if (u < 0.1) values[i] = -Math.abs(level);
      else values[i] = logY ? Math.exp(level / 3) : level;
    }
    lines.push({ values, color: [Math.floor(rnd() * 256), Math.floor(rnd() * 256), Math.floor(rnd() * 256)] });
  }
  const span = n ? xs[n - 1] - xs[0] : 1;
  // Views that cut the data off on every side, or hold it all, or a single value.
  const view = {
    xMin: (n ? xs[0] : 0) + span * (rnd() - 0.3),
    xMax: 0,
    yMin: logY ? Math.exp(rnd() * 2 - 1) : rnd() * 10 - 8,
    yMax: 0,
    logY,
  };
  view.xMax = rnd() < 0.05 ? view.xMin : view.xMin + span * (0.1 + rnd());
  view.yMax = rnd() < 0.05 ? view.yMin : logY ? view.yMin * Math.exp(1 + rnd() * 4) : view.yMin + 1 + rnd() * 20;
  return { width, height, xs, lines, view, spanGaps: rnd() < 0.3, background: rnd() < 0.5 };
}

test('pixelMap puts the ends of the view on the centres of the first and last pixels', () => {
  const map = pixelMap({ xMin: 10, xMax: 30, yMin: 1, yMax: 1000, logY: true }, 101, 31);
  assert.equal(map.ax * 10 + map.bx, 0.5);
  assert.equal(map.ax * 30 + map.bx, 100.5);
  assert.equal(map.ay * Math.log10(1000) + map.by, 0.5);
  assert.ok(Math.abs(map.ay * Math.log10(1) + map.by - 30.5) < 1e-12);
  const flat = pixelMap({ xMin: 5, xMax: 5, yMin: 2, yMax: 2, logY: false }, 10, 20);
  assert.deepEqual([flat.ax * 5 + flat.bx, flat.ay * 2 + flat.by], [5, 10]);
});

test('pixel rows are the map of the values, their logarithms within 1e-8, gaps where undrawable', () => {
  const rnd = random(7);
  const values = Float32Array.from({ length: 5000 }, () => Math.exp((rnd() - 0.5) * 90));
  values.set([0, -1, NaN, Infinity, -Infinity, 1e-42, 1, 2, 3.4e38]);
  const map = { ax: 1, bx: 0, ay: -37.5, by: 12.25, logY: true };
  for (const column of [values, Float64Array.from(values), Array.from(values)]) {
    const rows = new Float64Array(column.length);
    pixelYs(column, column.length, map, rows);
    for (let i = 0; i < column.length; i++) {
      const want = map.ay * Math.log10(column[i]) + map.by;
      if (Number.isFinite(want)) assert.ok(Math.abs(rows[i] - want) < 1e-8 * Math.abs(map.ay), `${column[i]}: ${rows[i]} != ${want}`);
      else assert.ok(!Number.isFinite(rows[i]), `${column[i]} is a gap`);
    }
  }
  const linear = new Float64Array(3);
  pixelYs([2, null, -4], 3, { ...map, logY: false }, linear);
  assert.deepEqual(Array.from(linear), [-62.75, NaN, 162.25]);
});

test('a flat line fills one row, a jump fills the column where it happens', () => {
  const image = pixels(10, 10, false);
  const map = pixelMap({ xMin: 0, xMax: 9, yMin: 0, yMax: 9, logY: false }, 10, 10);
  // From y = 9 (the top row) for x 0..4, then down to y = 0 (the bottom row) from x = 5.
  const values = [9, 9, 9, 9, 9, 0, 0, 0, 0, 0];
  paintLines(image, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], [{ values, color: [255, 0, 0] }], map, false);
  const painted = (c, r) => image.data[4 * (r * 10 + c)] === 255;
  for (let c = 0; c < 10; c++) {
    const rows = [...Array(10).keys()].filter((r) => painted(c, r));
    // Columns 4 and 5 hold the jump: its segment crosses their shared edge at y = 5.0 (row 5).
    const expected = c < 4 ? [0] : c === 4 ? [0, 1, 2, 3, 4, 5] : c === 5 ? [5, 6, 7, 8, 9] : [9];
    assert.deepEqual(rows, expected, `column ${c}`);
  }
});

test('gaps break a line unless it spans them; nothing is painted from a lone gap', () => {
  const map = pixelMap({ xMin: 0, xMax: 4, yMin: 0, yMax: 4, logY: false }, 5, 5);
  const xs = [0, 1, 2, 3, 4];
  const broken = pixels(5, 5, false);
  const spanned = pixels(5, 5, false);
  const values = new Float32Array([0, 0, NaN, 4, 4]);
  paintLines(broken, xs, [{ values, color: [0, 0, 255] }], map, false);
  paintLines(spanned, xs, [{ values, color: [0, 0, 255] }], map, true);
  const column = (image, c) => [...Array(5).keys()].filter((r) => image.data[4 * (r * 5 + c) + 2] === 255);
  assert.deepEqual(column(broken, 2), []);
  assert.deepEqual(column(spanned, 2), [1, 2, 3]);
});

test('the fast painter equals the reference pixel for pixel on random charts', () => {
  let painted = 0;
  for (let seed = 1; seed <= 600; seed++) {
    const c = randomCase(seed);
    const map = pixelMap(c.view, c.width, c.height);
    const fast = pixels(c.width, c.height, c.background);
    const slow = pixels(c.width, c.height, c.background);
    const before = fast.data.slice();
    paintLines(fast, c.xs, c.lines, map, c.spanGaps);
    referencePaint(slow, c.xs, c.lines, map, c.spanGaps);
    assert.deepEqual(fast.data, slow.data, `seed ${seed}`);
    if (fast.data.some((v, i) => v !== before[i])) painted++;
  }
  // The cases are not all empty: most paint something.
  assert.ok(painted > 400, `${painted} of 600 cases painted anything`);
});
