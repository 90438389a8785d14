// @ts-check
/**
 * @file Steps of the filmstrip: the slider's steps, which frame of each run a step shows, what to
 * fetch next, and how each layer's picture is sized. Pure functions: no DOM.
 */

/**
 * The steps of every run shown, joined and sorted: the slider moves over these.
 * @param {ReadonlyArray<readonly number[]>} lists ascending steps of each run.
 * @returns {number[]}
 */
export function unionSteps(lists) {
  return [...new Set(lists.flat())].sort((a, b) => a - b);
}

/**
 * Which of a run's steps shows at a slider step: the latest at or before it, so two runs logged
 * at other steps stay side by side in time.
 * @param {readonly number[]} steps the run's ascending steps.
 * @param {number} step
 * @returns {number} an index into `steps`, or -1 when the run has none that early.
 */
export function shownIndex(steps, step) {
  let low = 0;
  let high = steps.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (steps[middle] <= step) low = middle + 1;
    else high = middle;
  }
  return low - 1;
}

/**
 * The order to fetch frames in from the one shown: it, then the next `ahead` (what playing shows
 * next), then the `behind` before it (where a user scrubs back to).
 * @param {number} index the slider's position.
 * @param {number} count positions on the slider.
 * @param {number} ahead
 * @param {number} behind
 * @returns {number[]} positions, each once.
 */
export function prefetchOrder(index, count, ahead, behind) {
  const order = [];
  for (let i = index; i < Math.min(count, index + ahead + 1); i++) order.push(i);
  for (let i = index - 1; i >= Math.max(0, index - behind); i--) order.push(i);
  return order;
}

/**
 * The slider position after `index` while playing: the next one, back to the first after the
 * last (a filmstrip loops).
 * @param {number} index
 * @param {number} count
 * @returns {number}
 */
export function nextIndex(index, count) {
  return count === 0 ? 0 : (index + 1) % count;
}

/**
 * How many screen pixels each picture pixel takes, across and down: pictures of every size get
 * about `height` pixels tall, none wider than `maxWidth`, none shrunk below one pixel per value
 * and none blown up more than `maxZoom` times; a picture of a few rows (a bias, a linear layer's
 * activations) is stretched down to `minHeight`, so that it is not a hairline.
 * @param {[number, number]} shape the drawn `[height, width]`.
 * @param {{height: number, minHeight: number, maxWidth: number, maxZoom: number}} box
 * @returns {{x: number, y: number}}
 */
export function zoomFor(shape, box) {
  const [height, width] = shape;
  const x = Math.max(1, Math.min(box.height / height, box.maxWidth / width, box.maxZoom));
  return { x, y: Math.max(x, Math.min(box.minHeight, box.height) / height) };
}
