import assert from 'node:assert/strict';
import { test } from 'node:test';

import { rowWindow, sameWindow, scrollToRow } from '../src/core/virtual_list.js';

/**
 * The reference: every row tested one by one against the viewport widened by the overscan.
 */
function slowWindow({ count, rowHeight, scrollTop, viewportHeight, overscan }) {
  const total = count * rowHeight;
  const top = Math.min(Math.max(0, scrollTop), Math.max(0, total - viewportHeight));
  const rows = [];
  for (let i = 0; i < count; i++) {
    const visible = (i + 1) * rowHeight > top && i * rowHeight < top + viewportHeight;
    if (visible) rows.push(i);
  }
  if (rows.length === 0) return { start: 0, end: 0 };
  return { start: Math.max(0, rows[0] - overscan), end: Math.min(count, rows[rows.length - 1] + 1 + overscan) };
}

test('the window holds every row the viewport shows and the overscan, over many scroll positions', () => {
  for (const count of [1, 2, 7, 40, 1000]) {
    for (const rowHeight of [22, 17.5]) {
      for (const viewportHeight of [100, 333, 600]) {
        for (const overscan of [0, 3, 8]) {
          for (let scrollTop = -50; scrollTop < count * rowHeight + 100; scrollTop += 37) {
            const w = rowWindow({ count, rowHeight, scrollTop, viewportHeight, overscan });
            const expected = slowWindow({ count, rowHeight, scrollTop, viewportHeight, overscan });
            const where = JSON.stringify({ count, rowHeight, viewportHeight, overscan, scrollTop });
            // The window may round out by at most one row at each end, never miss a visible one.
            assert.ok(w.start <= expected.start && w.start >= expected.start - 1, where);
            assert.ok(w.end >= expected.end && w.end <= expected.end + 1, where);
            assert.equal(w.offset, w.start * rowHeight, where);
            assert.equal(w.total, count * rowHeight, where);
          }
        }
      }
    }
  }
});

test('a thousand rows render a bounded few at any scroll position', () => {
  for (let scrollTop = 0; scrollTop <= 22_000; scrollTop += 500) {
    const w = rowWindow({ count: 1000, rowHeight: 22, scrollTop, viewportHeight: 380, overscan: 8 });
    assert.ok(w.end - w.start <= Math.ceil(380 / 22) + 1 + 16, `${scrollTop}: ${w.end - w.start} rows`);
    assert.ok(w.end > w.start);
  }
  const bottom = rowWindow({ count: 1000, rowHeight: 22, scrollTop: 1e9, viewportHeight: 380, overscan: 8 });
  assert.equal(bottom.end, 1000);
});

test('an empty list, a list shorter than the viewport, and a viewport not laid out yet', () => {
  assert.deepEqual(rowWindow({ count: 0, rowHeight: 22, scrollTop: 0, viewportHeight: 300 }), { start: 0, end: 0, offset: 0, total: 0 });
  assert.deepEqual(rowWindow({ count: 5, rowHeight: 22, scrollTop: 80, viewportHeight: 300 }), { start: 0, end: 5, offset: 0, total: 110 });
  const unlaid = rowWindow({ count: 1000, rowHeight: 22, scrollTop: 0, viewportHeight: 0, overscan: 2, fallbackRows: 30 });
  assert.deepEqual([unlaid.start, unlaid.end], [0, 32]);
  // The list got shorter while scrolled far down: the window falls back to its last rows.
  const shrunk = rowWindow({ count: 10, rowHeight: 20, scrollTop: 5000, viewportHeight: 100, overscan: 1 });
  assert.deepEqual([shrunk.start, shrunk.end], [4, 10]);
});

test('sameWindow tells when a scroll needs no new rows', () => {
  const a = rowWindow({ count: 1000, rowHeight: 22, scrollTop: 0, viewportHeight: 300, overscan: 0 });
  const b = rowWindow({ count: 1000, rowHeight: 22, scrollTop: 5, viewportHeight: 300, overscan: 0 });
  const c = rowWindow({ count: 1000, rowHeight: 22, scrollTop: 30, viewportHeight: 300, overscan: 0 });
  assert.equal(sameWindow(null, a), false);
  assert.equal(sameWindow(a, b), true);
  assert.equal(sameWindow(a, c), false);
});

test('scrollToRow moves the least that shows the row', () => {
  const view = { rowHeight: 20, scrollTop: 200, viewportHeight: 100 };
  assert.equal(scrollToRow({ ...view, index: 12 }), 200); // already in view
  assert.equal(scrollToRow({ ...view, index: 5 }), 100); // above: its top at the top
  assert.equal(scrollToRow({ ...view, index: 20 }), 320); // below: its bottom at the bottom
});
