// @ts-check
/**
 * @file Names as the tab shows them: an entry per run and model, labels of bare `Sequential`
 * indices, and short names that still tell rows apart. Pure functions, tested without a browser.
 *
 * Long layer names are shortened by eliding whole dotted segments (`…`), never by cutting the end:
 * a short name is only used when no other name of the list could read the same, so
 * `bert.encoder.layer.0.attention.self.query` becomes `….0.attention.self.query`, and its
 * neighbours `….0.attention.self.key`, `….1.attention.self.query` stay apart. The full name goes
 * into the element's title.
 */

/** What stands for elided segments. */
export const ELLIPSIS = '…';

/**
 * The name of a `runs` entry: the run, and the model when several share it (`gan · generator`).
 * @param {string} run
 * @param {string | null | undefined} model
 * @returns {string}
 */
export function entryName(run, model) {
  return model === null || model === undefined ? run : `${run} · ${model}`;
}

/**
 * A layer's label: a bare `Sequential` index path (`1`, `0.3`) says what the module is.
 * @param {string} name
 * @param {string | null | undefined} description e.g. `Linear 784→512`.
 * @returns {string} `1 · Linear 784→512`, or the name itself.
 */
export function layerLabel(name, description) {
  return description && /^\d+(\.\d+)*$/.test(name) ? `${name} · ${description}` : name;
}

/**
 * A short form: kept segments around one or two elided runs (`head … mid … tail`, `mid` empty for
 * one run).
 * @typedef {{head: string[], mid: string[], tail: string[]}} Pattern
 */

/**
 * Whether a short form could stand for `segments` (each elided run is one segment or more).
 * @param {Pattern} pattern
 * @param {readonly string[]} segments
 */
function couldRead({ head, mid, tail }, segments) {
  const gaps = mid.length ? 2 : 1;
  if (segments.length < head.length + mid.length + tail.length + gaps) return false;
  for (let i = 0; i < head.length; i++) if (segments[i] !== head[i]) return false;
  const offset = segments.length - tail.length;
  for (let i = 0; i < tail.length; i++) if (segments[offset + i] !== tail[i]) return false;
  if (!mid.length) return true;
  for (let p = head.length + 1; p + mid.length <= offset - 1; p++) {
    let same = true;
    for (let i = 0; i < mid.length && same; i++) same = segments[p + i] === mid[i];
    if (same) return true;
  }
  return false;
}

/**
 * Every short form of a name's segments that keeps the last one, longest first.
 * @param {readonly string[]} segments
 * @returns {Array<{text: string, pattern: Pattern}>}
 */
function shortForms(segments) {
  const n = segments.length;
  const forms = [];
  for (let i = 0; i < n - 1; i++) {
    for (let l = i + 1; l < n; l++) {
      // One elided run [i, l), or two: [i, j) and [k, l) around the kept run [j, k).
      forms.push({ head: segments.slice(0, i), mid: [], tail: segments.slice(l) });
      for (let j = i + 1; j < l - 1; j++) {
        for (let k = j + 1; k < l; k++) {
          forms.push({ head: segments.slice(0, i), mid: segments.slice(j, k), tail: segments.slice(l) });
        }
      }
    }
  }
  return forms
    .map((pattern) => ({
      pattern,
      text: [...pattern.head, ELLIPSIS, ...(pattern.mid.length ? [...pattern.mid, ELLIPSIS] : []), ...pattern.tail].join('.'),
    }))
    .sort((a, b) => b.text.length - a.text.length);
}

/**
 * Cuts the middle of a name that has no segments to elide.
 * @param {string} name
 * @param {number} max
 */
function middleCut(name, max) {
  const keep = Math.max(2, max - 1);
  const head = Math.floor(keep / 3);
  return name.slice(0, head) + ELLIPSIS + name.slice(name.length - (keep - head));
}

/**
 * Short names of at most `max` characters that tell the names apart.
 *
 * Each name longer than `max` elides the fewest characters it can: one or two runs of whole
 * segments (the last segment always kept), chosen so that no other name of the list fits the short
 * form. When none fits, the characters in its middle are cut.
 * @param {readonly string[]} names
 * @param {number} max
 * @returns {Map<string, string>} name -> what to show.
 */
export function shortNames(names, max) {
  const split = names.map((n) => n.split('.'));
  /** @type {Map<string, string>} */
  const out = new Map();
  names.forEach((name, k) => {
    if (name.length <= max) {
      out.set(name, name);
      return;
    }
    const found = shortForms(split[k]).find(
      (form) => form.text.length <= max && !split.some((other, m) => m !== k && couldRead(form.pattern, other)),
    );
    out.set(name, found ? found.text : middleCut(name, max));
  });
  return out;
}

/**
 * Labels of the layers of some entries: `layerLabel` with each entry's own descriptions.
 * @param {ReadonlyArray<{run: string, layers: readonly string[], descriptions?: readonly string[] | null}>} runs
 * @returns {(run: string, name: string) => string}
 */
export function layerLabels(runs) {
  /** @type {Map<string, Map<string, string>>} */
  const byRun = new Map();
  for (const r of runs) {
    const descriptions = r.descriptions ?? [];
    byRun.set(r.run, new Map(r.layers.map((name, i) => [name, layerLabel(name, descriptions[i])])));
  }
  return (run, name) => byRun.get(run)?.get(name) ?? name;
}
