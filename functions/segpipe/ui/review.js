// @ts-check
// The review of a completed version: the viewer, the controls (split, threshold, classes,
// outlines) and the statistics. The review holds the one state of the page section; its children
// are given values and callbacks, never the review itself.
/** @import { ImageList, MetricsView, ModelVersion, PredictionImage, Split } from "./types.js" */
/** @import { DrawFilter } from "./objects.js" */
/** @import { SaveState } from "./save-state.js" */

import { imagePredictions, isAbort, loadImageList, messageOf, predictionsPage, putThreshold } from "./api.js";
import { classColour } from "./colours.js";
import { h, inputOf, replace, swatch } from "./dom.js";
import { count, missing, threshold as formatThreshold } from "./format.js";
import { IDLE, SAVING, afterChange, describeSave } from "./save-state.js";
import { StatsPanel } from "./statistics.js";
import { GRID_MAX, GRID_MIN, GRID_STEP, snap, trackFraction } from "./threshold.js";
import { Viewer } from "./viewer.js";

/** @type {Split[]} */
const SPLITS = ["test", "train"];

/**
 * @typedef {object} ReviewState
 * @property {Split} split the images shown
 * @property {number} threshold the slider's, on the grid
 * @property {number | null} saved the version's analysis threshold
 * @property {Set<string>} enabled classes drawn
 * @property {boolean} showOutlines
 * @property {SaveState} save
 */

/**
 * @typedef {object} ReviewOptions
 * @property {HTMLElement} area where the review goes
 * @property {string} project
 * @property {ModelVersion} model
 * @property {MetricsView | Error} metrics the sweep, or why it could not be loaded
 * @property {ImageList | Error} test the test images, or why they could not be loaded
 * @property {AbortSignal} signal
 * @property {(saved: ModelVersion) => void} onSaved a new analysis threshold was saved
 */

/**
 * The split shown first: test, unless the version has no test images.
 * @param {ImageList | null} test
 * @returns {Split}
 */
export function firstSplit(test) {
  return test && test.total === 0 ? "train" : "test";
}

/**
 * Where the slider starts: the analysis threshold, else the suggested one, else 0.5; on the grid.
 * @param {{analysis_threshold?: number | null, suggested_threshold?: number | null}} model
 * @returns {number}
 */
export function startThreshold(model) {
  return snap(model.analysis_threshold ?? model.suggested_threshold ?? 0.5);
}

/** @param {string} split @returns {string} what the viewer says for a split without images */
export function emptySplitText(split) {
  return split === "test" ? "This version has no test images." : "No training images were evaluated.";
}

export class Review {
  /** @param {ReviewOptions} options */
  constructor({ area, project, model, metrics, test, signal, onSaved }) {
    this.project = project;
    this.model = model;
    this.signal = signal;
    this.onSaved = onSaved;
    /** @type {Record<Split, ImageList | null>} */
    this.lists = { test: test instanceof Error ? null : test, train: null };
    /** @type {Partial<Record<Split, Promise<ImageList>>>} */
    this.pending = {};
    this.metrics = metrics instanceof Error ? null : metrics;
    this.classes = [...model.classes];
    /** @type {ReviewState} */
    this.state = {
      split: firstSplit(this.lists.test),
      threshold: startThreshold(model),
      saved: model.analysis_threshold ?? null,
      enabled: new Set(this.classes),
      showOutlines: true,
      save: IDLE,
    };
    this.rendered = { image: false, stats: false, marked: false };
    delete document.body.dataset.firstRender;
    this.viewer = new Viewer({
      signal, classes: this.classes, filter: this.filter(),
      loadList: (split) => this.list(/** @type {Split} */ (split)),
      loadObjects: (entry) => imagePredictions(/** @type {PredictionImage} */ (entry).predictions_url, signal),
      fetchEntry: async (split, index) =>
        (await predictionsPage(project, model.version, /** @type {Split} */ (split), { offset: index, limit: 1, signal })).images[0],
      emptyText: emptySplitText,
      onRendered: () => this.markRendered("image"),
      onCounts: (perClass) => this.updateClassCounts(perClass),
    });
    this.stats = new StatsPanel({
      metrics: this.metrics,
      error: metrics instanceof Error ? metrics : null,
      onPick: (value) => this.setThreshold(value),
      onRendered: () => this.markRendered("stats"),
    });
    /** @type {Partial<Record<Split, {input: HTMLInputElement, label: HTMLLabelElement, count: HTMLSpanElement}>>} */
    this.splitControls = {};
    /** @type {Map<string, HTMLSpanElement>} */
    this.classCounts = new Map();
    this.ui = thresholdBox({
      threshold: this.state.threshold,
      model,
      tunedOn: this.metrics && this.metrics.test ? "test" : "train",
      onInput: () => this.onSlider(),
      onSuggested: (value) => this.setThreshold(value),
      onSave: () => this.saveThreshold(),
    });
    this.resizeTicks = new ResizeObserver(() => this.placeTicks());
    this.resizeTicks.observe(this.ui.slider);
    replace(area,
      h("section", { class: "panel", "aria-labelledby": "qualitative-title", "data-testid": "qualitative" },
        h("h2", { id: "qualitative-title", text: "Qualitative performance" }),
        h("div", { class: "review-grid" }, this.viewer.element, this.controls()),
      ),
      this.stats.element,
    );
    this.updateSplitLabels();
    this.stats.update(this.state.threshold, this.state.saved);
    this.viewer.showSplit(this.state.split);
    if (this.state.split === "test") this.prefetchList("train");
  }

  destroy() {
    this.viewer.destroy();
    this.resizeTicks.disconnect();
  }

  /** @returns {DrawFilter} */
  filter() {
    const { threshold, enabled, showOutlines } = this.state;
    return { threshold, enabled, showOutlines };
  }

  /**
   * The version was loaded again (activation elsewhere on the page).
   * @param {ModelVersion} model
   */
  modelChanged(model) {
    this.model = model;
    this.state.saved = model.analysis_threshold ?? null;
    this.state.save = afterChange(this.state.save);
    this.renderSave();
    this.stats.update(this.state.threshold, this.state.saved);
  }

  /**
   * A split's images, loaded once (a failed load is tried again on the next call).
   * @param {Split} split
   * @returns {Promise<ImageList>}
   */
  list(split) {
    const known = this.lists[split];
    if (known) return Promise.resolve(known);
    let pending = this.pending[split];
    if (!pending) {
      pending = loadImageList(this.project, this.model.version, split, this.signal).then(
        (list) => { this.lists[split] = list; this.updateSplitLabels(); return list; },
        (error) => { delete this.pending[split]; throw error; },
      );
      this.pending[split] = pending;
    }
    return pending;
  }

  /** @param {Split} split */
  prefetchList(split) {
    const idle = window.requestIdleCallback || ((/** @type {() => void} */ fn) => setTimeout(fn, 300));
    idle(() => { this.list(split).catch(() => {}); });
  }

  /** @param {"image" | "stats"} part */
  markRendered(part) {
    this.rendered[part] = true;
    if (this.rendered.image && this.rendered.stats && !this.rendered.marked) {
      this.rendered.marked = true;
      performance.mark("segpipe:first-render");
      document.body.dataset.firstRender = "done";
    }
  }

  // ---- controls: split, threshold, classes, outlines

  /** @returns {HTMLDivElement} */
  controls() {
    const toggle = h("fieldset", { class: "segmented", "data-testid": "split-toggle" },
      h("legend", { text: "Images" }), this.splitOption("test", "Test images"), this.splitOption("train", "Train images"));
    const classList = h("div", { class: "class-list" }, this.classes.map((name, index) => {
      const counter = h("span", { class: "muted small class-count", "data-testid": "class-count", "data-class": name, title: "Objects of this class drawn on this image" });
      this.classCounts.set(name, counter);
      const input = h("input", {
        type: "checkbox", value: name, checked: true, "data-testid": "class-toggle", "data-class": name,
        onchange: (/** @type {Event} */ event) => {
          if (inputOf(event).checked) this.state.enabled.add(name);
          else this.state.enabled.delete(name);
          this.viewer.setFilter(this.filter());
        },
      });
      return h("label", { class: "check class-check" }, input, swatch(classColour(index)), h("span", { text: name }), counter);
    }));
    const outlines = h("input", {
      type: "checkbox", checked: true, "data-testid": "show-outlines",
      onchange: (/** @type {Event} */ event) => {
        this.state.showOutlines = inputOf(event).checked;
        this.viewer.setFilter(this.filter());
      },
    });
    const classBox = h("fieldset", { class: "control-block", "data-testid": "class-selector" },
      h("legend", { text: "Classes" }), classList,
      h("label", { class: "check" }, outlines, " Show outlines"));
    queueMicrotask(() => { this.renderSave(); });
    return h("div", { class: "controls", "data-testid": "controls" }, toggle, this.ui.element, classBox);
  }

  /** @param {Split} split @param {string} text */
  splitOption(split, text) {
    const input = h("input", {
      type: "radio", name: "split", id: `split-${split}`, value: split, "data-testid": `split-${split}`,
      checked: this.state.split === split,
      onchange: () => this.setSplit(split),
    });
    const counter = h("span", { class: "muted", text: this.splitCount(split) });
    const label = h("label", { for: `split-${split}` }, text, counter);
    this.splitControls[split] = { input, label, count: counter };
    return h("span", { class: "segment" }, input, label);
  }

  /** @param {Split} split @returns {string} */
  splitCount(split) {
    const list = this.lists[split];
    if (list) return ` (${count(list.total)})`;
    const fromMetrics = this.metrics && this.metrics[split];
    return fromMetrics ? ` (${count(fromMetrics.images)})` : "";
  }

  updateSplitLabels() {
    for (const split of SPLITS) {
      const list = this.lists[split];
      const controls = this.splitControls[split];
      if (!list || !controls) continue;
      controls.count.textContent = ` (${count(list.total)})`;
      if (list.total === 0) {
        controls.input.disabled = true;
        controls.label.title = split === "test" ? "This version has no test set" : "No training images were evaluated";
      }
    }
  }

  /** Place the suggested and saved ticks under the slider track (thumb is 18 px wide; see app.css). */
  placeTicks() {
    const width = this.ui.slider.clientWidth;
    /** @param {HTMLElement} tick @param {number | null | undefined} value */
    const place = (tick, value) => {
      if (missing(value)) { tick.hidden = true; return; }
      tick.hidden = false;
      tick.style.left = `${9 + trackFraction(value) * (width - 18)}px`;
    };
    place(this.ui.suggestedTick, this.model.suggested_threshold);
    place(this.ui.savedTick, this.state.saved);
  }

  /** @param {Split} split */
  setSplit(split) {
    if (split === this.state.split) return;
    this.state.split = split;
    const controls = this.splitControls[split];
    if (controls) controls.input.checked = true;
    this.viewer.showSplit(split);
  }

  onSlider() {
    const start = performance.now();
    this.state.threshold = snap(this.ui.slider.value);
    this.state.save = afterChange(this.state.save);
    this.ui.out.textContent = this.state.threshold.toFixed(2);
    this.viewer.setFilter(this.filter());
    this.stats.update(this.state.threshold, this.state.saved);
    this.renderSave();
    performance.clearMeasures("segpipe:slider-update"); // keep only the latest
    performance.measure("segpipe:slider-update", { start, end: performance.now() });
  }

  /** @param {number} value a grid value */
  setThreshold(value) {
    this.ui.slider.value = value.toFixed(2);
    this.onSlider();
  }

  /** Show the saved threshold, the save state and the ticks. */
  renderSave() {
    const { save, saved, threshold } = this.state;
    this.ui.savedText.textContent = formatThreshold(saved);
    const view = describeSave(save, saved, threshold);
    this.ui.saveStatus.textContent = view.text;
    this.ui.saveStatus.className = view.tone ? `save-status ${view.tone}` : "save-status";
    if (save.kind === "saved") this.ui.saveStatus.dataset.saved = formatThreshold(save.value);
    this.ui.saveButton.disabled = view.buttonDisabled;
    this.placeTicks();
  }

  async saveThreshold() {
    const value = Number(this.state.threshold.toFixed(2));
    this.state.save = SAVING;
    this.renderSave();
    try {
      const saved = await putThreshold(this.project, this.model.version, value, this.signal);
      this.model = saved;
      this.state.saved = saved.analysis_threshold ?? null;
      this.state.save = { kind: "saved", value: this.state.saved };
      this.renderSave();
      this.stats.update(this.state.threshold, this.state.saved);
      this.onSaved(saved);
    } catch (error) {
      if (isAbort(error)) { this.state.save = IDLE; return; }
      this.state.save = { kind: "failed", message: messageOf(error) };
      this.renderSave();
    }
  }

  /** @param {Map<string, number> | null} perClass objects drawn per class; null: no image */
  updateClassCounts(perClass) {
    for (const [name, element] of this.classCounts) {
      element.textContent = perClass ? count(perClass.get(name) || 0) : "";
    }
  }
}


/**
 * @typedef {object} ThresholdUi
 * @property {HTMLDivElement} element
 * @property {HTMLInputElement} slider
 * @property {HTMLOutputElement} out the slider's value
 * @property {HTMLSpanElement} suggestedTick
 * @property {HTMLSpanElement} savedTick
 * @property {HTMLElement} savedText the analysis threshold
 * @property {HTMLSpanElement} saveStatus
 * @property {HTMLButtonElement} saveButton
 */

/**
 * The threshold slider, the suggested threshold (a button that moves the slider there), the
 * analysis threshold and its save button.
 * @param {object} options
 * @param {number} options.threshold where the slider starts
 * @param {ModelVersion} options.model
 * @param {Split} options.tunedOn the split the suggestion is the best on
 * @param {() => void} options.onInput
 * @param {(value: number) => void} options.onSuggested
 * @param {() => void} options.onSave
 * @returns {ThresholdUi}
 */
function thresholdBox({ threshold, model, tunedOn, onInput, onSuggested, onSave }) {
  const slider = h("input", {
    type: "range", id: "threshold", min: GRID_MIN, max: GRID_MAX, step: GRID_STEP, value: threshold.toFixed(2),
    "data-testid": "threshold-slider", "aria-describedby": "threshold-help",
    oninput: onInput,
  });
  const out = h("output", { for: "threshold", "data-testid": "threshold-value", text: threshold.toFixed(2) });
  const suggestedTick = h("span", { class: "tick tick-suggested", title: "Suggested threshold", "aria-hidden": "true" });
  const savedTick = h("span", { class: "tick tick-saved", title: "Analysis threshold", "aria-hidden": "true" });
  const suggested = model.suggested_threshold;
  const savedText = h("strong", { "data-testid": "analysis-threshold" });
  const saveStatus = h("span", { class: "save-status", "data-testid": "threshold-status", role: "status", "aria-live": "polite" });
  const saveButton = h("button", { type: "button", "data-testid": "save-threshold", onclick: onSave }, "Update analysis threshold");
  const element = h("div", { class: "control-block threshold-box" },
    h("div", { class: "threshold-label" }, h("label", { for: "threshold", text: "Score threshold" }), out),
    h("div", { class: "slider-wrap" }, slider, suggestedTick, savedTick),
    h("p", { id: "threshold-help", class: "muted small", text: "Objects scored below the threshold are hidden." }),
    h("p", { class: "small", "data-testid": "suggested" },
      h("span", { class: "legend-dot dot-suggested", "aria-hidden": "true" }),
      "Suggested: ",
      missing(suggested)
        ? h("span", { "data-testid": "suggested-threshold", text: "none" })
        : h("button", { type: "button", class: "link", "data-testid": "suggested-threshold", title: "Move the slider to the suggested threshold", onclick: () => onSuggested(snap(suggested)) }, formatThreshold(suggested)),
      h("span", { class: "muted", text: ` (best ${model.model_type === "semantic" ? "mean IoU" : "F1"} on ${tunedOn})` }),
    ),
    h("p", { class: "small" }, h("span", { class: "legend-dot dot-saved", "aria-hidden": "true" }), "Analysis threshold: ", savedText, " ", saveStatus),
    saveButton,
  );
  return { element, slider, out, suggestedTick, savedTick, savedText, saveStatus, saveButton };
}
