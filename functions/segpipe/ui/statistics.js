// @ts-check
// The statistics table: per class and overall, test beside train, at the slider's threshold; and
// the threshold plot under it. Both are told the threshold (`update`); a click on the plot goes
// back through `onPick`.
/** @import { ApKey, Bootstrap, Interval, MetricKey, MetricsView, Selection, Split, SplitMetrics, ThresholdPoint } from "./types.js" */
/** @import { SweepIndex } from "./sweep.js" */
/** @import { ValueKind } from "./format.js" */

import { colourOf } from "./colours.js";
import { errorBox, h, inputOf, replace, stateNote, swatch } from "./dom.js";
import { byKind, interval as formatInterval, intervalMeaning, missing, threshold as formatThreshold } from "./format.js";
import { ThresholdPlot } from "./plot.js";
import { pointAt, sweepIndex, sweepOf } from "./sweep.js";
import { sameThreshold, snap } from "./threshold.js";

export const OVERALL = "__overall__";

/**
 * @typedef {{key: MetricKey, label: string, kind: ValueKind, title?: string, extra?: boolean, ap?: false}
 *   | {key: ApKey, label: string, kind: ValueKind, title?: string, extra?: boolean, ap: true}} StatColumn
 */

/** Statistics columns: shown when any sweep point (or AP) of the version has a value for them. */
/** @type {StatColumn[]} */
export const STAT_COLUMNS = [
  { key: "precision", label: "Precision", kind: "ratio" },
  { key: "recall", label: "Recall", kind: "ratio" },
  { key: "f1", label: "F1", kind: "ratio" },
  { key: "panoptic_quality", label: "PQ", kind: "ratio", title: "Panoptic quality" },
  { key: "mean_matched_iou", label: "Matched IoU", kind: "ratio", extra: true },
  { key: "iou", label: "IoU", kind: "ratio" },
  { key: "dice", label: "Dice", kind: "ratio" },
  { key: "pixel_accuracy", label: "Pixel acc.", kind: "ratio", title: "Pixel accuracy" },
  { key: "tp", label: "TP", kind: "count", extra: true, title: "Matched objects (IoU ≥ 0.5)" },
  { key: "fp", label: "FP", kind: "count", extra: true, title: "Predicted objects without a match" },
  { key: "fn", label: "FN", kind: "count", extra: true, title: "Ground-truth objects without a match" },
  { key: "predicted_objects", label: "Shown", kind: "count", title: "Objects scored at or above the threshold" },
  { key: "ap50", label: "AP50", kind: "ratio", ap: true, title: "COCO AP at IoU 0.5 (all thresholds)" },
  { key: "ap", label: "AP", kind: "ratio", ap: true, title: "COCO AP over IoU 0.5:0.95 (all thresholds)" },
];

/**
 * The splits that have figures, test first.
 * @param {MetricsView} metrics
 * @returns {Split[]}
 */
export function splitsOf(metrics) {
  /** @type {Split[]} */
  const splits = ["test", "train"];
  return splits.filter((split) => metrics[split]);
}

/**
 * Whether any split has a value for a column (at any sweep point, or in its AP).
 * @param {StatColumn} column
 * @param {SplitMetrics[]} splits
 * @returns {boolean}
 */
export function hasValues(column, splits) {
  return splits.some((data) => {
    if (column.ap) {
      if (data.ap_overall && !missing(data.ap_overall[column.key])) return true;
      return Object.values(data.ap_per_class || {}).some((ap) => !missing(ap[column.key]));
    }
    const key = column.key;
    return sweepOf(data).some((point) => point.overall && !missing(point.overall[key]));
  });
}

/**
 * The figure in one cell: a row (a class or OVERALL) and a column, of a split at a sweep point.
 * @param {SplitMetrics} data
 * @param {ThresholdPoint | null} point
 * @param {string} row
 * @param {StatColumn} column
 * @returns {number | null | undefined}
 */
export function cellValue(data, point, row, column) {
  if (column.ap) {
    const ap = row === OVERALL ? data.ap_overall : (data.ap_per_class || {})[row];
    return ap ? ap[column.key] : null;
  }
  if (!point) return null;
  const figures = row === OVERALL ? point.overall : (point.per_class || {})[row];
  return figures ? figures[column.key] : null;
}

/**
 * The bootstrap interval of a cell's figure, where there is one: overall test figures only, at the
 * suggested threshold from the headline (which alone has PQ), elsewhere from the interval sweep;
 * AP does not depend on the threshold and always comes from the headline.
 * @param {Bootstrap | null | undefined} intervals
 * @param {Split} split
 * @param {ThresholdPoint | null} point the sweep point the cell's figure comes from
 * @param {string} row
 * @param {StatColumn} column
 * @returns {Interval | null}
 */
export function cellInterval(intervals, split, point, row, column) {
  if (!intervals || intervals.split !== split || row !== OVERALL) return null;
  const { headline } = intervals;
  /** @type {Interval | undefined} */
  let found;
  if (column.ap) {
    found = headline.metrics[column.key];
  } else if (point) {
    const atHeadline = sameThreshold(point.threshold, headline.threshold) ? headline.metrics[column.key] : undefined;
    const swept = (intervals.sweep || []).find((entry) => sameThreshold(entry.threshold, point.threshold));
    found = atHeadline || (swept && swept.metrics[column.key]);
  }
  return found && !missing(found.low) && !missing(found.high) ? found : null;
}

/**
 * The one line that says how the version's choices were made: the trainer's sentence, else one
 * from its method; null for versions that did not record it.
 * @param {Selection | null | undefined} selection
 * @returns {string | null}
 */
export function selectionNote(selection) {
  if (!selection) return null;
  if (selection.summary) return selection.summary;
  return {
    holdout: "The epochs and thresholds were chosen on training images held out for validation; the test set only measures.",
    refit: "The epochs and thresholds were chosen on held-out training images, then the model was retrained on every training image; the test set only measures.",
    none: "Nothing could be held out: the configured epochs were trained and the thresholds chosen on the training images.",
  }[selection.method] || null;
}

/**
 * A row's name (with its class colour) and its suggested threshold.
 * @param {MetricsView} metrics
 * @param {string} row a class or OVERALL
 * @returns {HTMLTableCellElement}
 */
function rowHeader(metrics, row) {
  const label = row === OVERALL ? h("span", { text: "Overall" }) : h("span", {}, swatch(colourOf(metrics.classes, row)), row);
  const suggested = row === OVERALL ? metrics.suggested_threshold : (metrics.suggested_thresholds || {})[row];
  return h("th", { scope: "row" }, label,
    missing(suggested)
      ? null
      : h("span", { class: "suggested-note", title: "Suggested threshold for this row", text: `suggested ${formatThreshold(suggested)}` }));
}

/**
 * The footnote's sentence on the intervals; empty without them.
 * @param {Bootstrap | null | undefined} intervals
 * @returns {string}
 */
function intervalsNote(intervals) {
  if (!intervals) return "";
  return ` In brackets under an overall ${intervals.split} figure: its ${intervalMeaning(intervals)}.`;
}

/**
 * The interval under a figure, with its meaning for the pointer (title) and for screen readers.
 * @param {Interval} bounds @param {string} meaning
 * @returns {HTMLSpanElement}
 */
function intervalElement(bounds, meaning) {
  return h("span", { class: "interval", "data-testid": "interval", title: meaning },
    h("span", { class: "sr-only", text: `${meaning}: ` }), formatInterval(bounds));
}

/** @typedef {{cell: HTMLTableCellElement, split: Split, row: string, column: StatColumn}} Cell */

/**
 * @typedef {object} StatsOptions
 * @property {MetricsView | null} metrics
 * @property {unknown} error why the metrics could not be loaded, if they could not
 * @property {(threshold: number) => void} onPick the plot asked for a threshold (snapped)
 * @property {() => void} onRendered the figures are on screen
 */

export class StatsPanel {
  /** @param {StatsOptions} options */
  constructor({ metrics, error, onPick, onRendered }) {
    this.onRendered = onRendered;
    this.caption = h("p", { class: "stats-caption", "data-testid": "stats-threshold" });
    this.element = h("section", { class: "panel", "aria-labelledby": "stats-title", "data-testid": "statistics" },
      h("div", { class: "panel-head" },
        h("h2", { id: "stats-title", text: "Statistical performance" })),
      this.caption);
    /** @type {Cell[]} */
    this.cells = [];
    /** @type {{metrics: MetricsView, splits: Split[], indexes: Map<Split, SweepIndex>, plot: ThresholdPlot} | null} */
    this.figures = null;
    /** @type {number | null} */
    this.suggested = metrics ? metrics.suggested_threshold : null;
    if (error || !metrics || (!metrics.test && !metrics.train)) {
      this.element.append(error ? errorBox(error, "The statistics could not be loaded.") : stateNote("No statistics were recorded for this version.", "no-statistics", "empty"));
      onRendered();
      return;
    }
    const splits = splitsOf(metrics);
    const indexes = new Map(splits.map((split) => [split, sweepIndex(sweepOf(/** @type {SplitMetrics} */ (metrics[split])))]));
    const present = splits.map((split) => /** @type {SplitMetrics} */ (metrics[split]));
    const columns = STAT_COLUMNS.filter((column) => hasValues(column, present));
    const table = this.buildTable(metrics, splits, columns);
    const plot = new ThresholdPlot({ metrics, onPick: (value) => onPick(snap(value)) });
    this.figures = { metrics, splits, indexes, plot };
    if (columns.some((column) => column.extra)) {
      const more = h("input", {
        type: "checkbox", "data-testid": "stats-more",
        onchange: (/** @type {Event} */ event) => table.classList.toggle("show-extra", inputOf(event).checked),
      });
      /** @type {HTMLElement} */ (this.element.querySelector(".panel-head")).append(
        h("label", { class: "check small" }, more, " More columns (matched IoU, TP, FP, FN)"));
    }
    const note = selectionNote(metrics.selection);
    if (note) this.element.append(h("p", { class: "selection-note small", "data-testid": "selection", text: note }));
    this.element.append(
      h("div", { class: "stats-layout" },
        h("div", { class: "table-scroll" }, table),
        plot.element),
      h("p", { class: "muted small", text: `Figures at the slider's threshold, from the sweep computed at the end of training. AP does not depend on the threshold. Train figures are measured on images the model learned from.${intervalsNote(metrics.intervals)}` }),
    );
  }

  /**
   * @param {MetricsView} metrics @param {Split[]} splits @param {StatColumn[]} columns
   * @returns {HTMLTableElement}
   */
  buildTable(metrics, splits, columns) {
    const head1 = h("tr", {}, h("th", { scope: "col", rowspan: 2, text: "Class" }));
    const head2 = h("tr", {});
    for (const column of columns) {
      head1.append(h("th", { scope: "colgroup", colspan: splits.length, class: `group ${column.extra ? "extra" : ""}`, title: column.title || null, text: column.label }));
      for (const split of splits) {
        head2.append(h("th", { scope: "col", class: `num sub sub-${split} ${column.extra ? "extra" : ""}`, text: split === "test" ? "Test" : "Train" }));
      }
    }
    const body = h("tbody", {});
    for (const row of [OVERALL, ...metrics.classes]) {
      const tr = h("tr", { class: row === OVERALL ? "overall" : "", "data-row": row }, rowHeader(metrics, row));
      for (const column of columns) {
        for (const split of splits) {
          const cell = h("td", { class: `num sub-${split} ${column.extra ? "extra" : ""}`, "data-split": split, "data-row": row, "data-metric": column.key });
          this.cells.push({ cell, split, row, column });
          tr.append(cell);
        }
      }
      body.append(tr);
    }
    return h("table", { class: "grid stats", "data-testid": "stats-table" },
      h("caption", { class: "sr-only", text: "Metrics per class and overall, test beside train" }),
      h("thead", {}, head1, head2), body);
  }

  /**
   * Show the figures at a threshold.
   * @param {number} threshold the slider's
   * @param {number | null | undefined} saved the analysis threshold
   */
  update(threshold, saved) {
    const suggested = this.suggested;
    const atSuggested = sameThreshold(snap(suggested ?? -1), threshold);
    const atSaved = sameThreshold(saved, threshold);
    replace(this.caption,
      "At score threshold ",
      h("strong", { "data-testid": "stats-threshold-value", text: threshold.toFixed(2) }),
      atSuggested ? h("span", { class: "badge suggested", "data-testid": "stats-suggested", text: "suggested" }) : null,
      atSaved ? h("span", { class: "badge saved", text: "analysis threshold" }) : null,
      !missing(suggested) && !atSuggested
        ? h("span", { class: "muted", text: ` · suggested ${formatThreshold(suggested)}` }) : null,
    );
    const figures = this.figures;
    if (!figures) return;
    /** @type {Map<Split, ThresholdPoint | null>} */
    const points = new Map();
    for (const split of figures.splits) {
      points.set(split, pointAt(figures.metrics[split], /** @type {SweepIndex} */ (figures.indexes.get(split)), threshold));
    }
    const meaning = figures.metrics.intervals ? intervalMeaning(figures.metrics.intervals) : "";
    for (const { cell, split, row, column } of this.cells) {
      const data = /** @type {SplitMetrics} */ (figures.metrics[split]);
      const point = points.get(split) ?? null;
      const value = cellValue(data, point, row, column);
      const bounds = missing(value) ? null : cellInterval(figures.metrics.intervals, split, point, row, column);
      replace(cell, byKind[column.kind](value), bounds ? intervalElement(bounds, meaning) : null);
      cell.dataset.value = missing(value) ? "" : String(value);
    }
    figures.plot.update(threshold);
    this.onRendered();
  }
}
