// @ts-check
// One analysis's page: what was run (version, thresholds, folder), its status and progress, a
// per-class summary, links to its outputs, and once it has completed, its images in the same
// viewer the version page uses, with the kept objects outlined in their class colours.
/** @import { AnalysisImageEntry, AnalysisView as AnalysisBody } from "./types.js" */

import { areaText, classSummary, isBusy, isSafeUrl, outputLinks, progressOf, statusSentence, thresholdPairs } from "./analysis-format.js";
import { classValueChips } from "./analyses-table.js";
import { analysedImage, getAnalysis, loadAnalysisImages } from "./api.js";
import { colourOf } from "./colours.js";
import { breadcrumb, failedInHeader, h, inputOf, itemAreas, replace, stateNote, statusBadge, swatch } from "./dom.js";
import { count, date, duration, missing } from "./format.js";
import { Poller } from "./polling.js";
import { ANALYSIS_PATTERN, projectHash, versionHash } from "./router.js";
import { Viewer } from "./viewer.js";

/** The viewer's one list on this page. */
const LIST = "images";

export class AnalysisPage {
  /** @param {HTMLElement} root @param {string} project @param {string} analysis */
  constructor(root, project, analysis) {
    this.project = project;
    this.analysis = analysis;
    this.poller = new Poller({
      fetch: (signal) => getAnalysis(project, analysis, signal),
      show: (view) => this.show(view),
      failed: failedInHeader(() => this.areas.header, "analysis"),
    });
    /** @type {AnalysisBody | null} */
    this.view = null;
    /** @type {Viewer | null} */
    this.viewer = null;
    /** @type {Set<string>} classes drawn */
    this.enabled = new Set();
    /** @type {Map<string, string | null>} each shown image's mask URL, by stem */
    this.masks = new Map();
    /** @type {HTMLElement | null} the shown image's links (its mask) */
    this.imageLinks = null;
    /** @type {HTMLElement} every analysed image, with its counts */
    this.imageList = h("div");
    const known = ANALYSIS_PATTERN.test(analysis);
    this.areas = itemAreas(root, {
      crumb: breadcrumb(projectHash(project), `Analyses · ${project}`, `#${analysis}`),
      noun: "analysis",
      statusTestId: "analysis-status-area",
      unknown: known ? null : `“${analysis}” is not an analysis number.`,
    });
    if (known) this.load();
  }

  destroy() {
    this.poller.stop();
    if (this.viewer) this.viewer.destroy();
  }

  load() {
    return this.poller.load();
  }

  /**
   * @param {AnalysisBody} view
   * @returns {boolean} whether it can still change (queued or running)
   */
  show(view) {
    this.view = view;
    document.title = `${view.name} · analysis #${view.analysis} · ${this.project} · segpipe`;
    this.renderHeader(view);
    this.renderStatus(view);
    replace(this.areas.details, this.factsPanel(view));
    if (view.status === "completed") {
      if (!this.viewer) this.startViewer(view);
    } else {
      replace(this.areas.main, stateNote(view.status === "failed" || view.status === "stopped"
        ? "This analysis has no images to show: it did not complete."
        : "The analysed images appear here when the analysis completes.", "no-images", "empty"));
    }
    return isBusy(view.status);
  }

  /** @param {AnalysisBody} view */
  renderHeader(view) {
    replace(this.areas.header,
      h("div", {},
        h("h1", { "data-testid": "analysis-title" }, view.name, " ", h("span", { class: "muted", text: `#${view.analysis}` })),
        h("p", { class: "meta" },
          statusBadge(view.status),
          h("span", { class: "muted" }, "version ",
            h("a", { href: versionHash(view.project, view.version), "data-testid": "analysis-version", text: `v${view.version}` }),
            ` · ${view.model_type} · created ${date(view.created_at)}`),
        ),
      ),
    );
  }

  /** @param {AnalysisBody} view */
  renderStatus(view) {
    const sentence = statusSentence(view);
    if (view.status === "running") {
      const progress = progressOf(view);
      replace(this.areas.status, h("div", { class: "alert alert-info progress-box", "data-testid": "analysis-running" },
        h("strong", { text: "Running. " }),
        progress ? h("progress", { max: Math.max(1, progress.total), value: progress.done, "aria-label": "Analysis progress" }) : null,
        h("span", { "data-testid": "analysis-progress", text: progress ? progress.text : "Starting up…" })));
    } else if (view.status === "failed") {
      replace(this.areas.status, h("div", { class: "alert alert-error", role: "alert", "data-testid": "failure" },
        h("strong", { text: "Analysis failed. " }), h("span", { "data-testid": "failure-reason", text: sentence })));
    } else if (view.status === "stopped") {
      replace(this.areas.status, h("div", { class: "alert alert-warn", "data-testid": "stopped" },
        h("strong", { text: "Analysis was stopped. " }), sentence));
    } else if (view.status === "queued") {
      replace(this.areas.status, h("div", { class: "alert alert-info", "data-testid": "analysis-queued" }, sentence));
    } else {
      replace(this.areas.status);
    }
  }

  /** @param {AnalysisBody} view @returns {HTMLElement} */
  factsPanel(view) {
    const classes = view.classes || Object.keys(view.thresholds || {});
    const summary = view.summary || null;
    const pixelSize = view.pixel_size ?? (summary ? summary.pixel_size : null);
    const took = summary && summary.seconds ? `${summary.seconds.toFixed(0)} s` : duration(view.created_at, view.ended_at);
    const facts = [
      ["Images folder", h("code", { "data-testid": "analysis-folder", text: `images/${view.images_folder}/` })],
      ["Images", `${count(view.images)}${summary && summary.megapixels ? ` · ${summary.megapixels.toFixed(1)} MP` : ""}`],
      ["Thresholds used", classValueChips(thresholdPairs(view.thresholds, classes), classes, "analysis-thresholds")],
      ["Pixel size", missing(pixelSize) ? "not given (sizes in pixels)" : `${pixelSize} µm per pixel`],
      ["Job", h("code", { text: view.job_name })],
      took ? ["Took", took] : null,
    ];
    const warnings = (view.warnings || []).map((issue) =>
      h("li", { "data-code": issue.code }, issue.message, " ", h("code", { class: "error-code", text: issue.code })));
    return h("section", { class: "panel", "aria-labelledby": "analysis-facts-title", "data-testid": "analysis-facts" },
      h("h2", { id: "analysis-facts-title", text: "What was run" }),
      h("dl", { class: "facts" }, facts.map((fact) => fact && h("div", { class: "fact" }, h("dt", { text: fact[0] }), h("dd", {}, fact[1])))),
      warnings.length ? h("ul", { class: "warnings", "data-testid": "analysis-warnings" }, warnings) : null,
      h("h2", { class: "sub-head", text: "Per class" }),
      this.summaryTable(view, classes, pixelSize),
      h("h2", { class: "sub-head", text: "Outputs" }),
      this.outputsList(view),
    );
  }

  /**
   * @param {AnalysisBody} view @param {readonly string[]} classes @param {number | null | undefined} pixelSize
   * @returns {HTMLElement}
   */
  summaryTable(view, classes, pixelSize) {
    const withUm = !missing(pixelSize);
    const rows = classSummary(view);
    const done = view.status === "completed";
    return h("div", { class: "table-scroll" },
      h("table", { class: "grid", "data-testid": "analysis-summary" },
        h("thead", {}, h("tr", {},
          h("th", { scope: "col", text: "Class" }),
          h("th", { scope: "col", class: "num", text: "Threshold" }),
          h("th", { scope: "col", class: "num", text: "Objects" }),
          h("th", { scope: "col", class: "num", text: "Area" }),
          withUm ? h("th", { scope: "col", class: "num" }, "Area ", h("span", { class: "unit", text: "(µm²)" })) : null,
          h("th", { scope: "col", class: "num", text: "Mean area" }),
        )),
        h("tbody", {}, rows.map((row) => h("tr", { "data-testid": "summary-row", "data-class": row.name },
          h("td", {}, swatch(colourOf(classes, row.name)), " ", row.name),
          h("td", { class: "num", text: row.threshold }),
          h("td", { class: "num", "data-testid": "summary-objects", "data-value": done ? row.objects : null, text: done ? count(row.objects) : "–" }),
          h("td", { class: "num", text: done ? areaText(row.area, "px") : "–" }),
          withUm ? h("td", { class: "num", "data-testid": "summary-um2", text: done ? areaText(row.areaUm2, "µm²") : "–" }) : null,
          h("td", { class: "num", text: done ? areaText(row.meanArea, "px") : "–" }),
        ))),
      ),
    );
  }

  /** @param {AnalysisBody} view @returns {HTMLElement} */
  outputsList(view) {
    const links = outputLinks(view.outputs);
    if (!links.length) {
      let text = "coco.json, objects.csv, images.csv, summary.json and the masks appear here when the analysis completes.";
      if (view.status === "completed") text = "No output links were given.";
      else if (!isBusy(view.status)) text = `This analysis ${view.status === "failed" ? "failed" : "was stopped"}: it has no outputs.`;
      return stateNote(text, "no-outputs", "empty");
    }
    return h("ul", { class: "outputs", "data-testid": "analysis-outputs" },
      links.map((link) => h("li", {},
        h("a", { href: link.url, "data-testid": "output-link", "data-name": link.name, download: link.name, rel: "noopener" }, link.name),
        h("span", { class: "muted small", text: ` · ${link.title}` }))),
      h("li", { class: "muted", text: "Masks: one TIFF label image per image, linked below each image." }),
    );
  }

  /** @param {AnalysisBody} view */
  startViewer(view) {
    const signal = this.poller.signal;
    const classes = view.classes && view.classes.length ? [...view.classes] : Object.keys(view.thresholds || {});
    this.enabled = new Set(classes);
    /** @type {{total: number, images: AnalysisImageEntry[]} | null} */
    let list = null;
    /** @type {Map<string, HTMLSpanElement>} */
    const counts = new Map();
    this.viewer = new Viewer({
      signal,
      classes,
      filter: this.filter(),
      loadList: async () => {
        list = await loadAnalysisImages(this.project, this.analysis, signal);
        replace(this.imageList, imageTable(list.images, classes, (index) => this.viewer && this.viewer.show(index)));
        return list;
      },
      loadObjects: async (entry) => {
        const image = await analysedImage(this.project, this.analysis, entry, signal);
        this.masks.set(entry.stem, image.mask_url || /** @type {AnalysisImageEntry} */ (entry).mask_url || null);
        return image;
      },
      fetchEntry: async (_key, index) => {
        const entry = list && list.images[index];
        if (!entry) return undefined;
        const image = await analysedImage(this.project, this.analysis, entry, signal);
        return { ...entry, preview_url: image.preview_url || null };
      },
      emptyText: () => "The analysis found no images to show.",
      onRendered: () => this.imageShown(),
      onCounts: (perClass) => {
        for (const [name, counter] of counts) counter.textContent = perClass ? count(perClass.get(name) || 0) : "–";
      },
    });
    const toggles = this.classToggles(classes, counts);
    this.imageLinks = h("p", { class: "small", "data-testid": "image-links" });
    this.imageList = h("div", { class: "image-list" }, stateNote("Loading the images…", "loading"));
    replace(this.areas.main,
      h("section", { class: "panel", "aria-labelledby": "analysis-images-title", "data-testid": "analysis-images" },
        h("h2", { id: "analysis-images-title", text: "Analysed images" }),
        h("div", { class: "review-grid" }, this.viewer.element,
          h("div", { class: "controls" },
            h("fieldset", {}, h("legend", { text: "Classes" }), toggles),
            h("p", { class: "muted small", text: "Only kept objects are drawn: those at or above their class's threshold." }),
            this.imageLinks)),
        h("h3", { class: "sub-head", text: "Images" }),
        this.imageList,
      ),
    );
    this.viewer.showSplit(LIST);
  }

  /**
   * A checkbox per class (drawn or not) with the count drawn on the shown image.
   * @param {readonly string[]} classes @param {Map<string, HTMLSpanElement>} counts filled here
   * @returns {HTMLDivElement}
   */
  classToggles(classes, counts) {
    return h("div", { class: "class-list" }, classes.map((name) => {
      const counter = h("span", { class: "muted small class-count", "data-testid": "class-count", "data-class": name, title: "Objects of this class drawn on this image" });
      counts.set(name, counter);
      return h("label", { class: "check class-toggle" },
        h("input", {
          type: "checkbox", checked: true, "data-testid": "class-toggle", "data-class": name,
          onchange: (/** @type {Event} */ event) => {
            if (inputOf(event).checked) this.enabled.add(name);
            else this.enabled.delete(name);
            if (this.viewer) this.viewer.setFilter(this.filter());
          },
        }),
        swatch(colourOf(classes, name)), ` ${name} `, counter);
    }));
  }

  /** @returns {import("./objects.js").DrawFilter} */
  filter() {
    return { threshold: 0, enabled: this.enabled, showOutlines: true };
  }

  /** The viewer shows an image: link its mask. */
  imageShown() {
    const shown = this.viewer && this.viewer.current;
    if (!this.imageLinks) return;
    if (!shown) { replace(this.imageLinks); return; }
    for (const row of this.imageList.querySelectorAll("tr[data-stem]")) {
      row.classList.toggle("current", /** @type {HTMLElement} */ (row).dataset.stem === shown.entry.stem);
    }
    const url = this.masks.get(shown.entry.stem) || /** @type {AnalysisImageEntry} */ (shown.entry).mask_url;
    replace(this.imageLinks, isSafeUrl(url)
      ? h("a", { href: url, "data-testid": "mask-link", download: `${shown.entry.stem}.tif`, rel: "noopener", text: `Mask of this image (${shown.entry.stem}.tif)` })
      : h("span", { class: "muted", text: `Mask: masks/${shown.entry.stem}.tif in the analysis's folder.` }));
    document.body.dataset.analysisRendered = "done";
  }
}

/** Rows of the images table drawn at most; the viewer steps through all of them. */
export const IMAGE_ROWS = 500;

/**
 * The analysed images with their counts per class; a click shows one in the viewer.
 * @param {readonly AnalysisImageEntry[]} images
 * @param {readonly string[]} classes
 * @param {(index: number) => void} open
 * @returns {HTMLElement}
 */
function imageTable(images, classes, open) {
  if (!images.length) return stateNote("No images were analysed.", "no-image-rows", "empty");
  const shown = images.slice(0, IMAGE_ROWS);
  return h("div", { class: "table-scroll" },
    h("table", { class: "grid images", "data-testid": "analysis-image-table" },
      h("thead", {}, h("tr", {},
        h("th", { scope: "col", text: "Image" }),
        h("th", { scope: "col", class: "num", text: "Objects" }),
        classes.map((name) => h("th", { scope: "col", class: "num" }, swatch(colourOf(classes, name)), " ", name)),
        h("th", { scope: "col", class: "num", text: "Size" }),
      )),
      h("tbody", {}, shown.map((entry, index) => h("tr", { "data-testid": "analysis-image-row", "data-stem": entry.stem },
        h("td", {}, h("button", { type: "button", class: "link", "data-testid": "open-image", onclick: () => open(index), text: entry.file_name })),
        h("td", { class: "num", text: count(entry.objects) }),
        classes.map((name) => h("td", { class: "num", "data-class": name, text: count((entry.counts || {})[name] ?? 0) })),
        h("td", { class: "num muted", text: entry.width && entry.height ? `${entry.width} × ${entry.height}` : "–" }),
      ))),
    ),
    images.length > shown.length
      ? h("p", { class: "muted small", text: `The first ${count(shown.length)} of ${count(images.length)} images are listed; step through the rest in the viewer.` })
      : null,
  );
}
