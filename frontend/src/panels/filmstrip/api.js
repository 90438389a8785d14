// @ts-check
/**
 * @file Requests of the filmstrip: the `pictures` listing (through the tab's shared `Model`, so it
 * shares its cache and its error reporting) and `frame` answers (tb_layerdyn/plugin/http_api.md,
 * section "Pictures"), which the filmstrip keeps in its own bounded cache instead. A frame's PNGs
 * are decoded by the browser (`createImageBitmap`, no colour management) and read back as gray
 * levels.
 */

import { fetchBinary, routeUrl } from '../../core/api.js';

/**
 * @typedef {import('../../core/api.js').Model} Model
 * @typedef {import('./picture.js').Pair} Pair
 * @typedef {import('./picture.js').MapName} MapName
 * @typedef {import('./picture.js').PictureInfo} PictureInfo
 * @typedef {{name: string, description: string, shape: Pair | null, absent: number[],
 *   scales: Pair[] | null}} LayerListing one layer of a kind: its latest drawn shape, the steps
 *   it has no picture at, and its scales fixed across steps (per plane).
 * @typedef {{kind: string, planes: string[], maps: MapName[], steps: number[],
 *   wall_times: number[], layers: LayerListing[]}} KindListing
 * @typedef {{run: string, model: string | null, kinds: KindListing[]}} PictureListing
 * @typedef {{run: string, model: string | null, kind: string, step: number, wall_time: number,
 *   layers: string[], pictures: Array<PictureInfo | null>}} FrameHeader
 * @typedef {{header: FrameHeader, pngs: Array<Uint8Array<ArrayBuffer>[] | null>}} RawFrame a `frame` answer:
 *   its header and, per layer, each plane's PNG.
 * @typedef {{header: FrameHeader, levels: Array<Uint8Array[] | null>}} Frame per layer, each
 *   plane's gray levels row by row (`null` where the layer has no picture at this step).
 */

/**
 * Every kind of pictures of one entry of the run list.
 * @param {Model} model
 * @param {string} run the entry's name.
 * @returns {Promise<PictureListing>}
 */
export function pictureListing(model, run) {
  return model.get(routeUrl('pictures', model.entryParams(run)));
}

/**
 * The URL of one step's frame.
 * @param {Model} model
 * @param {string} run the entry's name.
 * @param {string} kind
 * @param {number} step
 * @returns {string}
 */
export function frameUrl(model, run, kind, step) {
  return routeUrl('frame', { ...model.entryParams(run), kind, step });
}

/**
 * Splits a `frame` answer into its header and its PNGs.
 * @param {ArrayBuffer} buffer
 * @returns {RawFrame}
 */
export function parseFrame(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  /** @type {FrameHeader} */
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  let offset = 4 + length;
  const pngs = header.pictures.map((picture) => {
    if (picture === null) return null;
    return picture.planes.map((plane) => {
      const length = plane.bytes ?? 0;
      if (offset + length > buffer.byteLength) {
        throw new Error(`the frame holds ${buffer.byteLength} bytes; its header accounts for more`);
      }
      offset += length;
      return new Uint8Array(buffer, offset - length, length);
    });
  });
  if (offset !== buffer.byteLength) {
    throw new Error(`the frame holds ${buffer.byteLength} bytes; its header accounts for ${offset}`);
  }
  return { header, pngs };
}

/**
 * The gray levels of an 8-bit grayscale PNG, row by row, decoded by the browser.
 * @param {Uint8Array<ArrayBuffer>} png
 * @returns {Promise<Uint8Array>}
 */
async function grayLevels(png) {
  const bitmap = await createImageBitmap(new Blob([png], { type: 'image/png' }), {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
  });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext('2d', { willReadFrequently: true }));
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const levels = new Uint8Array(canvas.width * canvas.height);
  for (let i = 0; i < levels.length; i++) levels[i] = rgba[4 * i];
  return levels;
}

/**
 * Fetches one frame and decodes its pictures to gray levels.
 * @param {string} url from `frameUrl`.
 * @returns {Promise<{value: Frame, bytes: number}>} the frame and the bytes its levels hold.
 */
export async function loadFrame(url) {
  const { header, pngs } = parseFrame(await fetchBinary(url));
  let bytes = 0;
  const levels = await Promise.all(pngs.map(async (planes) => {
    if (planes === null) return null;
    const decoded = await Promise.all(planes.map(grayLevels));
    bytes += decoded.reduce((sum, l) => sum + l.length, 0);
    return decoded;
  }));
  return { value: { header, levels }, bytes };
}
