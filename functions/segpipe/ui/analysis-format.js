// @ts-check
// How an analysis reads on the page: its progress, thresholds, counts, areas and output links.
// Pure functions of the API's answers; nothing here touches the document.
/** @import { AnalysisRow, AnalysisStatus, AnalysisView, ClassTotals } from "./types.js" */

import { count, missing, threshold } from "./format.js";

/** The merged outputs, in the order the page links them (OUTPUT_NAMES in models/analysis.py). */
export const OUTPUT_NAMES = ["coco.json", "objects.csv", "images.csv", "summary.json"];

/** @type {Record<string, string>} */
const OUTPUT_LABELS = {
  "coco.json": "COCO dataset of the kept objects",
  "objects.csv": "One row per object: measurements",
  "images.csv": "One row per image: counts and areas per class",
  "summary.json": "Version, thresholds, counts and timing",
};

/** @param {AnalysisStatus} status @returns {boolean} */
export function isBusy(status) {
  return status === "queued" || status === "running";
}

/** @param {readonly {status: AnalysisStatus}[]} rows @returns {boolean} */
export function anyAnalysisBusy(rows) {
  return rows.some((row) => isBusy(row.status));
}

/**
 * @typedef {object} ProgressFigures
 * @property {number} done images analysed so far
 * @property {number} total images in the folder
 * @property {number} fraction done / total, within 0..1 (0 without images)
 * @property {string} text e.g. "12 of 40 images"
 */

/**
 * How far an analysis has come: images done of the folder's total. Completed ones are whole;
 * queued, failed and stopped ones without a count have none.
 * @param {Pick<AnalysisRow, "status" | "images" | "images_done">} row
 * @returns {ProgressFigures | null}
 */
export function progressOf(row) {
  const total = Math.max(0, Number(row.images) || 0);
  let done;
  if (row.status === "completed") done = total;
  else if (!missing(row.images_done)) done = Math.min(total, Math.max(0, Number(row.images_done)));
  else if (row.status === "running") done = 0;
  else return null;
  const fraction = total ? done / total : 0;
  return { done, total, fraction, text: `${count(done)} of ${count(total)} image${total === 1 ? "" : "s"}` };
}

/**
 * The class names in the version's order, then any others the figures name (sorted).
 * @param {readonly string[]} classes
 * @param {...(Record<string, unknown> | null | undefined)} figures
 * @returns {string[]}
 */
export function classOrder(classes, ...figures) {
  const extra = new Set();
  for (const record of figures) {
    for (const name of Object.keys(record || {})) if (!classes.includes(name)) extra.add(name);
  }
  return [...classes, ...[...extra].sort()];
}

/**
 * The thresholds used, one `[class, "0.50"]` pair per class in the version's order.
 * @param {Record<string, number> | null | undefined} thresholds
 * @param {readonly string[]} [classes]
 * @returns {[string, string][]}
 */
export function thresholdPairs(thresholds, classes = []) {
  const values = thresholds || {};
  return classOrder(classes, values)
    .filter((name) => name in values)
    .map((name) => [name, threshold(values[name])]);
}

/**
 * Kept objects per class, in the version's order (zero for a class without any), and the sum.
 * @param {Record<string, number> | null | undefined} objects
 * @param {readonly string[]} [classes]
 * @returns {{perClass: [string, number][], total: number}}
 */
export function objectCounts(objects, classes = []) {
  const values = objects || {};
  const perClass = classOrder(classes, values).map((name) => /** @type {[string, number]} */ ([name, Number(values[name]) || 0]));
  return { perClass, total: perClass.reduce((sum, [, n]) => sum + n, 0) };
}

/**
 * An area in square micrometres: the summary's figure, else pixels times the pixel size squared;
 * null without a pixel size.
 * @param {ClassTotals} totals
 * @param {number | null | undefined} pixelSize micrometres per pixel
 * @returns {number | null}
 */
export function areaUm2(totals, pixelSize) {
  if (!missing(totals.area_um2)) return Number(totals.area_um2);
  if (missing(pixelSize) || !(Number(pixelSize) > 0)) return null;
  return totals.area * Number(pixelSize) ** 2;
}

/**
 * An area as it reads: whole pixels, or µm² to three significant digits past the point as needed.
 * @param {number | null | undefined} value
 * @param {"px" | "µm²"} unit
 * @returns {string}
 */
export function areaText(value, unit) {
  if (missing(value)) return "–";
  const number = Number(value);
  if (unit === "px") return `${count(Math.round(number))} px`;
  const digits = Math.abs(number) >= 100 ? 0 : Math.abs(number) >= 1 ? 1 : 3;
  return `${number.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })} µm²`;
}

/**
 * @typedef {object} ClassSummaryRow
 * @property {string} name
 * @property {string} threshold
 * @property {number} objects
 * @property {number} area pixels
 * @property {number | null} areaUm2
 * @property {number | null} meanArea pixels per object
 */

/**
 * The per-class summary of an analysis: thresholds used, kept objects and their area. From the
 * stored summary when it has completed, else from the row's counts (areas then 0).
 * @param {AnalysisView} view
 * @returns {ClassSummaryRow[]}
 */
export function classSummary(view) {
  const perClass = (view.summary && view.summary.per_class) || {};
  const counts = view.objects || {};
  const pixelSize = view.pixel_size ?? (view.summary ? view.summary.pixel_size : null);
  return classOrder(view.classes || [], view.thresholds, perClass, counts).map((name) => {
    const totals = perClass[name] || { objects: Number(counts[name]) || 0, area: 0 };
    return {
      name,
      threshold: threshold(view.thresholds ? view.thresholds[name] : null),
      objects: totals.objects,
      area: totals.area,
      areaUm2: areaUm2(totals, pixelSize),
      meanArea: totals.objects ? totals.area / totals.objects : null,
    };
  });
}

/**
 * A URL the page may put in a link: http(s), or a path on the page's own origin. Anything else
 * (javascript:, data:, a protocol-relative //host) is refused.
 * @param {unknown} url
 * @returns {boolean}
 */
export function isSafeUrl(url) {
  if (typeof url !== "string" || !url) return false;
  if (url.startsWith("/")) return !url.startsWith("//") && !url.startsWith("/\\");
  return /^https?:\/\/[^\s/?#]+/i.test(url);
}

/**
 * The output links to show: the four merged outputs in their order, then any others (sorted);
 * only those with a safe URL.
 * @param {Record<string, string> | null | undefined} outputs
 * @returns {{name: string, url: string, title: string}[]}
 */
export function outputLinks(outputs) {
  const values = outputs || {};
  const names = [...OUTPUT_NAMES.filter((name) => name in values),
    ...Object.keys(values).filter((name) => !OUTPUT_NAMES.includes(name)).sort()];
  return names
    .filter((name) => isSafeUrl(values[name]))
    .map((name) => ({ name, url: values[name], title: OUTPUT_LABELS[name] || name }));
}

/**
 * What the status area says about an analysis that is not running.
 * @param {Pick<AnalysisView, "status" | "failure_reason" | "status_history">} view
 * @returns {string | null}
 */
export function statusSentence(view) {
  if (view.status === "queued") return "Queued: waiting for the processing job to start; this page refreshes by itself.";
  if (view.status === "failed") return view.failure_reason || "No reason was recorded.";
  if (view.status === "stopped") {
    const change = (view.status_history || []).filter((item) => item.status === "stopped").pop();
    return change && change.reason ? change.reason : "It was stopped before it completed; it has no outputs.";
  }
  return null;
}
