// @ts-check
// The model table of a project: every version, newest first, refreshed while one is training.
/** @import { HeadlineKey, ModelSummary } from "./types.js" */

import { listModels } from "./api.js";
import { activeBadge, errorBox, h, inputOf, replace, stateNote } from "./dom.js";
import { date, missing, ratio, threshold } from "./format.js";
import { Poller } from "./polling.js";
import { versionHash } from "./router.js";
import { activationButton, classChips, statusCell } from "./widgets.js";

/** @typedef {{key: HeadlineKey, label: string, title: string, fallback?: boolean}} HeadlineColumn */

/** The headline numbers, shown when any row has them. */
/** @type {HeadlineColumn[]} */
export const HEADLINE_COLUMNS = [
  { key: "f1", label: "F1", title: "F1 at IoU 0.5", fallback: true },
  { key: "precision", label: "Precision", title: "Precision", fallback: true },
  { key: "recall", label: "Recall", title: "Recall", fallback: true },
  { key: "ap50", label: "AP50", title: "COCO AP at IoU 0.5" },
  { key: "mean_iou", label: "Mean IoU", title: "Mean IoU over classes" },
];

/**
 * The headline columns any row has a value for; the instance ones when no row has any.
 * @param {readonly ModelSummary[]} models
 * @returns {HeadlineColumn[]}
 */
export function headlineColumns(models) {
  const present = HEADLINE_COLUMNS.filter((column) =>
    models.some((row) => row.headline && !missing(row.headline[column.key])));
  return present.length ? present : HEADLINE_COLUMNS.filter((column) => column.fallback);
}

/** @param {readonly ModelSummary[]} models @returns {boolean} */
export function anyBusy(models) {
  return models.some((row) => row.status === "queued" || row.status === "training");
}

/** @param {string} project */
function activeOnlyKey(project) {
  return `segpipe.activeOnly.${project}`;
}

export class ModelTableView {
  /** @param {HTMLElement} root @param {string} project */
  constructor(root, project) {
    this.project = project;
    this.poller = new Poller({
      fetch: (signal) => listModels(project, { activeOnly: this.state.activeOnly, signal }),
      show: (table) => {
        this.render(table.models);
        const busy = anyBusy(table.models);
        this.updated.textContent = `Updated ${new Date().toLocaleTimeString()}${busy ? " · refreshing while training" : ""}`;
        return busy;
      },
      failed: (error) => {
        replace(this.body, errorBox(error, "The models could not be loaded."));
        return true;
      },
    });
    this.state = { activeOnly: sessionStorage.getItem(activeOnlyKey(project)) === "1" };
    this.body = h("div", { class: "table-area", "data-testid": "models-area" }, stateNote("Loading models…", "loading"));
    this.updated = h("span", { class: "muted", "data-testid": "models-updated", "aria-live": "polite" });
    const filter = h("input", {
      type: "checkbox", id: "active-only", "data-testid": "active-only", checked: this.state.activeOnly,
      onchange: (/** @type {Event} */ event) => {
        this.state.activeOnly = inputOf(event).checked;
        sessionStorage.setItem(activeOnlyKey(project), this.state.activeOnly ? "1" : "0");
        this.load();
      },
    });
    root.append(
      h("section", { class: "panel", "aria-labelledby": "models-title" },
        h("div", { class: "panel-head" },
          h("div", {},
            h("h1", { id: "models-title", text: "AI models" }),
            h("p", { class: "muted" }, "Project ", h("strong", { "data-testid": "project-name", text: project })),
          ),
          h("div", { class: "toolbar" },
            h("label", { class: "check" }, filter, " Active only"),
            h("button", { type: "button", class: "secondary", "data-testid": "refresh", onclick: () => this.load() }, "Refresh"),
            this.updated,
          ),
        ),
        this.body,
      ),
    );
    document.title = `${project} · AI models · segpipe`;
    this.load();
  }

  destroy() {
    this.poller.stop();
  }

  load() {
    return this.poller.load();
  }

  /** @param {ModelSummary[]} models */
  render(models) {
    if (!models.length) {
      const text = this.state.activeOnly
        ? `No active models in project “${this.project}”. Activate a completed version to use it for analysis.`
        : `No AI models in project “${this.project}” yet. Submit a training to create the first version.`;
      replace(this.body, stateNote(text, "empty", "empty"));
      return;
    }
    const columns = headlineColumns(models);
    const rows = [...models].sort((a, b) => b.version - a.version).map((row) => this.row(row, columns));
    replace(this.body,
      h("div", { class: "table-scroll" },
        h("table", { class: "grid models", "data-testid": "model-table" },
          h("caption", { class: "sr-only", text: `AI models of project ${this.project}, newest first` }),
          h("thead", {},
            h("tr", {},
              ...["Label", "Version", "Status", "Type", "Classes"].map((text) => h("th", { scope: "col", text })),
              ...columns.map((column) => h("th", {
                scope: "col", class: "num", text: column.label,
                title: `${column.title}: test split at the suggested threshold (train split when there is no test set)`,
              })),
              h("th", { scope: "col", class: "num", title: "Analysis threshold: objects scored below it are left out of analyses", text: "Threshold" }),
              h("th", { scope: "col", text: "Created" }),
              h("th", { scope: "col", text: "Active" }),
            ),
          ),
          h("tbody", {}, rows),
        ),
      ),
    );
  }

  /** @param {ModelSummary} model @param {HeadlineColumn[]} columns @returns {HTMLTableRowElement} */
  row(model, columns) {
    const headline = model.headline || null;
    const split = headline && headline.split && headline.split !== "test"
      ? h("span", { class: "tag", title: "No test set: measured on training images", text: headline.split }) : null;
    return h("tr", { "data-testid": "model-row", "data-version": model.version, "data-status": model.status },
      h("td", {}, h("a", { href: versionHash(model.project, model.version), "data-testid": "model-link", text: model.label })),
      h("td", { class: "num", text: `v${model.version}` }),
      h("td", {}, statusCell(model)),
      h("td", { text: model.model_type }),
      h("td", {}, classChips(model.classes)),
      ...columns.map((column, index) => h("td", { class: "num", "data-metric": column.key },
        ratio(headline ? headline[column.key] : null), index === 0 ? split : null)),
      h("td", { class: "num", "data-testid": "analysis-threshold", text: threshold(model.analysis_threshold) }),
      h("td", { title: model.created_at, text: date(model.created_at) }),
      h("td", {}, h("span", { class: "active-cell" },
        model.active ? activeBadge() : null,
        activationButton(model, () => this.load()))),
    );
  }
}
