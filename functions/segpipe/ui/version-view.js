// @ts-check
// One version's page: header, status, training details, and the review once it has completed.
/** @import { ModelVersion } from "./types.js" */

import { getModel, getSweep, isAbort, loadImageList, messageOf } from "./api.js";
import { detailsPanel } from "./details.js";
import { activeBadge, breadcrumb, failedInHeader, h, itemAreas, notify, replace, stateNote, statusBadge } from "./dom.js";
import { date, missing } from "./format.js";
import { Poller } from "./polling.js";
import { Review } from "./review.js";
import { VERSION_PATTERN, projectHash } from "./router.js";
import { activationButton } from "./widgets.js";

/**
 * @typedef {object} VersionState
 * @property {ModelVersion | null} model the version as last loaded
 * @property {Review | null} review once the version has completed
 */

/**
 * What the page says where predictions would be, for a version that has none (yet).
 * @param {ModelVersion["status"]} status
 * @returns {string}
 */
export function noPredictionsText(status) {
  return status === "failed" || status === "stopped"
    ? "This version has no predictions or statistics: its training did not complete."
    : "Predictions and statistics appear here when training completes.";
}

export class VersionView {
  /** @param {HTMLElement} root @param {string} project @param {string} version */
  constructor(root, project, version) {
    this.project = project;
    this.version = version;
    this.poller = new Poller({
      fetch: (signal) => getModel(project, version, signal),
      show: (model) => this.show(model),
      failed: failedInHeader(() => this.areas.header, "version"),
    });
    /** @type {VersionState} */
    this.state = { model: null, review: null };
    const known = VERSION_PATTERN.test(version);
    this.areas = itemAreas(root, {
      crumb: breadcrumb(projectHash(project), `AI models · ${project}`, `v${version}`),
      noun: "version",
      statusTestId: "status-area",
      unknown: known ? null : `“${version}” is not a version number.`,
    });
    if (known) this.load();
  }

  destroy() {
    this.poller.stop();
    if (this.state.review) this.state.review.destroy();
  }

  load() {
    return this.poller.load();
  }

  /**
   * @param {ModelVersion} model
   * @returns {Promise<boolean>} whether it can still change (queued or training)
   */
  async show(model) {
    this.state.model = model;
    document.title = `${model.label} v${model.version} · ${this.project} · segpipe`;
    this.renderHeader(model);
    this.renderStatus(model);
    replace(this.areas.details, detailsPanel(model));
    if (model.status === "completed") {
      if (!this.state.review) await this.startReview(model);
      else this.state.review.modelChanged(model);
    } else {
      replace(this.areas.main, stateNote(noPredictionsText(model.status), "no-predictions", "empty"));
    }
    return model.status === "queued" || model.status === "training";
  }

  /** @param {ModelVersion} model */
  async startReview(model) {
    const signal = this.poller.signal;
    replace(this.areas.main, stateNote("Loading predictions and statistics…", "loading"));
    // Both at once, each resolving to its value or its error (shown where it belongs).
    /** @param {unknown} error @returns {Error} */
    const asError = (error) => (error instanceof Error ? error : new Error(String(error)));
    const [metrics, test] = await Promise.all([
      getSweep(this.project, this.version, signal).catch(asError),
      loadImageList(this.project, this.version, "test", signal).catch(asError),
    ]);
    if (signal.aborted) return;
    this.state.review = new Review({
      area: this.areas.main, project: this.project, model, metrics, test, signal,
      onSaved: (saved) => { this.state.model = saved; this.renderHeader(saved); },
    });
  }

  /** @param {ModelVersion} model */
  renderHeader(model) {
    replace(this.areas.header,
      h("div", {},
        h("h1", { "data-testid": "version-title" }, model.label, " ", h("span", { class: "muted", text: `v${model.version}` })),
        h("p", { class: "meta" },
          statusBadge(model.status),
          model.active ? activeBadge() : null,
          h("span", { class: "muted", text: `${model.model_type} · created ${date(model.created_at)}` }),
        ),
      ),
      h("div", { class: "toolbar" },
        activationButton({ ...model }, () => this.reload()),
      ),
    );
  }

  async reload() {
    try {
      const model = await getModel(this.project, this.version, this.poller.signal);
      this.state.model = model;
      this.renderHeader(model);
      if (this.state.review) this.state.review.modelChanged(model);
    } catch (error) {
      if (!isAbort(error)) notify(messageOf(error), "error");
    }
  }

  /** @param {ModelVersion} model */
  renderStatus(model) {
    const parts = [];
    if (model.status === "failed") {
      parts.push(h("div", { class: "alert alert-error", role: "alert", "data-testid": "failure" },
        h("strong", { text: "Training failed. " }),
        h("span", { "data-testid": "failure-reason", text: model.failure_reason || "No reason was recorded." })));
    } else if (model.status === "stopped") {
      const change = (model.status_history || []).filter((item) => item.status === "stopped").pop();
      parts.push(h("div", { class: "alert alert-warn", "data-testid": "stopped" },
        h("strong", { text: "Training was stopped. " }), change && change.reason ? change.reason : "It did not produce a model."));
    } else if (model.status === "training" || model.status === "queued") {
      parts.push(progressBox(model));
    }
    replace(this.areas.status, ...parts);
  }
}

/** @param {ModelVersion} model @returns {HTMLDivElement} */
function progressBox(model) {
  const progress = model.progress;
  if (model.status === "queued") {
    return h("div", { class: "alert alert-info", "data-testid": "training-progress" },
      h("strong", { text: "Queued. " }), "Waiting for the training job to start; this page refreshes by itself.");
  }
  const bits = [];
  if (progress) {
    bits.push(h("progress", { max: progress.epochs, value: progress.epoch, "aria-label": "Training progress" }));
    bits.push(h("span", { "data-testid": "epoch", text: `Epoch ${progress.epoch} of ${progress.epochs}` }));
    if (progress.phase && progress.phase !== "training") bits.push(h("span", { class: "muted", text: ` · ${progress.phase}` }));
    if (!missing(progress.train_loss)) bits.push(h("span", { class: "muted", text: ` · loss ${progress.train_loss.toFixed(3)}` }));
    if (!missing(progress.val_score)) bits.push(h("span", { class: "muted", text: ` · validation ${progress.val_score.toFixed(3)}` }));
  } else {
    bits.push(h("span", { text: "Starting up; progress appears after the first epoch." }));
  }
  return h("div", { class: "alert alert-info progress-box", "data-testid": "training-progress" },
    h("strong", { text: "Training. " }), ...bits);
}
