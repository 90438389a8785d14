// @ts-check
/**
 * @file Lets the chart a user looks at first draw before the other panels ask for their data.
 *
 * On a large logdir every panel's requests compete for the server and the page: the per-layer
 * curves close the gate while they fetch and draw, and the heavier panels (heatmap, settling,
 * summary, groups, sweeps) wait for it to open before fetching — never longer than `maxWaitMs`,
 * so a chart that fails or takes long holds nothing up for good.
 */

/**
 * @typedef {{close: () => void, open: () => void, wait: () => Promise<void>}} PaintGate
 */

/**
 * @param {number} [maxWaitMs] the longest a panel waits for the gate.
 * @returns {PaintGate}
 */
export function createPaintGate(maxWaitMs = 3000) {
  let isOpen = true;
  /** @type {Array<() => void>} */
  let waiting = [];
  return {
    close() {
      isOpen = false;
    },
    open() {
      isOpen = true;
      const released = waiting;
      waiting = [];
      for (const resolve of released) resolve();
    },
    wait() {
      if (isOpen) return Promise.resolve();
      return new Promise((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, maxWaitMs);
      });
    },
  };
}
