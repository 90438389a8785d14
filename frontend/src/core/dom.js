// @ts-check
/**
 * @file Small DOM builders. Text from data (run, layer and group names) only ever goes in through
 * `textContent` or attributes, never parsed as HTML.
 */

import { CSS } from './constants.js';

/**
 * Creates an element.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {{className?: string, text?: string, title?: string, attrs?: Record<string, string>}} [options]
 * @param {Array<Node | null>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
export function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = options.text;
  if (options.title !== undefined) node.title = options.title;
  for (const [key, value] of Object.entries(options.attrs ?? {})) node.setAttribute(key, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

/**
 * A message shown in place of a panel's content.
 * @param {'loading' | 'empty' | 'error'} kind
 * @param {string} text
 * @returns {HTMLElement}
 */
export function stateMessage(kind, text) {
  const className = {
    loading: CSS.stateLoading,
    empty: CSS.stateEmpty,
    error: CSS.stateError,
  }[kind];
  return el('div', {
    className: `${CSS.state} ${className}`,
    text,
    attrs: kind === 'error' ? { role: 'alert' } : { role: 'status' },
  });
}

/**
 * A small colour square.
 * @param {string} colour
 * @returns {HTMLElement}
 */
export function chip(colour) {
  const node = el('span', { className: CSS.chip });
  node.style.background = colour;
  return node;
}

/**
 * Canvas sized for the screen's pixel density; drawing coordinates stay in CSS pixels.
 * @param {number} width CSS pixels.
 * @param {number} height CSS pixels.
 * @param {string} className
 * @returns {{canvas: HTMLCanvasElement, ctx: CanvasRenderingContext2D}}
 */
export function hiDpiCanvas(width, height, className) {
  const ratio = window.devicePixelRatio || 1;
  const canvas = el('canvas', { className });
  canvas.width = Math.max(1, Math.round(width * ratio));
  canvas.height = Math.max(1, Math.round(height * ratio));
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
  ctx.scale(ratio, ratio);
  return { canvas, ctx };
}

/**
 * Lets the browser handle input and paint before the caller goes on, so panels that all get
 * their data at once (from the cache) draw in separate tasks instead of one long freeze.
 * @returns {Promise<void>}
 */
export function yieldToBrowser() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
