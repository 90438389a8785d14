// @ts-check
/**
 * @file One uPlot line chart of many series, with a hover readout of the series nearest the
 * cursor. Shared by the per-layer and the group curves.
 *
 * uPlot's own legend and hover points are off: with hundreds of series they would add a DOM node
 * per series, and the readout below names the one line under the cursor instead. A chart of many
 * solid lines (`RASTER_LINES_MIN`) has them painted pixel by pixel (`raster.js`) instead of
 * stroked by uPlot, which keeps the axes, cursor, zoom and readout: uPlot then holds the steps
 * and one stand-in series only, since thousands of series of its own would cost it time in every
 * draw and cursor move for lines it does not draw.
 *
 * Columns may be arrays with `null` for gaps or typed arrays with NaN for them; the y range is
 * computed here, from finite values only, since uPlot's own would take a NaN for a bound.
 */

import uPlot from 'uplot';
import { CSS } from '../core/constants.js';
import { el } from '../core/dom.js';
import { hexToRgb } from '../core/colors.js';
import { RASTER_LINES_MIN } from '../core/constants.js';
import { formatValue } from '../core/scales.js';
import { isGap } from '../core/shaping.js';
import { paintLines, pixelMap } from './raster.js';

/**
 * @typedef {{
 *   series: string, run: string, color: string, dash: readonly number[],
 *   count?: ReadonlyArray<number>
 * }} Line `count`, for a line averaged over runs, is how many runs had a value at each step; the
 *   readout shows it.
 * @typedef {import('../core/shaping.js').Column} Column
 * @typedef {import('../core/shaping.js').Columns} Columns
 * @typedef {{line: number, lower: Column, upper: Column}} Band
 *   a shaded spread around `lines[line]`, on the same steps as `columns`.
 * @typedef {{
 *   columns: Columns, lines: Line[], width: number, height: number,
 *   logY: boolean, yLabel: string, syncKey: string, spanGaps: boolean, showRun: boolean,
 *   xLabel?: string, bands?: Band[], onZoom?: (min: number, max: number) => void,
 *   onReset?: () => void
 * }} ChartSpec `xLabel` names a real-valued x axis (such as α); without it the x axis is the
 *   training step. `onZoom` is told the x range the user dragged over (the chart zooms to it
 *   already; the caller may bring finer data with `setData`); `onReset` that the user
 *   double-clicked to zoom out again.
 * @typedef {{
 *   element: HTMLElement, plot: uPlot,
 *   setData: (columns: Columns, bands?: Band[], resetScales?: boolean) => boolean,
 *   painted: boolean
 * }} CurveChart `painted`: its lines are painted by `raster.js`. `setData` replaces the points drawn, keeping the lines; it returns false (and draws
 *   nothing new) when the columns do not fit the chart's lines.
 */

/** Opacity of a band's fill: light enough that the lines over it stay readable. */
const BAND_ALPHA = 0.16;

const AXIS_FONT = '11px Roboto, "Helvetica Neue", Arial, sans-serif';
const AXIS_STROKE = '#616161';
const GRID = { stroke: '#ebebeb', width: 1 };

/**
 * Tick labels that tell neighbouring ticks apart: `formatValue`'s four significant digits, or more
 * where a narrow range (a loss that only moves in its fifth digit) would print one label twice.
 * Only numbers are refined; anything else keeps `formatValue`'s label.
 * @param {Array<number | null>} splits
 * @returns {string[]}
 */
function tickLabels(splits) {
  const labels = splits.map((v) => formatValue(v));
  const numbers = () => labels.filter((_, i) => typeof splits[i] === 'number');
  const clash = () => new Set(numbers()).size < numbers().length;
  for (let digits = 5; clash() && digits <= 12; digits++) {
    splits.forEach((v, i) => {
      if (typeof v === 'number') labels[i] = String(Number(v.toPrecision(digits)));
    });
  }
  return labels;
}

/**
 * Index of the line whose value at data index `idx` is closest to the cursor, in pixels.
 * @param {uPlot} u
 * @param {Columns} data the chart's columns (`chartData`).
 * @param {number} idx
 * @param {number} top cursor position in CSS pixels from the plot's top.
 * @param {number} lineCount columns 1..lineCount are lines; any after them are band edges.
 * @returns {number} column index (>= 1), or -1 when no line has a value there.
 */
function nearestSeries(u, data, idx, top, lineCount) {
  let best = -1;
  let bestDistance = Infinity;
  for (let s = 1; s <= lineCount; s++) {
    const v = data[s][idx];
    if (isGap(v)) continue;
    const distance = Math.abs(u.valToPos(v, 'y') - top);
    if (distance < bestDistance) {
      bestDistance = distance;
      best = s;
    }
  }
  return best;
}

/**
 * uPlot hooks that keep a readout (series, run, step, value) next to the cursor.
 * @param {Line[]} lines
 * @param {boolean} showRun
 * @param {string | undefined} xLabel
 * @param {{columns: Columns}} held the chart's columns (`chartData`), as they are replaced.
 * @returns {uPlot.Plugin}
 */
function hoverReadout(lines, showRun, xLabel, held) {
  const box = el('div', { className: CSS.tooltip, attrs: { role: 'status' } });
  const name = el('strong');
  const where = el('span');
  box.append(name, where);
  box.hidden = true;
  // Synced charts move their cursors together; only the chart under the pointer shows a readout.
  let pointerInside = false;
  return {
    hooks: {
      init: [
        (u) => {
          u.over.append(box);
          u.over.addEventListener('mouseenter', () => { pointerInside = true; });
          u.over.addEventListener('mouseleave', () => {
            pointerInside = false;
            box.hidden = true;
          });
        },
      ],
      setCursor: [
        (u) => {
          const { idx, left, top } = u.cursor;
          const s = !pointerInside || idx === null || idx === undefined || left === undefined || left < 0
            || top === undefined
            ? -1
            : nearestSeries(u, held.columns, idx, top, lines.length);
          if (s < 0 || idx === null || idx === undefined || left === undefined || top === undefined) {
            box.hidden = true;
            return;
          }
          const line = lines[s - 1];
          name.textContent = showRun ? `${line.series} · ${line.run}` : line.series;
          const x = u.data[0][idx];
          const n = line.count ? ` · n = ${line.count[idx]}` : '';
          where.textContent = `${xLabel ? `${xLabel} ${formatValue(x)}` : `step ${x}`} · ${formatValue(held.columns[s][idx])}${n}`;
          box.style.borderColor = line.color;
          box.hidden = false;
          const flip = left > u.over.clientWidth - 180;
          box.style.left = flip ? '' : `${left + 12}px`;
          box.style.right = flip ? `${u.over.clientWidth - left + 12}px` : '';
          box.style.top = `${Math.max(0, top - 40)}px`;
        },
      ],
    },
  };
}

/**
 * A CSS colour with some transparency.
 * @param {string} hex `#rrggbb`.
 * @param {number} alpha
 */
function translucent(hex, alpha) {
  const [r, g, b] = hexToRgb(hex);
  return `rgba(${r}, ${g}, ${b}, ${alpha})`;
}

/**
 * A line that stops at every missing value and starts again after it, or with `spanGaps` joins
 * the values on either side of it.
 *
 * uPlot's own line joins the points around a gap and hides the join with a clip path per series;
 * with hundreds of series, each with gaps, clipping made the canvas take seconds to draw (measured:
 * 4,000 lines of 1,000 points, 2% of them missing, about 7 s here). Lifting the pen at a gap draws
 * the same picture with no clip at all. uPlot's own line also takes only `null` for a gap, not NaN.
 * @param {boolean} spanGaps
 * @returns {uPlot.Series.PathBuilder}
 */
function gappedLine(spanGaps) {
  return (u, seriesIdx, idx0, idx1) => {
    const xs = u.data[0];
    const ys = u.data[seriesIdx];
    const stroke = new Path2D();
    let drawing = false;
    for (let i = idx0; i <= idx1; i++) {
      const y = ys[i];
      if (isGap(y)) {
        if (!spanGaps) drawing = false;
        continue;
      }
      const px = u.valToPos(xs[i], 'x', true);
      const py = u.valToPos(y, 'y', true);
      if (drawing) stroke.lineTo(px, py);
      else stroke.moveTo(px, py);
      drawing = true;
    }
    return { stroke, fill: null, clip: null, band: null, gaps: undefined, flags: 0 };
  };
}

/** A series whose line uPlot leaves alone (the raster painter draws it). */
const noPath = () => null;

/**
 * The y range uPlot would choose (its own padding and snapping) for the finite values, positive
 * ones on a log axis, of every series over the x range in view.
 * @param {uPlot} u
 * @param {Columns} data the chart's columns (`chartData`).
 * @param {boolean} logY
 * @returns {uPlot.Range.MinMax}
 */
function yRange(u, data, logY) {
  const [i0, i1] = u.series[0].idxs ?? [0, data[0].length - 1];
  let min = Infinity;
  let max = -Infinity;
  for (let s = 1; s < data.length; s++) {
    const ys = data[s];
    if (ys instanceof Float32Array) {
      // The binary routes' columns, thousands of them: no null to look for, one test a value
      // (NaN fails every comparison).
      for (let i = i0; i <= i1; i++) {
        const v = ys[i];
        if (logY ? v > 0 : v === v) {
          if (v < min) min = v;
          if (v > max) max = v;
        }
      }
      continue;
    }
    for (let i = i0; i <= i1; i++) {
      const v = ys[i];
      // NaN and null fail both comparisons; a log axis has no place for the rest.
      if (v === null || v === undefined || (logY && !(v > 0))) continue;
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  // Nothing to show: no range, as uPlot itself would answer.
  if (!(min <= max && max < Infinity && min > -Infinity)) return [null, null];
  return logY ? uPlot.rangeLog(min, max, 10, false) : uPlot.rangeNum(min, max, 0.1, true);
}

/**
 * uPlot hooks that paint the lines of a chart into its canvas, over the grid, pixel by pixel.
 * @param {Line[]} lines columns 1..lines.length.
 * @param {boolean} logY
 * @param {boolean} spanGaps
 * @param {{columns: Columns}} held the chart's columns, as they are replaced.
 * @returns {uPlot.Plugin}
 */
function paintedLines(lines, logY, spanGaps, held) {
  const colors = lines.map((line) => hexToRgb(line.color));
  const scratch = document.createElement('canvas');
  return {
    hooks: {
      draw: [
        (u) => {
          const { left, top, width, height } = u.bbox;
          const w = Math.round(width);
          const h = Math.round(height);
          const x = u.scales.x;
          const y = u.scales.y;
          if (w <= 0 || h <= 0 || x.min == null || x.max == null || y.min == null || y.max == null) return;
          if (scratch.width !== w || scratch.height !== h) {
            scratch.width = w;
            scratch.height = h;
          }
          const ctx = /** @type {CanvasRenderingContext2D} */ (scratch.getContext('2d'));
          const image = ctx.createImageData(w, h);
          const shown = lines.map((_, k) => ({ values: held.columns[k + 1], color: colors[k] }));
          const view = { xMin: x.min, xMax: x.max, yMin: y.min, yMax: y.max, logY };
          paintLines(image, /** @type {ArrayLike<number>} */ (held.columns[0]), shown, pixelMap(view, w, h), spanGaps);
          ctx.putImageData(image, 0, 0);
          u.ctx.drawImage(scratch, Math.round(left), Math.round(top));
        },
      ],
    },
  };
}

/**
 * uPlot's data for a chart: the columns, then each band's upper and lower edge.
 * @param {Columns} columns
 * @param {Band[]} bands
 */
function chartData(columns, bands) {
  return bands.length ? [...columns, ...bands.flatMap((b) => [b.upper, b.lower])] : columns;
}

/**
 * uPlot hooks that report a drag-zoom and a double-click zoom-out.
 * @param {ChartSpec} spec
 * @returns {uPlot.Plugin}
 */
function zoomReports(spec) {
  return {
    hooks: {
      init: [
        (u) => {
          u.over.addEventListener('dblclick', () => spec.onReset?.());
        },
      ],
      setSelect: [
        (u) => {
          if (!spec.onZoom || u.select.width < 2) return;
          const min = u.posToVal(u.select.left, 'x');
          const max = u.posToVal(u.select.left + u.select.width, 'x');
          if (Number.isFinite(min) && Number.isFinite(max) && max > min) spec.onZoom(min, max);
        },
      ],
    },
  };
}

/**
 * Draws one chart.
 * @param {ChartSpec} spec
 * @returns {CurveChart}
 */
export function createCurveChart(spec) {
  const element = el('div', { className: CSS.chart });
  const bands = spec.bands ?? [];
  // Series index of the first band edge: after the steps column and the lines.
  const first = spec.lines.length + 1;
  const painted = spec.lines.length >= RASTER_LINES_MIN && bands.length === 0
    && spec.lines.every((line) => line.dash.length === 0);
  const held = { columns: chartData(spec.columns, bands) };
  const expected = held.columns.length;
  /** What uPlot is given: every column, or for painted lines the steps and a stand-in. */
  const plotData = () => (painted ? [held.columns[0], held.columns[1] ?? held.columns[0]] : held.columns);
  /** @type {uPlot.Options} */
  const options = {
    width: spec.width,
    height: spec.height,
    legend: { show: false },
    cursor: {
      sync: { key: spec.syncKey },
      drag: { x: true, y: false },
      points: { show: false },
    },
    scales: { x: { time: false }, y: { distr: spec.logY ? 3 : 1, range: (u) => yRange(u, held.columns, spec.logY) } },
    axes: [
      { label: spec.xLabel ?? 'step', stroke: AXIS_STROKE, grid: GRID, ticks: GRID, font: AXIS_FONT, labelFont: AXIS_FONT },
      {
        label: spec.yLabel,
        stroke: AXIS_STROKE,
        grid: GRID,
        ticks: GRID,
        font: AXIS_FONT,
        labelFont: AXIS_FONT,
        size: 64,
        values: (_u, splits) => tickLabels(splits),
      },
    ],
    series: painted ? [{}, { paths: noPath, points: { show: false }, auto: false }] : [
      {},
      ...spec.lines.map((line) => ({
        label: line.series,
        stroke: line.color,
        width: 1,
        dash: [...line.dash],
        spanGaps: spec.spanGaps,
        paths: gappedLine(spec.spanGaps),
        points: { show: false },
        // The y range is `yRange`'s: uPlot need not scan the series for it.
        auto: false,
      })),
      // Band edges are drawn only as the fill between them (uPlot's bands), never as lines.
      ...bands.flatMap((band) => [band.upper, band.lower].map(() => ({
        stroke: 'transparent',
        width: 0,
        spanGaps: spec.spanGaps,
        points: { show: false },
        auto: false,
      }))),
    ],
    bands: bands.map((band, k) => ({
      series: /** @type {[number, number]} */ ([first + 2 * k, first + 2 * k + 1]),
      fill: translucent(spec.lines[band.line].color, BAND_ALPHA),
    })),
    plugins: [
      hoverReadout(spec.lines, spec.showRun, spec.xLabel, held),
      zoomReports(spec),
      ...(painted ? [paintedLines(spec.lines, spec.logY, spec.spanGaps, held)] : []),
    ],
  };
  const plot = new uPlot(options, /** @type {uPlot.AlignedData} */ (plotData()), element);
  /** @type {CurveChart['setData']} */
  const setData = (columns, newBands = [], resetScales = false) => {
    const data = chartData(columns, newBands);
    if (data.length !== expected) return false;
    held.columns = data;
    plot.setData(/** @type {uPlot.AlignedData} */ (plotData()), resetScales);
    return true;
  };
  return { element, plot, setData, painted };
}
