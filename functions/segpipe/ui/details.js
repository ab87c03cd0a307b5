// @ts-check
// A version's training details: facts, class counts, errors and warnings, what was ignored, and
// the status history.
/** @import { IgnoredCounts, ModelVersion, StatusChange, TestSet, TrainingDetails } from "./types.js" */

import { colourOf } from "./colours.js";
import { h, statusBadge, swatch } from "./dom.js";
import { count, date, duration, plural } from "./format.js";

/**
 * How the test set was chosen, in words.
 * @param {TestSet} testSet
 * @returns {string}
 */
export function testSetText(testSet) {
  if (testSet.strategy === "fraction") return `${Math.round((testSet.fraction || 0) * 100)} % of images (seed ${testSet.seed ?? 0})`;
  if (testSet.strategy === "images") return `${(testSet.images || []).length} chosen images`;
  return "none";
}

/**
 * Preset, tile size and epochs; the model type when none is known.
 * @param {TrainingDetails} details
 * @param {string} modelType
 * @returns {string}
 */
export function modelConfigText(details, modelType) {
  const parts = [
    details.preset,
    details.tile_size ? `${details.tile_size} px tiles` : null,
    details.epochs ? `${details.epochs} epochs` : null,
  ];
  return parts.filter(Boolean).join(" · ") || modelType;
}

/**
 * What validation left out, in words; null when nothing was.
 * @param {IgnoredCounts | null | undefined} ignored
 * @returns {string | null}
 */
export function ignoredText(ignored) {
  if (!ignored) return null;
  const parts = [];
  const excluded = Object.entries(ignored.excluded_classes || {});
  if (excluded.length) parts.push(`classes left out: ${excluded.map(([name, n]) => `${name} (${count(n)})`).join(", ")}`);
  if (ignored.unfinished_images) parts.push(`${plural(ignored.unfinished_images, "image")} not completed`);
  if (ignored.invalid_annotations) parts.push(`${plural(ignored.invalid_annotations, "broken annotation")} dropped`);
  if (ignored.images_held_out) parts.push(`${plural(ignored.images_held_out, "image")} held out with their group`);
  return parts.length ? `Ignored: ${parts.join("; ")}.` : null;
}

/** @typedef {{level: "error" | "warning", code: string, message: string}} ShownIssue */

/**
 * The failure (as an error) and the warnings of a version.
 * @param {ModelVersion} model
 * @returns {ShownIssue[]}
 */
export function issuesOf(model) {
  /** @type {ShownIssue[]} */
  const issues = [];
  if (model.status === "failed" && model.failure_reason) {
    issues.push({ level: "error", code: "training_failed", message: model.failure_reason });
  }
  for (const warning of model.warnings || []) issues.push({ level: "warning", code: warning.code, message: warning.message });
  return issues;
}

/** @param {string} label @param {string} value @param {string} testid */
function fact(label, value, testid) {
  return h("div", { class: "fact" }, h("dt", { text: label }), h("dd", { "data-testid": testid, text: value }));
}

/** @param {ModelVersion} model @returns {HTMLElement} */
export function detailsPanel(model) {
  const details = model.details || {};
  const request = model.request || {};
  const estimate = details.estimate;
  const trained = duration(model.started_at, model.ended_at);
  const facts = h("dl", { class: "facts" },
    fact("Total images", count(details.total_images), "total-images"),
    fact("Included images", count(details.included_images), "included-images"),
    fact("Train images", count(details.train_images), "train-images"),
    fact("Test images", count(details.test_images), "test-images"),
    fact("Included annotations", count(details.included_annotations), "included-annotations"),
    fact("Dataset", model.dataset || details.dataset || "–", "dataset"),
    fact("Test set", testSetText(request.test_set || {}), "test-set"),
    fact("Model", modelConfigText(details, model.model_type), "model-config"),
    estimate ? fact("Estimate", `${estimate.hours.toFixed(1)} h · $${estimate.cost_usd.toFixed(2)} on ${estimate.instance_type}${estimate.spot ? " (spot)" : ""}`, "estimate") : null,
    trained ? fact("Training time", trained, "training-time") : null,
  );
  const classRows = (details.classes || []).map((row) =>
    h("tr", { "data-class": row.name },
      h("th", { scope: "row" }, swatch(colourOf(model.classes, row.name)), row.name),
      h("td", { class: "num", text: count(row.annotations) }),
      h("td", { class: "num", text: count(row.train) }),
      h("td", { class: "num", text: count(row.test) }),
      h("td", { class: "num", text: count(row.images) })));
  const classes = h("table", { class: "grid compact", "data-testid": "class-counts" },
    h("caption", { text: "Included classes" }),
    h("thead", {}, h("tr", {}, ...["Class", "Annotations", "Train", "Test", "Images"].map((text, i) => h("th", { scope: "col", class: i ? "num" : "", text })))),
    h("tbody", {}, classRows.length ? classRows : h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No class counts recorded." }))));
  const ignored = ignoredText(details.ignored);
  return h("section", { class: "panel", "aria-labelledby": "details-title", "data-testid": "training-details" },
    h("h2", { id: "details-title", text: "Training details" }),
    h("div", { class: "details-grid" }, facts, classes),
    issuesList(issuesOf(model)),
    ignored ? h("p", { class: "muted small", "data-testid": "ignored", text: ignored }) : null,
    historyList(model.status_history || []),
  );
}

/** @param {ShownIssue[]} issues @returns {HTMLElement} */
function issuesList(issues) {
  if (!issues.length) return h("p", { class: "muted", "data-testid": "no-warnings", text: "No errors or warnings." });
  return h("ul", { class: "issues", "data-testid": "warnings", "aria-label": "Errors and warnings" },
    issues.map((issue) => h("li", { class: `issue issue-${issue.level}`, "data-code": issue.code },
      h("span", { class: "issue-level", text: issue.level === "error" ? "Error" : "Warning" }),
      h("code", { text: issue.code }),
      h("span", { class: "issue-message", text: issue.message }))));
}

/** @param {StatusChange[]} history @returns {HTMLElement | null} */
function historyList(history) {
  if (!history.length) return null;
  return h("details", { class: "history" },
    h("summary", { text: "Status history" }),
    h("ol", {}, history.map((change) => h("li", {},
      statusBadge(change.status), " ", date(change.at), change.reason ? ` — ${change.reason}` : ""))));
}
