// @ts-check
// The precision / recall / F1 (or IoU / Dice / pixel accuracy) curves against the score threshold,
// with a marker at the slider's threshold. A click on the plot picks a threshold (`onPick`).
/** @import { Bootstrap, MetricKey, MetricsView, ModelType, Split, ThresholdIntervals, ThresholdPoint } from "./types.js" */

import { h, replace, s } from "./dom.js";
import { intervalMeaning, missing } from "./format.js";
import { nearestPoint } from "./sweep.js";

/** @typedef {{key: MetricKey, label: string, colour: string, wide?: boolean}} Series */

/** @type {Record<ModelType, Series[]>} */
export const PLOT_SERIES = {
  instance: [
    { key: "precision", label: "Precision", colour: "#2f6fdb" },
    { key: "recall", label: "Recall", colour: "#d97706" },
    { key: "f1", label: "F1", colour: "#059669", wide: true },
  ],
  semantic: [
    { key: "iou", label: "IoU", colour: "#059669", wide: true },
    { key: "dice", label: "Dice", colour: "#2f6fdb" },
    { key: "pixel_accuracy", label: "Pixel accuracy", colour: "#d97706" },
  ],
};

/** @typedef {{width: number, height: number, left: number, right: number, top: number, bottom: number}} PlotSize */

/** @type {PlotSize} */
export const PLOT_SIZE = Object.freeze({ width: 460, height: 280, left: 40, right: 14, top: 30, bottom: 40 });

/**
 * Plot x (viewBox units) of a threshold in 0 .. 1.
 * @param {PlotSize} size @param {number} threshold @returns {number}
 */
export function xOf(size, threshold) {
  return size.left + threshold * (size.width - size.left - size.right);
}

/**
 * Plot y (viewBox units) of a metric value in 0 .. 1.
 * @param {PlotSize} size @param {number} value @returns {number}
 */
export function yOf(size, value) {
  return size.top + (1 - value) * (size.height - size.top - size.bottom);
}

/**
 * The threshold under a plot x (viewBox units); not clamped.
 * @param {PlotSize} size @param {number} x @returns {number}
 */
export function thresholdAt(size, x) {
  return (x - size.left) / (size.width - size.left - size.right);
}

/**
 * An SVG path through a series' values along the sweep; a missing value lifts the pen.
 * @param {readonly ThresholdPoint[]} sweep sorted by threshold
 * @param {MetricKey} key
 * @param {PlotSize} size
 * @returns {string}
 */
export function seriesPath(sweep, key, size) {
  let d = "";
  let pen = false;
  for (const point of sweep) {
    const value = point.overall ? point.overall[key] : null;
    if (missing(value)) { pen = false; continue; }
    d += `${pen ? "L" : "M"}${xOf(size, point.threshold).toFixed(1)},${yOf(size, value).toFixed(1)}`;
    pen = true;
  }
  return d;
}

/**
 * An SVG path of a series' confidence band: one closed shape per run of thresholds with both bounds,
 * along the upper bounds and back along the lower ones; a run of one threshold has no area and is
 * left out.
 * @param {readonly ThresholdIntervals[]} sweep sorted by threshold
 * @param {MetricKey} key
 * @param {PlotSize} size
 * @returns {string}
 */
export function bandPath(sweep, key, size) {
  /** @type {{x: number, low: number, high: number}[][]} */
  const runs = [[]];
  for (const point of sweep) {
    const bounds = point.metrics[key];
    if (!bounds || missing(bounds.low) || missing(bounds.high)) {
      runs.push([]);
      continue;
    }
    runs[runs.length - 1].push({ x: xOf(size, point.threshold), low: bounds.low, high: bounds.high });
  }
  /** @param {number} x @param {number} value */
  const at = (x, value) => `${x.toFixed(1)},${yOf(size, value).toFixed(1)}`;
  return runs.filter((run) => run.length > 1).map((run) => {
    const upper = run.map((p, i) => `${i ? "L" : "M"}${at(p.x, p.high)}`).join("");
    const lower = run.slice().reverse().map((p) => `L${at(p.x, p.low)}`).join("");
    return `${upper}${lower}Z`;
  }).join("");
}

/**
 * The interval sweep that gives the plot's bands: the plotted split's, sorted; empty without one.
 * @param {Bootstrap | null | undefined} intervals
 * @param {Split} split
 * @returns {ThresholdIntervals[]}
 */
export function bandSweep(intervals, split) {
  if (!intervals || intervals.split !== split) return [];
  return (intervals.sweep || []).slice().sort((a, b) => a.threshold - b.threshold);
}

/**
 * @typedef {object} PlotOptions
 * @property {MetricsView} metrics
 * @property {(threshold: number) => void} onPick a click asked for this threshold (not snapped)
 */

export class ThresholdPlot {
  /** @param {PlotOptions} options */
  constructor({ metrics, onPick }) {
    /** @type {Split} */
    this.split = metrics.test ? "test" : "train";
    const splitMetrics = metrics[this.split];
    this.sweep = ((splitMetrics && splitMetrics.sweep) || []).slice().sort((a, b) => a.threshold - b.threshold);
    this.bands = bandSweep(metrics.intervals, this.split);
    this.series = PLOT_SERIES[metrics.model_type] || PLOT_SERIES.instance;
    this.suggested = metrics.suggested_threshold;
    this.size = PLOT_SIZE;
    const names = this.series.map((item) => item.label).join(", ");
    this.svg = s("svg", {
      viewBox: `0 0 ${this.size.width} ${this.size.height}`, class: "plot", "data-testid": "stats-plot",
      role: "img", "aria-label": `${names} against the score threshold, ${this.split} split`,
    });
    const shaded = this.bands.length && metrics.intervals ? ` Shaded: the ${intervalMeaning(metrics.intervals)}.` : "";
    this.element = h("figure", { class: "plot-figure" },
      this.svg,
      h("figcaption", { class: "small muted", text: `${names} against the score threshold (${this.split} split${this.split === "train" ? ": no test set" : ""}).${shaded} Click to move the threshold.` }));
    this.marker = s("g", { class: "plot-marker", "data-testid": "plot-marker" });
    this.draw();
    this.svg.addEventListener("click", (event) => onPick(this.thresholdOfClick(event)));
  }

  /** @param {number} threshold */
  x(threshold) {
    return xOf(this.size, threshold);
  }

  /** @param {number} value */
  y(value) {
    return yOf(this.size, value);
  }

  draw() {
    const { width, height, left, right, top, bottom } = this.size;
    const grid = s("g", { class: "plot-grid" });
    for (let v = 0; v <= 1.0001; v += 0.2) {
      grid.append(s("line", { x1: left, x2: width - right, y1: this.y(v), y2: this.y(v) }));
      grid.append(s("text", { x: left - 6, y: this.y(v) + 4, "text-anchor": "end", class: "plot-label", text: v.toFixed(1) }));
    }
    for (let t = 0; t <= 1.0001; t += 0.1) {
      grid.append(s("line", { x1: this.x(t), x2: this.x(t), y1: top, y2: height - bottom, class: "vertical" }));
      grid.append(s("text", { x: this.x(t), y: height - bottom + 15, "text-anchor": "middle", class: "plot-label", text: t.toFixed(1) }));
    }
    grid.append(s("text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle", class: "plot-axis", text: "score threshold" }));
    const bands = s("g", { class: "plot-bands", "data-testid": "plot-bands" });
    for (const series of this.series) {
      const d = bandPath(this.bands, series.key, this.size);
      if (d) bands.append(s("path", { d, class: "plot-band", fill: series.colour, "data-series": series.key }));
    }
    const lines = s("g", { class: "plot-lines" });
    for (const series of this.series) {
      const d = seriesPath(this.sweep, series.key, this.size);
      if (d) lines.append(s("path", { d, fill: "none", stroke: series.colour, "stroke-width": series.wide ? 2.6 : 1.8, "data-series": series.key }));
    }
    const legend = s("g", { class: "plot-legend" });
    this.series.forEach((series, i) => {
      const x = left + i * 100;
      const y = 12;
      legend.append(s("line", { x1: x, x2: x + 18, y1: y, y2: y, stroke: series.colour, "stroke-width": series.wide ? 2.6 : 1.8 }));
      legend.append(s("text", { x: x + 24, y: y + 4, class: "plot-label", text: series.label }));
    });
    const suggested = missing(this.suggested) ? null : s("g", { class: "plot-suggested", "data-testid": "plot-suggested" },
      s("line", { x1: this.x(this.suggested), x2: this.x(this.suggested), y1: top, y2: height - bottom }),
      s("text", { x: this.x(this.suggested) + 4, y: top + 10, class: "plot-label", text: `suggested ${this.suggested.toFixed(2)}` }));
    this.svg.append(grid, bands, lines);
    if (suggested) this.svg.append(suggested);
    this.svg.append(this.marker, legend);
  }

  /** @param {number} threshold */
  update(threshold) {
    const { top, height, bottom } = this.size;
    const x = this.x(threshold);
    const point = nearestPoint(this.sweep, threshold);
    const dots = this.series.map((series) => {
      const value = point && point.overall ? point.overall[series.key] : null;
      return missing(value) ? null : s("circle", { cx: x, cy: this.y(value), r: 3.6, fill: series.colour, stroke: "#fff", "stroke-width": 1.2 });
    });
    replace(this.marker,
      s("line", { x1: x, x2: x, y1: top, y2: height - bottom }),
      ...dots,
      s("text", { x: x + 4, y: height - bottom - 6, class: "plot-label strong", text: threshold.toFixed(2) }),
    );
    this.marker.dataset.threshold = threshold.toFixed(2);
  }

  /** @param {MouseEvent} event @returns {number} */
  thresholdOfClick(event) {
    const box = this.svg.getBoundingClientRect();
    const scale = this.size.width / box.width;
    return thresholdAt(this.size, (event.clientX - box.left) * scale);
  }
}
