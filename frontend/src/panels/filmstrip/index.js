// @ts-check
/**
 * @file Panel: the filmstrip. Every layer's picture of one kind (weights, gradients, updates,
 * travel, activations) side by side in depth order at one step, for a run and, beside it, a
 * second run at the same step; a step slider, play and pause at a chosen speed, the colour legend
 * with the scale fixed across steps or each frame's own, and a layer enlarged with the value under
 * the cursor.
 *
 * Frames (one request per run and step, every layer's PNGs) are kept in a cache bounded in bytes
 * and prefetched ahead of the step shown, so playing never waits on a request it could have made
 * earlier and never repeats one.
 */

import './style.css';

import { CSS } from '../../core/constants.js';
import { el, stateMessage } from '../../core/dom.js';
import { createRequestGuard } from '../../core/api.js';
import { PanelShell } from '../../core/panel.js';
import { compileFilter } from '../../core/shaping.js';
import { frameUrl, loadFrame, pictureListing } from './api.js';
import { FrameCache } from './cache.js';
import { legend, readoutText, scaleText } from './legend.js';
import { chooseScales, pictureRgba, valueAt } from './picture.js';
import { nextIndex, prefetchOrder, shownIndex, unionSteps, zoomFor } from './playback.js';

/**
 * @typedef {import('../../core/selection.js').State} State
 * @typedef {import('../../core/api.js').RunInfo} RunInfo
 * @typedef {import('./api.js').Frame} Frame
 * @typedef {import('./api.js').KindListing} KindListing
 * @typedef {import('./api.js').PictureListing} PictureListing
 * @typedef {import('./picture.js').Pair} Pair
 * @typedef {import('./picture.js').MapName} MapName
 * @typedef {import('./picture.js').ScaleMode} ScaleMode
 * @typedef {{canvas: HTMLCanvasElement, caption: HTMLElement, scale: HTMLElement,
 *   empty: HTMLElement, figure: HTMLElement}} Cell one layer's place in a strip.
 * @typedef {{run: string, listing: KindListing, element: HTMLElement, label: HTMLElement,
 *   note: HTMLElement, cells: Map<string, Cell>, layers: string[]}} Strip one run's row.
 */

/** CSS class names; style.css beside this module defines each. */
const FILM_CSS = Object.freeze({
  controls: 'ld-film-controls',
  player: 'ld-film-player',
  slider: 'ld-film-slider',
  stepLabel: 'ld-film-step',
  strip: 'ld-film-strip',
  stripTitle: 'ld-film-strip-title',
  layers: 'ld-film-layers',
  figure: 'ld-film-figure',
  canvas: 'ld-film-canvas',
  caption: 'ld-film-caption',
  scale: 'ld-film-scale',
  empty: 'ld-film-empty',
  selected: 'ld-film-selected',
  enlarged: 'ld-film-enlarged',
  readout: 'ld-film-readout',
});

const WATCHED = ['runs', 'checked', 'layerFilter', 'status'];
const KIND_LABELS = Object.freeze({
  weights: 'weights',
  gradients: 'gradients',
  updates: 'updates',
  travel: 'travel from init',
  activations: 'activations',
});
/** Steps shown per second while playing. */
const SPEEDS = Object.freeze([1, 2, 5, 10, 20]);
const DEFAULT_SPEED = 5;
/** Frames fetched ahead of the one shown, and behind it. */
const PREFETCH_AHEAD = 24;
const PREFETCH_BEHIND = 4;
/** Bytes of gray levels the frame cache keeps: 1,600 frames of ten 64×64 layers, 7,000 of LeNet-5. */
const CACHE_BYTES = 64 * 2 ** 20;
const IN_FLIGHT = 3;
/** Sizes on screen, in CSS pixels: pictures in a strip, and the enlarged one. */
const STRIP_BOX = Object.freeze({ height: 120, minHeight: 16, maxWidth: 320, maxZoom: 8 });
const ENLARGED_BOX = Object.freeze({ height: 420, minHeight: 48, maxWidth: 860, maxZoom: 40 });
const NONE = '';

/**
 * @param {string} text
 * @param {HTMLElement} control
 * @returns {HTMLElement}
 */
function labelled(text, control) {
  return el('label', { className: CSS.control }, [el('span', { text }), control]);
}

/**
 * @param {HTMLSelectElement} select
 * @param {ReadonlyArray<{value: string, text: string}>} options
 * @param {string} value the option to keep selected, when it is offered.
 * @returns {string} the value selected.
 */
function offer(select, options, value) {
  select.replaceChildren(...options.map((o) => el('option', { text: o.text, attrs: { value: o.value } })));
  const chosen = options.some((o) => o.value === value) ? value : (options[0]?.value ?? NONE);
  select.value = chosen;
  return chosen;
}

/** @type {import('../../core/panel.js').PanelFactory} */
export function createFilmstripPanel(context) {
  const shell = new PanelShell(
    'filmstrip',
    'Pictures of training',
    'Every layer\'s picture at one step, in depth order, as logged with images_every=N: weights, '
      + 'gradients, updates, how far each weight travelled, and a probe\'s activations. Play to watch '
      + 'them change; click a picture to enlarge it and read the value under the cursor.',
  );
  /** @type {FrameCache<Frame>} */
  const cache = new FrameCache((key) => loadFrame(key.split('#')[0]), { maxBytes: CACHE_BYTES, inFlight: IN_FLIGHT });
  const guard = createRequestGuard();
  const local = {
    run: NONE,
    beside: NONE,
    kind: NONE,
    /** @type {ScaleMode} */
    scale: 'fixed',
    index: 0,
    playing: false,
    speed: DEFAULT_SPEED,
    /** @type {{run: string, layer: string} | null} */
    enlarged: null,
  };
  /** @type {State} */
  let current = context.selection.state;
  /** @type {Strip[]} */
  let strips = [];
  /** @type {number[]} */
  let steps = [];
  /** @type {ReturnType<typeof setTimeout> | null} */
  let timer = null;
  /** When the next step is due while playing (`performance.now()` time). */
  let due = 0;
  let waiting = false;

  const runSelect = el('select', { attrs: { 'aria-label': 'Run', 'data-control': 'filmstrip-run' } });
  const besideSelect = el('select', { attrs: { 'aria-label': 'Second run, side by side', 'data-control': 'filmstrip-beside' } });
  const kindSelect = el('select', { attrs: { 'aria-label': 'Pictures of', 'data-control': 'filmstrip-kind' } });
  const scaleSelect = el('select', { attrs: { 'aria-label': 'Colour scale', 'data-control': 'filmstrip-scale' } });
  offer(scaleSelect, [
    { value: 'fixed', text: 'fixed across steps' },
    { value: 'frame', text: 'each frame\'s own' },
  ], local.scale);
  const speedSelect = el('select', { attrs: { 'aria-label': 'Speed', 'data-control': 'filmstrip-speed' } });
  offer(speedSelect, SPEEDS.map((s) => ({ value: String(s), text: `${s} steps/s` })), String(local.speed));
  const playButton = el('button', {
    text: 'Play', attrs: { type: 'button', 'data-control': 'filmstrip-play', 'aria-pressed': 'false' },
  });
  const slider = el('input', {
    className: FILM_CSS.slider,
    attrs: { type: 'range', min: '0', max: '0', step: '1', value: '0', 'aria-label': 'Step', 'data-control': 'filmstrip-step' },
  });
  const stepLabel = el('span', { className: FILM_CSS.stepLabel, attrs: { 'aria-live': 'off' } });
  const controls = el('div', { className: FILM_CSS.controls }, [
    labelled('Run', runSelect),
    labelled('Beside it', besideSelect),
    labelled('Pictures of', kindSelect),
    labelled('Scale', scaleSelect),
  ]);
  const player = el('div', { className: FILM_CSS.player }, [playButton, slider, stepLabel, labelled('Speed', speedSelect)]);
  const legendBox = el('div');
  const stripsBox = el('div');
  const enlargedBox = el('div');
  const closeButton = el('button', { text: 'Close', attrs: { type: 'button', 'data-control': 'filmstrip-close' } });
  /** @type {{element: HTMLElement, title: HTMLElement, hint: HTMLElement, canvas: HTMLCanvasElement,
   *   readout: HTMLElement, cursor: Pair | null, shown: {picture: import('./picture.js').PictureInfo,
   *   levels: Uint8Array[], zoom: {x: number, y: number}, planes: string[]} | null}} */
  const enlarged = {
    element: el('section', { className: FILM_CSS.enlarged }),
    title: el('strong'),
    hint: el('p', { className: CSS.panelHint }),
    canvas: el('canvas', { className: FILM_CSS.canvas }),
    readout: el('div', { className: FILM_CSS.readout, attrs: { 'aria-live': 'polite' } }),
    cursor: null,
    shown: null,
  };
  enlarged.element.append(
    el('div', { className: FILM_CSS.stripTitle }, [enlarged.title, closeButton]),
    enlarged.hint, enlarged.canvas, enlarged.readout,
  );
  closeButton.addEventListener('click', closeEnlarged);
  enlarged.canvas.addEventListener('mousemove', (event) => {
    enlarged.cursor = [event.offsetX, event.offsetY];
    readOut();
  });
  enlarged.canvas.addEventListener('mouseleave', () => {
    enlarged.cursor = null;
    readOut();
  });

  runSelect.addEventListener('change', () => {
    local.run = runSelect.value;
    refresh(current);
  });
  besideSelect.addEventListener('change', () => {
    local.beside = besideSelect.value;
    refresh(current);
  });
  kindSelect.addEventListener('change', () => {
    local.kind = kindSelect.value;
    refresh(current);
  });
  scaleSelect.addEventListener('change', () => {
    local.scale = scaleSelect.value === 'frame' ? 'frame' : 'fixed';
    if (strips.length) legendBox.replaceChildren(legend(strips[0].listing.maps, local.scale));
    draw();
  });
  speedSelect.addEventListener('change', () => {
    local.speed = Number(speedSelect.value);
  });
  slider.addEventListener('input', () => {
    local.index = Number(slider.value);
    show();
  });
  playButton.addEventListener('click', () => setPlaying(!local.playing));
  cache.onLoad((key) => {
    if (waiting) tick();
    else if (keysAt(local.index).includes(key)) draw();
  });
  shell.element.addEventListener('keydown', (event) => {
    if (event.key === 'Escape' && local.enlarged) closeEnlarged();
  });

  /**
   * @param {boolean} playing
   */
  function setPlaying(playing) {
    local.playing = playing && steps.length > 1;
    playButton.textContent = local.playing ? 'Pause' : 'Play';
    playButton.setAttribute('aria-pressed', String(local.playing));
    if (timer !== null) clearTimeout(timer);
    timer = null;
    waiting = false;
    if (local.playing) {
      due = performance.now() + 1000 / local.speed;
      timer = setTimeout(tick, 1000 / local.speed);
    }
  }

  /**
   * Advances one step when every frame it shows is here, otherwise waits for them to arrive; the
   * next step is due one period after this one was, so drawing time does not slow playing down.
   */
  function tick() {
    timer = null;
    if (!local.playing) return;
    const next = nextIndex(local.index, steps.length);
    const ready = keysAt(next).every((key) => key === null || cache.has(key));
    waiting = !ready;
    if (!ready) {
      prefetch(next);
      return;
    }
    local.index = next;
    show();
    const period = 1000 / local.speed;
    const now = performance.now();
    // After a wait for frames, start the beat again rather than rushing to catch up.
    due = due + period < now ? now + period : due + period;
    timer = setTimeout(tick, due - now);
  }

  /**
   * The cache key of each strip's frame at a slider position (`null` where a run has none yet):
   * its URL and the wall time of what it holds, so a step logged again is fetched again.
   * @param {number} index
   * @returns {Array<string | null>}
   */
  function keysAt(index) {
    const step = steps[index];
    return strips.map((strip) => {
      const row = shownIndex(strip.listing.steps, step);
      if (row < 0) return null;
      const url = frameUrl(context.model, strip.run, strip.listing.kind, strip.listing.steps[row]);
      return `${url}#${strip.listing.wall_times[row]}`;
    });
  }

  /**
   * Queues the frames after (and just before) a slider position.
   * @param {number} index
   */
  function prefetch(index) {
    const order = prefetchOrder(index, steps.length, PREFETCH_AHEAD, PREFETCH_BEHIND);
    /** @type {string[]} */
    const keys = [];
    for (const position of order) {
      for (const key of keysAt(position)) if (key !== null && !keys.includes(key)) keys.push(key);
    }
    cache.prefetch(keys);
  }

  /** Shows the slider's position: asks for its frames, draws what is here, prefetches on. */
  function show() {
    slider.value = String(local.index);
    stepLabel.textContent = steps.length ? `step ${steps[local.index]}` : '';
    for (const [k, key] of keysAt(local.index).entries()) {
      if (key === null) continue;
      const strip = strips[k];
      cache.get(key).catch((e) => {
        if (strips[k] !== strip) return;
        strip.note.replaceChildren(stateMessage('error', e instanceof Error ? e.message : String(e)));
      });
    }
    prefetch(local.index);
    draw();
  }

  /** Draws every strip at the slider's position from the frames held; the others keep their last picture until theirs arrives. */
  function draw() {
    if (!steps.length) return;
    const step = steps[local.index];
    const keys = keysAt(local.index);
    strips.forEach((strip, k) => {
      const key = keys[k];
      if (key === null) {
        strip.label.textContent = `no ${strip.listing.kind} pictures until step ${strip.listing.steps[0]}`;
        strip.element.dataset.step = '';
        for (const cell of strip.cells.values()) showEmpty(cell, '');
        return;
      }
      const frame = cache.peek(key);
      strip.element.toggleAttribute('aria-busy', frame === undefined);
      if (frame === undefined) return;
      const shownStep = frame.header.step;
      strip.label.textContent = shownStep === step ? `step ${shownStep}` : `step ${shownStep} (its latest by step ${step})`;
      strip.element.dataset.step = String(shownStep);
      strip.note.replaceChildren();
      strip.layers.forEach((name) => {
        const cell = /** @type {Cell} */ (strip.cells.get(name));
        const column = frame.header.layers.indexOf(name);
        const picture = column < 0 ? null : frame.header.pictures[column];
        const levels = column < 0 ? null : frame.levels[column];
        if (picture === null || levels === null) {
          showEmpty(cell, `no picture at step ${shownStep}`);
          return;
        }
        const layer = /** @type {import('./api.js').LayerListing} */ (strip.listing.layers.find((l) => l.name === name));
        const scales = chooseScales(local.scale, layer.scales ?? [], picture, strip.listing.maps);
        paint(cell.canvas, picture, strip.listing.maps, levels, scales, STRIP_BOX);
        cell.canvas.hidden = false;
        cell.empty.hidden = true;
        cell.scale.textContent = scaleText(strip.listing.maps, scales);
        cell.figure.title = picture.description;
      });
    });
    drawEnlarged();
  }

  /**
   * @param {Cell} cell
   * @param {string} text
   */
  function showEmpty(cell, text) {
    cell.canvas.hidden = true;
    cell.empty.hidden = false;
    cell.empty.textContent = text;
    cell.scale.textContent = '';
  }

  /**
   * Paints a picture onto a canvas one canvas pixel per picture pixel, shown `zoom` times larger
   * (the browser keeps the pixels sharp).
   * @param {HTMLCanvasElement} canvas
   * @param {import('./picture.js').PictureInfo} picture
   * @param {readonly MapName[]} maps
   * @param {Uint8Array[]} levels
   * @param {Pair[]} scales
   * @param {{height: number, minHeight: number, maxWidth: number, maxZoom: number}} box
   * @returns {{x: number, y: number}} the zoom across and down.
   */
  function paint(canvas, picture, maps, levels, scales, box) {
    const { width, height, data } = pictureRgba(picture, maps, levels, scales);
    if (canvas.width !== width || canvas.height !== height) {
      canvas.width = width;
      canvas.height = height;
    }
    const zoom = zoomFor([height, width], box);
    canvas.style.width = `${width * zoom.x}px`;
    canvas.style.height = `${height * zoom.y}px`;
    /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d')).putImageData(new ImageData(data, width, height), 0, 0);
    return zoom;
  }

  /** Draws the enlarged layer, if one is chosen, at the strips' step. */
  function drawEnlarged() {
    const chosen = local.enlarged;
    if (!chosen) return;
    const k = strips.findIndex((s) => s.run === chosen.run);
    const key = k < 0 ? null : keysAt(local.index)[k];
    const frame = key === null ? undefined : cache.peek(key);
    if (frame === undefined) return;
    const strip = strips[k];
    const column = frame.header.layers.indexOf(chosen.layer);
    const picture = column < 0 ? null : frame.header.pictures[column];
    const levels = column < 0 ? null : frame.levels[column];
    enlarged.title.textContent = `${chosen.layer} · ${strip.run} · step ${frame.header.step}`;
    enlarged.element.dataset.enlarged = chosen.layer;
    enlarged.element.dataset.step = String(frame.header.step);
    if (!enlargedBox.contains(enlarged.element)) enlargedBox.replaceChildren(enlarged.element);
    if (picture === null || levels === null) {
      enlarged.shown = null;
      enlarged.canvas.hidden = true;
      enlarged.hint.textContent = `${chosen.layer} has no picture at step ${frame.header.step}.`;
      enlarged.readout.textContent = '';
      return;
    }
    const layer = /** @type {import('./api.js').LayerListing} */ (strip.listing.layers.find((l) => l.name === chosen.layer));
    const scales = chooseScales(local.scale, layer.scales ?? [], picture, strip.listing.maps);
    const zoom = paint(enlarged.canvas, picture, strip.listing.maps, levels, scales, ENLARGED_BOX);
    enlarged.canvas.hidden = false;
    enlarged.hint.textContent = `${picture.description} · scale ${scaleText(strip.listing.maps, scales)}`;
    enlarged.shown = { picture, levels, zoom, planes: strip.listing.planes };
    readOut();
  }

  /** Says the values under the cursor over the enlarged picture (or how to get them). */
  function readOut() {
    const { shown, cursor } = enlarged;
    if (shown === null) return;
    if (cursor === null) {
      enlarged.readout.textContent = 'Move the cursor over the picture to read its values.';
      return;
    }
    const x = Math.floor(cursor[0] / shown.zoom.x);
    const y = Math.floor(cursor[1] / shown.zoom.y);
    enlarged.readout.textContent = readoutText(valueAt(shown.picture, shown.levels, x, y), shown.planes);
  }

  function closeEnlarged() {
    local.enlarged = null;
    enlarged.shown = null;
    enlargedBox.replaceChildren();
    markSelected();
  }

  /** Marks the enlarged layer's pictures in the strips. */
  function markSelected() {
    for (const strip of strips) {
      for (const [name, cell] of strip.cells) {
        const chosen = local.enlarged !== null && local.enlarged.run === strip.run && local.enlarged.layer === name;
        cell.figure.classList.toggle(FILM_CSS.selected, chosen);
      }
    }
  }

  /**
   * One run's row of layers, empty until its frames arrive.
   * @param {string} run
   * @param {KindListing} listing
   * @param {RegExp | null} filter
   * @returns {Strip}
   */
  function buildStrip(run, listing, filter) {
    const layers = listing.layers.map((l) => l.name).filter((name) => !filter || filter.test(name));
    /** @type {Map<string, Cell>} */
    const cells = new Map();
    const row = el('div', { className: FILM_CSS.layers });
    for (const name of layers) {
      const canvas = el('canvas', { className: FILM_CSS.canvas });
      const empty = el('div', { className: FILM_CSS.empty });
      empty.hidden = true;
      const scale = el('span', { className: FILM_CSS.scale });
      const caption = el('figcaption', { className: FILM_CSS.caption }, [el('span', { text: name }), scale]);
      const figure = el('figure', { className: FILM_CSS.figure, attrs: { 'data-layer': name, tabindex: '0', role: 'button' } }, [canvas, empty, caption]);
      const shape = listing.layers.find((l) => l.name === name)?.shape;
      if (shape) {
        const zoom = zoomFor(shape, STRIP_BOX);
        canvas.style.width = `${shape[1] * zoom.x}px`;
        canvas.style.height = `${shape[0] * zoom.y}px`;
      }
      const choose = () => {
        if (local.enlarged?.run === run && local.enlarged?.layer === name) {
          closeEnlarged();
          return;
        }
        local.enlarged = { run, layer: name };
        enlarged.cursor = null;
        markSelected();
        drawEnlarged();
      };
      figure.addEventListener('click', choose);
      figure.addEventListener('keydown', (event) => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          choose();
        }
      });
      cells.set(name, { canvas, caption, scale, empty, figure });
      row.append(figure);
    }
    const label = el('span', { className: CSS.panelHint });
    const note = el('div');
    const element = el('section', { className: FILM_CSS.strip, attrs: { 'data-run': run, 'data-kind': listing.kind } }, [
      el('div', { className: FILM_CSS.stripTitle }, [el('strong', { text: run }), label]),
      note,
      layers.length ? row : stateMessage('empty', 'No layer matches the layer filter.'),
    ]);
    return { run, listing, element, label, note, cells, layers };
  }

  /**
   * @param {'loading' | 'empty' | 'error'} kind
   * @param {string} text
   */
  function showState(kind, text) {
    setPlaying(false);
    strips = [];
    steps = [];
    shell.show([stateMessage(kind, text)]);
  }

  /**
   * Chooses the runs and kind, fetches their listings and lays the strips out.
   * @param {State} state
   */
  async function refresh(state) {
    const ticket = guard.next();
    if (state.status === 'loading') {
      shell.setBusy(true);
      return;
    }
    if (state.status === 'error') {
      setPlaying(false);
      shell.showError(state.error);
      return;
    }
    const withPictures = state.runs.filter((r) => r.pictures.length);
    if (!withPictures.length) {
      showState('empty', 'No pictures logged: LayerDynamics(model, writer, images_every=N) draws every '
        + 'layer every N steps.');
      return;
    }
    const names = withPictures.map((r) => ({ value: r.run, text: r.run }));
    const ticked = withPictures.find((r) => state.checked.includes(r.run));
    local.run = offer(runSelect, names, local.run || (ticked ?? withPictures[0]).run);
    local.beside = offer(besideSelect, [{ value: NONE, text: 'none' }, ...names.filter((n) => n.value !== local.run)], local.beside);
    const shown = [local.run, local.beside].filter((r) => r !== NONE);
    const kinds = ['weights', 'gradients', 'updates', 'travel', 'activations']
      .filter((k) => withPictures.some((r) => shown.includes(r.run) && r.pictures.includes(k)));
    local.kind = offer(kindSelect, kinds.map((k) => ({ value: k, text: KIND_LABELS[/** @type {keyof KIND_LABELS} */ (k)] })), local.kind);
    shell.setBusy(true);
    /** @type {PictureListing[]} */
    let listings;
    try {
      listings = await Promise.all(shown.map((run) => pictureListing(context.model, run)));
    } catch (e) {
      if (!guard.isCurrent(ticket)) return;
      setPlaying(false);
      shell.showError(e);
      return;
    }
    if (!guard.isCurrent(ticket)) return;
    shell.setBusy(false);
    const { regex } = compileFilter(state.layerFilter);
    const previousStep = steps[local.index];
    strips = [];
    listings.forEach((listing, k) => {
      const found = listing.kinds.find((kind) => kind.kind === local.kind);
      if (found) strips.push(buildStrip(shown[k], found, regex));
    });
    const notes = shown.filter((_, k) => !listings[k].kinds.some((kind) => kind.kind === local.kind))
      .map((run) => el('p', { className: `${CSS.state} ${CSS.stateEmpty}`, text: `${run} has no ${local.kind} pictures.`, attrs: { role: 'status' } }));
    steps = unionSteps(strips.map((s) => s.listing.steps));
    const kept = steps.indexOf(previousStep);
    local.index = kept >= 0 ? kept : Math.min(local.index, Math.max(0, steps.length - 1));
    slider.max = String(Math.max(0, steps.length - 1));
    slider.disabled = steps.length < 2;
    playButton.disabled = steps.length < 2;
    if (local.enlarged && !strips.some((s) => s.run === local.enlarged?.run && s.layers.includes(local.enlarged.layer))) {
      closeEnlarged();
    }
    legendBox.replaceChildren(strips.length ? legend(strips[0].listing.maps, local.scale) : '');
    stripsBox.replaceChildren(...notes, ...strips.map((s) => s.element));
    shell.show([controls, legendBox, player, stripsBox, enlargedBox]);
    markSelected();
    if (!strips.length) {
      setPlaying(false);
      return;
    }
    if (local.playing) setPlaying(true);
    show();
  }

  /**
   * @param {State} state
   * @param {Set<string>} changed
   */
  function update(state, changed) {
    current = state;
    if (!WATCHED.some((key) => changed.has(key))) return;
    refresh(state);
  }

  return { element: shell.element, update };
}
