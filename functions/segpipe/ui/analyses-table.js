// @ts-check
// The analyses table of a project, beside the model table: every analysis, newest first, with its
// status and progress, the version and thresholds it used and its object counts; refreshed while
// one is queued or running.
/** @import { AnalysisRow } from "./types.js" */

import { anyAnalysisBusy, objectCounts, progressOf, thresholdPairs } from "./analysis-format.js";
import { listAnalyses } from "./api.js";
import { errorBox, h, replace, stateNote, statusBadge, swatch } from "./dom.js";
import { colourOf } from "./colours.js";
import { count, date } from "./format.js";
import { Poller } from "./polling.js";
import { analysisHash, versionHash } from "./router.js";

/**
 * The status badge, with a bar and "images done of total" while running.
 * @param {AnalysisRow} row
 * @returns {HTMLSpanElement}
 */
export function analysisStatusCell(row) {
  const badge = statusBadge(row.status);
  const progress = progressOf(row);
  if (row.status !== "running" || !progress) return badge;
  const bar = h("progress", {
    max: Math.max(1, progress.total), value: progress.done, "aria-label": "Analysis progress", "data-testid": "analysis-bar",
  });
  return h("span", { class: "status-progress" }, badge, bar,
    h("span", { class: "muted small", "data-testid": "analysis-progress", text: progress.text }));
}

/**
 * Chips of `[class, text]` pairs, each with its class's colour (classes: the thresholds' order).
 * @param {[string, string | number][]} pairs
 * @param {readonly string[]} classes
 * @param {string} testid
 * @returns {HTMLSpanElement}
 */
export function classValueChips(pairs, classes, testid) {
  return h("span", { class: "chips", "data-testid": testid }, pairs.map(([name, value]) =>
    h("span", { class: "chip", "data-class": name, "data-value": value },
      swatch(colourOf(classes, name)), name, h("strong", { text: typeof value === "number" ? count(value) : value }))));
}

export class AnalysesTableView {
  /** @param {HTMLElement} root @param {string} project */
  constructor(root, project) {
    this.project = project;
    this.poller = new Poller({
      fetch: (signal) => listAnalyses(project, signal),
      show: (rows) => {
        this.render(rows);
        const busy = anyAnalysisBusy(rows);
        this.updated.textContent = `Updated ${new Date().toLocaleTimeString()}${busy ? " · refreshing while running" : ""}`;
        return busy;
      },
      failed: (error) => {
        replace(this.body, errorBox(error, "The analyses could not be loaded."));
        return true;
      },
    });
    this.body = h("div", { class: "table-area", "data-testid": "analyses-area" }, stateNote("Loading analyses…", "loading"));
    this.updated = h("span", { class: "muted", "data-testid": "analyses-updated", "aria-live": "polite" });
    root.append(
      h("section", { class: "panel", "aria-labelledby": "analyses-title", "data-testid": "analyses" },
        h("div", { class: "panel-head" },
          h("div", {},
            h("h2", { id: "analyses-title", text: "Analyses" }),
            h("p", { class: "muted", text: "Active models run over new images at their locked thresholds." }),
          ),
          h("div", { class: "toolbar" },
            h("button", { type: "button", class: "secondary", "data-testid": "analyses-refresh", onclick: () => this.load() }, "Refresh"),
            this.updated,
          ),
        ),
        this.body,
      ),
    );
    this.load();
  }

  destroy() {
    this.poller.stop();
  }

  load() {
    return this.poller.load();
  }

  /** @param {AnalysisRow[]} rows */
  render(rows) {
    if (!rows.length) {
      replace(this.body, stateNote(
        `No analyses in project “${this.project}” yet. Activate a version, lock its thresholds, then run it on a folder of images.`,
        "analyses-empty", "empty"));
      return;
    }
    const sorted = [...rows].sort((a, b) => b.analysis - a.analysis);
    replace(this.body,
      h("div", { class: "table-scroll" },
        h("table", { class: "grid analyses", "data-testid": "analyses-table" },
          h("caption", { class: "sr-only", text: `Analyses of project ${this.project}, newest first` }),
          h("thead", {},
            h("tr", {},
              h("th", { scope: "col", text: "Name" }),
              h("th", { scope: "col", class: "num", text: "#" }),
              h("th", { scope: "col", text: "Status" }),
              h("th", { scope: "col", text: "Version" }),
              h("th", { scope: "col", text: "Images" }),
              h("th", { scope: "col", title: "Objects scored below their class's threshold are left out", text: "Thresholds" }),
              h("th", { scope: "col", title: "Kept objects per class", text: "Objects" }),
              h("th", { scope: "col", text: "Created" }),
            ),
          ),
          h("tbody", {}, sorted.map((row) => this.row(row))),
        ),
      ),
    );
  }

  /** @param {AnalysisRow} row @returns {HTMLTableRowElement} */
  row(row) {
    const classes = Object.keys(row.thresholds || {});
    const counts = objectCounts(row.objects, classes);
    const done = row.status === "completed";
    return h("tr", { "data-testid": "analysis-row", "data-analysis": row.analysis, "data-status": row.status },
      h("td", {}, h("a", { href: analysisHash(row.project, row.analysis), "data-testid": "analysis-link", text: row.name })),
      h("td", { class: "num", text: `#${row.analysis}` }),
      h("td", {}, analysisStatusCell(row)),
      h("td", {}, h("a", { href: versionHash(row.project, row.version), "data-testid": "analysis-version", text: `v${row.version}` })),
      h("td", {},
        h("span", { class: "folder", title: `projects/${row.project}/images/${row.images_folder}/`, text: row.images_folder }),
        h("span", { class: "muted small", text: ` · ${count(row.images)}` })),
      h("td", {}, classValueChips(thresholdPairs(row.thresholds, classes), classes, "analysis-thresholds")),
      h("td", {}, done
        ? classValueChips(counts.perClass, classes, "analysis-objects")
        : h("span", { class: "muted", text: "–" })),
      h("td", { title: row.created_at, text: date(row.created_at) }),
    );
  }
}
