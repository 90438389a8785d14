// @ts-check
/**
 * @file The windowing math of a virtualized list: which rows of a long list of equal-height rows
 * a scrolled viewport shows, so that only those (and a few either side) are in the DOM. Pure: the
 * picker (panels/picker) does the DOM part.
 */

/**
 * @typedef {{start: number, end: number, offset: number, total: number}} RowWindow rows
 *   `start .. end - 1` are rendered, the first `offset` pixels below the list's top; `total` is the
 *   height of the whole list in pixels.
 */

/**
 * The rows to render for a viewport.
 * @param {{count: number, rowHeight: number, scrollTop: number, viewportHeight: number,
 *          overscan?: number, fallbackRows?: number}} view
 *   `count` rows of `rowHeight` pixels, scrolled by `scrollTop`, seen through `viewportHeight`
 *   pixels; `overscan` extra rows either side (so a quick scroll does not show blank space before
 *   the next frame); `fallbackRows` rows when the viewport has no height yet (not laid out).
 * @returns {RowWindow}
 */
export function rowWindow({ count, rowHeight, scrollTop, viewportHeight, overscan = 8, fallbackRows = 40 }) {
  const n = Math.max(0, Math.floor(count));
  const total = n * rowHeight;
  if (n === 0 || !(rowHeight > 0)) return { start: 0, end: 0, offset: 0, total: Math.max(0, total) };
  const height = viewportHeight > 0 ? viewportHeight : fallbackRows * rowHeight;
  // A scroll position past the end (the list just got shorter) shows the last rows.
  const top = Math.min(Math.max(0, scrollTop || 0), Math.max(0, total - height));
  const first = Math.floor(top / rowHeight);
  const last = Math.ceil((top + height) / rowHeight);
  const start = Math.max(0, first - overscan);
  const end = Math.min(n, last + overscan);
  return { start, end, offset: start * rowHeight, total };
}

/**
 * Whether a new window renders the same rows as the old one, so a scroll within it needs no work.
 * @param {RowWindow | null} a
 * @param {RowWindow} b
 */
export function sameWindow(a, b) {
  return a !== null && a.start === b.start && a.end === b.end && a.total === b.total;
}

/**
 * The scroll position that brings row `index` into view, moving as little as possible.
 * @param {{index: number, rowHeight: number, scrollTop: number, viewportHeight: number}} view
 * @returns {number}
 */
export function scrollToRow({ index, rowHeight, scrollTop, viewportHeight }) {
  const top = index * rowHeight;
  if (top < scrollTop) return top;
  if (top + rowHeight > scrollTop + viewportHeight) return Math.max(0, top + rowHeight - viewportHeight);
  return scrollTop;
}
