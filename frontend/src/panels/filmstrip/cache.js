// @ts-check
/**
 * @file The filmstrip's frames: a cache bounded in bytes that loads each frame once, and
 * prefetches in a chosen order with a few requests in flight.
 *
 * A frame already held, or on its way, is never asked for again: `get` and `prefetch` share the
 * one request. A failed load is forgotten, so a later `get` asks again. The least recently used
 * frames are dropped past the byte budget. No DOM: the loader is given.
 */

/**
 * @template T
 * @typedef {{value: T, bytes: number}} Loaded a frame and what it holds in memory.
 */

/**
 * @template T
 */
export class FrameCache {
  /**
   * @param {(key: string) => Promise<Loaded<T>>} load fetches and decodes one frame.
   * @param {{maxBytes: number, inFlight: number}} limits the byte budget, and how many
   *   prefetches run at once.
   */
  constructor(load, { maxBytes, inFlight }) {
    this.load = load;
    this.maxBytes = maxBytes;
    this.inFlight = inFlight;
    /** @type {Map<string, Loaded<T>>} held frames, least recently used first */
    this.held = new Map();
    /** @type {Map<string, Promise<T>>} */
    this.pending = new Map();
    /** @type {string[]} keys still to prefetch, in order */
    this.queue = [];
    this.bytes = 0;
    /** How many loads were started: each key once, unless it failed or was dropped. */
    this.loads = 0;
    /** @type {Set<(key: string) => void>} */
    this.listeners = new Set();
  }

  /**
   * The frame when it is held (and marks it used), else `undefined`.
   * @param {string} key
   * @returns {T | undefined}
   */
  peek(key) {
    const found = this.held.get(key);
    if (!found) return undefined;
    this.held.delete(key);
    this.held.set(key, found);
    return found.value;
  }

  /**
   * @param {string} key
   * @returns {boolean} whether the frame is held.
   */
  has(key) {
    return this.held.has(key);
  }

  /**
   * The frame, loading it unless it is held or on its way.
   * @param {string} key
   * @returns {Promise<T>}
   */
  get(key) {
    const held = this.peek(key);
    if (held !== undefined) return Promise.resolve(held);
    let pending = this.pending.get(key);
    if (!pending) {
      this.loads++;
      pending = this.load(key).then(
        (loaded) => {
          this.pending.delete(key);
          this.store(key, loaded);
          for (const listener of this.listeners) listener(key);
          this.pump();
          return loaded.value;
        },
        (error) => {
          this.pending.delete(key);
          this.pump();
          throw error;
        },
      );
      this.pending.set(key, pending);
    }
    return pending;
  }

  /**
   * Loads these frames in this order in the background, a few at a time, replacing what was
   * queued before (frames already held or on their way are skipped).
   * @param {readonly string[]} keys
   */
  prefetch(keys) {
    this.queue = keys.filter((k) => !this.held.has(k) && !this.pending.has(k));
    this.pump();
  }

  /** Starts queued loads while fewer than `inFlight` are on their way. */
  pump() {
    while (this.pending.size < this.inFlight && this.queue.length) {
      const key = /** @type {string} */ (this.queue.shift());
      if (this.held.has(key) || this.pending.has(key)) continue;
      // A failed prefetch is not an error of what is shown; `get` reports it when it is needed.
      this.get(key).catch(() => {});
    }
  }

  /**
   * @param {string} key
   * @param {Loaded<T>} loaded
   */
  store(key, loaded) {
    this.held.set(key, loaded);
    this.bytes += loaded.bytes;
    for (const [old, frame] of this.held) {
      if (this.bytes <= this.maxBytes || old === key) break;
      this.held.delete(old);
      this.bytes -= frame.bytes;
    }
  }

  /**
   * Calls `listener(key)` each time a frame arrives.
   * @param {(key: string) => void} listener
   */
  onLoad(listener) {
    this.listeners.add(listener);
  }

  /** Forgets every frame and what was queued (frames on their way still arrive). */
  clear() {
    this.held.clear();
    this.queue = [];
    this.bytes = 0;
  }
}
