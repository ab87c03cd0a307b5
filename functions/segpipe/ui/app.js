// segpipe model review page: the model table and one version's details, predictions and statistics.
// Plain ES module, no framework, no build step. Served by the API under a strict CSP: no inline
// scripts or style attributes (element.style set from script is fine), no external resources.

const API_BASE = window.location.pathname.replace(/\/ui(\/.*)?$/, "");
const PROJECT_KEY = "segpipe.project";
const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
const GRID_MIN = 0.05;
const GRID_MAX = 0.95;
const GRID_STEP = 0.05;
const POLL_MS = 5000;
const PAGE_LIMIT = 1000;
const PREDICTION_CACHE = 64;
const CLASS_COLOURS = [
  "#ffb000", "#4cc9f0", "#f72585", "#7bd389", "#b388ff",
  "#ff6b35", "#e9ff70", "#4f7cff", "#ff99c8", "#00d1b2",
];
const PLOT_SERIES = {
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
// Statistics columns: shown when any sweep point (or AP) of the version has a value for them.
const STAT_COLUMNS = [
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
const OVERALL = "__overall__";
// Model table: the headline numbers, shown when any row has them.
const HEADLINE_COLUMNS = [
  { key: "f1", label: "F1", title: "F1 at IoU 0.5", fallback: true },
  { key: "precision", label: "Precision", title: "Precision", fallback: true },
  { key: "recall", label: "Recall", title: "Recall", fallback: true },
  { key: "ap50", label: "AP50", title: "COCO AP at IoU 0.5" },
  { key: "mean_iou", label: "Mean IoU", title: "Mean IoU over classes" },
];

// --- small helpers -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message, context = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.context = context;
  }
}

async function api(path, { method = "GET", body, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(API_BASE + path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "The API could not be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const detail = (data && data.error) || {};
    throw new ApiError(
      response.status,
      detail.code || `http_${response.status}`,
      detail.message || (data && data.message) || `The API answered ${response.status} ${response.statusText}.`,
      detail.context || {},
    );
  }
  return data;
}

function isAbort(error) {
  return error && error.name === "AbortError";
}

/** Build an element: h("button", {class: "x", "data-testid": "y", onclick: fn}, "text", child). */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name === "text") {
      element.textContent = value;
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(parent, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace an element's children, skipping null, undefined and false (replaceChildren would print them). */
function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs = {}, ...children) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "text") element.textContent = value;
    else element.setAttribute(name, String(value));
  }
  for (const child of children.flat()) if (child) element.append(child);
  return element;
}

const format = {
  ratio: (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(3)),
  count: (value) => (value === null || value === undefined ? "–" : Number(value).toLocaleString("en-US")),
  threshold: (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(2)),
  date: (iso) => {
    if (!iso) return "–";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleString(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
    });
  },
  duration: (start, end) => {
    if (!start || !end) return null;
    const minutes = Math.round((new Date(end) - new Date(start)) / 60000);
    if (!Number.isFinite(minutes) || minutes < 0) return null;
    return minutes >= 90 ? `${(minutes / 60).toFixed(1)} h` : `${minutes} min`;
  },
};

function plural(count, noun) {
  return `${format.count(count)} ${noun}${count === 1 ? "" : "s"}`;
}

/** The slider's grid value nearest to `value` (0.05 .. 0.95 in steps of 0.05). */
function snap(value) {
  const clamped = Math.min(GRID_MAX, Math.max(GRID_MIN, Number(value)));
  return Math.round(clamped / GRID_STEP) * GRID_STEP;
}

function sameThreshold(a, b) {
  return a !== null && a !== undefined && b !== null && b !== undefined && Math.abs(a - b) < 1e-6;
}

function classColour(index) {
  return CLASS_COLOURS[index % CLASS_COLOURS.length];
}

function projectPath(project) {
  return `/projects/${encodeURIComponent(project)}`;
}

function versionPath(project, version) {
  return `${projectPath(project)}/models/${encodeURIComponent(version)}`;
}

function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-testid": "status", text: status });
}

function stateNote(text, testid, kind = "") {
  return h("p", { class: `state-note ${kind}`.trim(), "data-testid": testid, text });
}

function errorBox(error, what) {
  const message = error instanceof ApiError ? error.message : String(error && error.message ? error.message : error);
  const code = error instanceof ApiError ? error.code : "error";
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": "error" },
    h("strong", { text: what }),
    " ",
    h("span", { "data-testid": "error-message", text: message }),
    h("code", { class: "error-code", text: code }),
  );
}

const notice = {
  show(text, kind = "info") {
    const box = document.getElementById("notice");
    box.textContent = text;
    box.className = `notice notice-${kind}`;
    box.hidden = false;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 4000);
  },
};

// --- routing -----------------------------------------------------------------------------------

function parseRoute(hash) {
  const path = hash.replace(/^#/, "").replace(/\/+$/, "") || "/";
  let match = path.match(/^\/projects\/([^/]+)\/models\/([^/]+)$/);
  if (match) return { name: "version", project: decodeURIComponent(match[1]), version: decodeURIComponent(match[2]) };
  match = path.match(/^\/projects\/([^/]+)$/);
  if (match) return { name: "models", project: decodeURIComponent(match[1]) };
  if (path === "/") return { name: "home" };
  return { name: "unknown" };
}

let currentView = null;

function route() {
  if (currentView) currentView.destroy();
  currentView = null;
  const target = parseRoute(window.location.hash);
  const root = document.getElementById("app");
  replace(root);
  if (target.project) rememberProject(target.project);
  if (target.name === "home") {
    const stored = localStorage.getItem(PROJECT_KEY);
    if (stored && PROJECT_PATTERN.test(stored)) {
      window.location.replace(`#/projects/${encodeURIComponent(stored)}`);
      return;
    }
    root.append(homeView());
  } else if (target.name === "models") {
    currentView = new ModelTableView(root, target.project);
  } else if (target.name === "version") {
    currentView = new VersionView(root, target.project, target.version);
  } else {
    root.append(
      h("section", { class: "panel" },
        h("h1", { text: "Page not found" }),
        h("p", {}, "There is nothing at this address. ", h("a", { href: "#/", text: "Go to the model table" }), "."),
      ),
    );
  }
}

function rememberProject(project) {
  if (!PROJECT_PATTERN.test(project)) return;
  localStorage.setItem(PROJECT_KEY, project);
  const input = document.getElementById("project-input");
  if (document.activeElement !== input) input.value = project;
}

function homeView() {
  return h("section", { class: "panel welcome", "data-testid": "home" },
    h("h1", { text: "AI models" }),
    h("p", { text: "Enter a project name above to see its trained models." }),
  );
}

function setupProjectForm() {
  const form = document.getElementById("project-form");
  const input = document.getElementById("project-input");
  const hint = document.getElementById("project-hint");
  input.value = localStorage.getItem(PROJECT_KEY) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const project = input.value.trim();
    if (!PROJECT_PATTERN.test(project)) {
      hint.textContent = "Use letters, digits, - and _ (up to 63 characters).";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    hint.textContent = "";
    input.removeAttribute("aria-invalid");
    const target = `#/projects/${encodeURIComponent(project)}`;
    if (window.location.hash === target) route();
    else window.location.hash = target;
  });
}

// --- the model table ---------------------------------------------------------------------------

class ModelTableView {
  constructor(root, project) {
    this.project = project;
    this.controller = new AbortController();
    this.timer = null;
    this.activeOnly = sessionStorage.getItem(`segpipe.activeOnly.${project}`) === "1";
    this.body = h("div", { class: "table-area", "data-testid": "models-area" }, stateNote("Loading models…", "loading"));
    this.updated = h("span", { class: "muted", "data-testid": "models-updated", "aria-live": "polite" });
    const filter = h("input", {
      type: "checkbox", id: "active-only", "data-testid": "active-only", checked: this.activeOnly,
      onchange: (event) => {
        this.activeOnly = event.target.checked;
        sessionStorage.setItem(`segpipe.activeOnly.${project}`, this.activeOnly ? "1" : "0");
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
    this.controller.abort();
    clearTimeout(this.timer);
  }

  async load() {
    clearTimeout(this.timer);
    const query = this.activeOnly ? "?active=true" : "";
    try {
      const table = await api(`${projectPath(this.project)}/models${query}`, { signal: this.controller.signal });
      this.render(table.models);
      const busy = table.models.some((row) => row.status === "queued" || row.status === "training");
      this.updated.textContent = `Updated ${new Date().toLocaleTimeString()}${busy ? " · refreshing while training" : ""}`;
      if (busy) this.timer = setTimeout(() => this.load(), POLL_MS);
    } catch (error) {
      if (isAbort(error)) return;
      replace(this.body, errorBox(error, "The models could not be loaded."));
      this.timer = setTimeout(() => this.load(), POLL_MS * 3);
    }
  }

  render(models) {
    if (!models.length) {
      const text = this.activeOnly
        ? `No active models in project “${this.project}”. Activate a completed version to use it for analysis.`
        : `No AI models in project “${this.project}” yet. Submit a training to create the first version.`;
      replace(this.body, stateNote(text, "empty", "empty"));
      return;
    }
    const present = HEADLINE_COLUMNS.filter((column) => models.some((row) => row.headline && row.headline[column.key] !== null && row.headline[column.key] !== undefined));
    const columns = present.length ? present : HEADLINE_COLUMNS.filter((column) => column.fallback);
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

  row(model, columns) {
    const headline = model.headline || {};
    const split = headline.split && headline.split !== "test"
      ? h("span", { class: "tag", title: "No test set: measured on training images", text: headline.split }) : null;
    return h("tr", { "data-testid": "model-row", "data-version": model.version, "data-status": model.status },
      h("td", {}, h("a", { href: `#${versionPath(model.project, model.version)}`, "data-testid": "model-link", text: model.label })),
      h("td", { class: "num", text: `v${model.version}` }),
      h("td", {}, statusCell(model)),
      h("td", { text: model.model_type }),
      h("td", {}, classChips(model.classes)),
      ...columns.map((column, index) => h("td", { class: "num", "data-metric": column.key },
        format.ratio(headline[column.key]), index === 0 ? split : null)),
      h("td", { class: "num", "data-testid": "analysis-threshold", text: format.threshold(model.analysis_threshold) }),
      h("td", { title: model.created_at, text: format.date(model.created_at) }),
      h("td", {}, h("span", { class: "active-cell" },
        model.active ? h("span", { class: "badge active", "data-testid": "active-badge", text: "active" }) : null,
        activationButton(model, () => this.load()))),
    );
  }
}

function classChips(classes) {
  return h("span", { class: "chips" }, classes.map((name, index) => {
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.backgroundColor = classColour(index);
    return h("span", { class: "chip" }, swatch, name);
  }));
}

function statusCell(model) {
  const badge = statusBadge(model.status);
  const progress = model.progress;
  if (model.status !== "training" || !progress) return badge;
  const bar = h("progress", { max: progress.epochs, value: progress.epoch, "aria-label": "Training progress" });
  return h("span", { class: "status-progress" }, badge, bar,
    h("span", { class: "muted small", "data-testid": "epoch", text: `epoch ${progress.epoch} / ${progress.epochs}` }));
}

function activationButton(model, after) {
  const activate = !model.active;
  const button = h("button", {
    type: "button",
    class: activate ? "secondary small" : "ghost small",
    "data-testid": activate ? "activate" : "deactivate",
    disabled: activate && model.status !== "completed",
    title: activate && model.status !== "completed" ? "Only a completed version can be activated" : null,
    text: activate ? "Activate" : "Deactivate",
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    const action = activate ? "activate" : "deactivate";
    try {
      await api(`${versionPath(model.project, model.version)}/${action}`, { method: "POST" });
      notice.show(`Version ${model.version} is ${activate ? "now active" : "no longer active"}.`, "success");
    } catch (error) {
      notice.show(`Could not ${action} version ${model.version}: ${error.message}`, "error");
    }
    after();
  });
  return button;
}

// --- one version -------------------------------------------------------------------------------

class VersionView {
  constructor(root, project, version) {
    this.project = project;
    this.version = version;
    this.controller = new AbortController();
    this.timer = null;
    this.review = null;
    this.root = root;
    this.header = h("div", { class: "version-head" }, stateNote("Loading the version…", "loading"));
    this.status = h("div", { class: "status-area", "data-testid": "status-area" });
    this.details = h("div", { class: "details-area" });
    this.reviewArea = h("div", { class: "review-area" });
    root.append(
      h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" },
        h("a", { href: `#${projectPath(project)}`, "data-testid": "back", text: `AI models · ${project}` }),
        h("span", { "aria-hidden": "true", text: " / " }),
        h("span", { text: `v${version}` }),
      ),
      this.header, this.status, this.details, this.reviewArea,
    );
    if (!/^\d{1,6}$/.test(String(version))) {
      replace(this.header, errorBox(new ApiError(404, "version_not_found", `“${version}” is not a version number.`), "No such version."));
      return;
    }
    this.load();
  }

  destroy() {
    this.controller.abort();
    clearTimeout(this.timer);
    if (this.review) this.review.destroy();
  }

  async load() {
    clearTimeout(this.timer);
    const signal = this.controller.signal;
    const base = versionPath(this.project, this.version);
    let model;
    try {
      model = await api(base, { signal });
    } catch (error) {
      if (isAbort(error)) return;
      replace(this.header, errorBox(error, error.status === 404 ? "No such version." : "The version could not be loaded."));
      if (error.status !== 404) this.timer = setTimeout(() => this.load(), POLL_MS * 3);
      return;
    }
    this.model = model;
    document.title = `${model.label} v${model.version} · ${this.project} · segpipe`;
    this.renderHeader(model);
    this.renderStatus(model);
    replace(this.details, detailsPanel(model));
    if (model.status === "completed") {
      if (!this.review) await this.startReview(model);
      else this.review.modelChanged(model);
    } else {
      replace(this.reviewArea,
        stateNote(
          model.status === "failed" || model.status === "stopped"
            ? "This version has no predictions or statistics: its training did not complete."
            : "Predictions and statistics appear here when training completes.",
          "no-predictions",
          "empty",
        ),
      );
      if (model.status === "queued" || model.status === "training") this.timer = setTimeout(() => this.load(), POLL_MS);
    }
  }

  async startReview(model) {
    const signal = this.controller.signal;
    const base = versionPath(this.project, this.version);
    replace(this.reviewArea, stateNote("Loading predictions and statistics…", "loading"));
    // Both at once, each resolving to its value or its error (shown where it belongs).
    const [metrics, test] = await Promise.all([
      api(`${base}/metrics?sweep=true`, { signal }).catch((error) => error),
      loadImageList(base, "test", signal).catch((error) => error),
    ]);
    if (signal.aborted) return;
    this.review = new Review({
      area: this.reviewArea, project: this.project, model, metrics, test, signal,
      onSaved: (saved) => { this.model = saved; this.renderHeader(saved); },
    });
  }

  renderHeader(model) {
    replace(this.header,
      h("div", {},
        h("h1", { "data-testid": "version-title" }, model.label, " ", h("span", { class: "muted", text: `v${model.version}` })),
        h("p", { class: "meta" },
          statusBadge(model.status),
          model.active ? h("span", { class: "badge active", "data-testid": "active-badge", text: "active" }) : null,
          h("span", { class: "muted", text: `${model.model_type} · created ${format.date(model.created_at)}` }),
        ),
      ),
      h("div", { class: "toolbar" },
        activationButton({ ...model }, () => this.reload()),
      ),
    );
  }

  async reload() {
    try {
      const model = await api(versionPath(this.project, this.version), { signal: this.controller.signal });
      this.model = model;
      this.renderHeader(model);
      if (this.review) this.review.modelChanged(model);
    } catch (error) {
      if (!isAbort(error)) notice.show(error.message, "error");
    }
  }

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
    replace(this.status, ...parts);
  }
}

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
    if (progress.train_loss !== null && progress.train_loss !== undefined) bits.push(h("span", { class: "muted", text: ` · loss ${progress.train_loss.toFixed(3)}` }));
    if (progress.val_score !== null && progress.val_score !== undefined) bits.push(h("span", { class: "muted", text: ` · validation ${progress.val_score.toFixed(3)}` }));
  } else {
    bits.push(h("span", { text: "Starting up; progress appears after the first epoch." }));
  }
  return h("div", { class: "alert alert-info progress-box", "data-testid": "training-progress" },
    h("strong", { text: "Training. " }), ...bits);
}

// --- training details --------------------------------------------------------------------------

function fact(label, value, testid) {
  return h("div", { class: "fact" }, h("dt", { text: label }), h("dd", { "data-testid": testid, text: value }));
}

function detailsPanel(model) {
  const details = model.details || {};
  const request = model.request || {};
  const testSet = request.test_set || {};
  const strategy = testSet.strategy === "fraction"
    ? `${Math.round((testSet.fraction || 0) * 100)} % of images (seed ${testSet.seed ?? 0})`
    : testSet.strategy === "images" ? `${(testSet.images || []).length} chosen images` : "none";
  const estimate = details.estimate;
  const trained = format.duration(model.started_at, model.ended_at);
  const facts = h("dl", { class: "facts" },
    fact("Total images", format.count(details.total_images), "total-images"),
    fact("Included images", format.count(details.included_images), "included-images"),
    fact("Train images", format.count(details.train_images), "train-images"),
    fact("Test images", format.count(details.test_images), "test-images"),
    fact("Included annotations", format.count(details.included_annotations), "included-annotations"),
    fact("Dataset", model.dataset || details.dataset || "–", "dataset"),
    fact("Test set", strategy, "test-set"),
    fact("Model", [details.preset, details.tile_size ? `${details.tile_size} px tiles` : null, details.epochs ? `${details.epochs} epochs` : null].filter(Boolean).join(" · ") || model.model_type, "model-config"),
    estimate ? fact("Estimate", `${estimate.hours.toFixed(1)} h · $${estimate.cost_usd.toFixed(2)} on ${estimate.instance_type}${estimate.spot ? " (spot)" : ""}`, "estimate") : null,
    trained ? fact("Training time", trained, "training-time") : null,
  );
  const classRows = (details.classes || []).map((row) => {
    const index = model.classes.indexOf(row.name);
    const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
    swatch.style.backgroundColor = classColour(index < 0 ? 0 : index);
    return h("tr", { "data-class": row.name },
      h("th", { scope: "row" }, swatch, row.name),
      h("td", { class: "num", text: format.count(row.annotations) }),
      h("td", { class: "num", text: format.count(row.train) }),
      h("td", { class: "num", text: format.count(row.test) }),
      h("td", { class: "num", text: format.count(row.images) }));
  });
  const classes = h("table", { class: "grid compact", "data-testid": "class-counts" },
    h("caption", { text: "Included classes" }),
    h("thead", {}, h("tr", {}, ...["Class", "Annotations", "Train", "Test", "Images"].map((text, i) => h("th", { scope: "col", class: i ? "num" : "", text })))),
    h("tbody", {}, classRows.length ? classRows : h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No class counts recorded." }))));
  return h("section", { class: "panel", "aria-labelledby": "details-title", "data-testid": "training-details" },
    h("h2", { id: "details-title", text: "Training details" }),
    h("div", { class: "details-grid" }, facts, classes),
    issuesList(model),
    ignoredNote(details.ignored),
    historyList(model.status_history || []),
  );
}

function issuesList(model) {
  const issues = [];
  if (model.status === "failed" && model.failure_reason) {
    issues.push({ level: "error", code: "training_failed", message: model.failure_reason });
  }
  for (const warning of model.warnings || []) issues.push({ level: "warning", ...warning });
  if (!issues.length) return h("p", { class: "muted", "data-testid": "no-warnings", text: "No errors or warnings." });
  return h("ul", { class: "issues", "data-testid": "warnings", "aria-label": "Errors and warnings" },
    issues.map((issue) => h("li", { class: `issue issue-${issue.level}`, "data-code": issue.code },
      h("span", { class: "issue-level", text: issue.level === "error" ? "Error" : "Warning" }),
      h("code", { text: issue.code }),
      h("span", { class: "issue-message", text: issue.message }))));
}

function ignoredNote(ignored) {
  if (!ignored) return null;
  const parts = [];
  const excluded = Object.entries(ignored.excluded_classes || {});
  if (excluded.length) parts.push(`classes left out: ${excluded.map(([name, count]) => `${name} (${format.count(count)})`).join(", ")}`);
  if (ignored.unfinished_images) parts.push(`${plural(ignored.unfinished_images, "image")} not completed`);
  if (ignored.invalid_annotations) parts.push(`${plural(ignored.invalid_annotations, "broken annotation")} dropped`);
  if (ignored.images_held_out) parts.push(`${plural(ignored.images_held_out, "image")} held out with their group`);
  if (!parts.length) return null;
  return h("p", { class: "muted small", "data-testid": "ignored", text: `Ignored: ${parts.join("; ")}.` });
}

function historyList(history) {
  if (!history.length) return null;
  return h("details", { class: "history" },
    h("summary", { text: "Status history" }),
    h("ol", {}, history.map((change) => h("li", {},
      statusBadge(change.status), " ", format.date(change.at), change.reason ? ` — ${change.reason}` : ""))));
}

// --- images of one split -----------------------------------------------------------------------

async function loadImageList(base, split, signal) {
  const images = [];
  let total = Infinity;
  while (images.length < total) {
    const page = await api(`${base}/predictions?split=${split}&offset=${images.length}&limit=${PAGE_LIMIT}`, { signal });
    total = page.total;
    images.push(...page.images);
    if (!page.images.length) break;
  }
  return { split, total: images.length, images };
}

/** An image's objects, prepared once: outlines as Path2D in image pixels, sorted by score. */
function prepareObjects(predictions, classes) {
  const known = new Map(classes.map((name, index) => [name, index]));
  const objects = predictions.objects.map((object) => {
    const path = new Path2D();
    for (const ring of object.segmentation || []) {
      if (ring.length < 6) continue;
      path.moveTo(ring[0], ring[1]);
      for (let i = 2; i < ring.length; i += 2) path.lineTo(ring[i], ring[i + 1]);
      path.closePath();
    }
    const [x, y, w, h] = object.bbox;
    if (!known.has(object.category)) known.set(object.category, known.size);
    return { category: object.category, score: object.score, path, box: [x, y, x + w, y + h], colour: classColour(known.get(object.category)) };
  });
  objects.sort((a, b) => b.score - a.score);
  return { width: predictions.width, height: predictions.height, objects };
}

// --- the review: viewer, threshold and statistics ----------------------------------------------

class Review {
  constructor({ area, project, model, metrics, test, signal, onSaved }) {
    this.project = project;
    this.model = model;
    this.signal = signal;
    this.onSaved = onSaved;
    this.base = versionPath(project, model.version);
    this.lists = { test: test instanceof Error ? null : test, train: null };
    this.metrics = metrics instanceof Error ? null : metrics;
    this.classes = [...model.classes];
    this.enabled = new Set(this.classes);
    this.showOutlines = true;
    this.saved = model.analysis_threshold;
    this.threshold = snap(model.analysis_threshold ?? model.suggested_threshold ?? 0.5);
    this.firstRender = { image: false, stats: false, marked: false };
    delete document.body.dataset.firstRender;
    this.split = this.lists.test && this.lists.test.total === 0 ? "train" : "test";
    this.viewer = new Viewer({ review: this, signal });
    this.stats = new StatsPanel({ review: this, metrics: this.metrics, error: metrics instanceof Error ? metrics : null });
    replace(area,
      h("section", { class: "panel", "aria-labelledby": "qualitative-title", "data-testid": "qualitative" },
        h("h2", { id: "qualitative-title", text: "Qualitative performance" }),
        h("div", { class: "review-grid" }, this.viewer.element, this.controls()),
      ),
      this.stats.element,
    );
    this.updateSplitLabels();
    this.stats.update(this.threshold);
    this.viewer.showSplit(this.split);
    if (this.split === "test") this.prefetchList("train");
  }

  destroy() {
    this.viewer.destroy();
    if (this.resizeTicks) this.resizeTicks.disconnect();
  }

  modelChanged(model) {
    this.model = model;
    this.saved = model.analysis_threshold;
    this.refreshSaved();
    this.stats.update(this.threshold);
  }

  async list(split) {
    if (this.lists[split]) return this.lists[split];
    if (!this.listPromises) this.listPromises = {};
    if (!this.listPromises[split]) {
      this.listPromises[split] = loadImageList(this.base, split, this.signal).then(
        (list) => { this.lists[split] = list; this.updateSplitLabels(); return list; },
        (error) => { this.listPromises[split] = null; throw error; },
      );
    }
    return this.listPromises[split];
  }

  prefetchList(split) {
    const idle = window.requestIdleCallback || ((fn) => setTimeout(fn, 300));
    idle(() => this.list(split).catch(() => {}));
  }

  markRendered(part) {
    this.firstRender[part] = true;
    if (this.firstRender.image && this.firstRender.stats && !this.firstRender.marked) {
      this.firstRender.marked = true;
      performance.mark("segpipe:first-render");
      document.body.dataset.firstRender = "done";
    }
  }

  // ---- controls: split, threshold, classes, outlines

  controls() {
    const splitCount = (split) => {
      const list = this.lists[split];
      if (list) return ` (${format.count(list.total)})`;
      const fromMetrics = this.metrics && this.metrics[split];
      return fromMetrics ? ` (${format.count(fromMetrics.images)})` : "";
    };
    this.splitLabels = {};
    this.splitInputs = {};
    const splitOption = (split, text) => {
      const input = h("input", {
        type: "radio", name: "split", id: `split-${split}`, value: split, "data-testid": `split-${split}`,
        checked: this.split === split,
        onchange: () => this.setSplit(split),
      });
      this.splitInputs[split] = input;
      this.splitLabels[split] = h("label", { for: `split-${split}` }, text, h("span", { class: "muted", text: splitCount(split) }));
      return h("span", { class: "segment" }, input, this.splitLabels[split]);
    };
    const toggle = h("fieldset", { class: "segmented", "data-testid": "split-toggle" },
      h("legend", { text: "Images" }), splitOption("test", "Test images"), splitOption("train", "Train images"));

    this.slider = h("input", {
      type: "range", id: "threshold", min: GRID_MIN, max: GRID_MAX, step: GRID_STEP, value: this.threshold.toFixed(2),
      "data-testid": "threshold-slider", "aria-describedby": "threshold-help",
      oninput: () => this.onSlider(),
    });
    this.thresholdOut = h("output", { for: "threshold", "data-testid": "threshold-value", text: this.threshold.toFixed(2) });
    this.suggestedTick = h("span", { class: "tick tick-suggested", title: "Suggested threshold", "aria-hidden": "true" });
    this.savedTick = h("span", { class: "tick tick-saved", title: "Analysis threshold", "aria-hidden": "true" });
    const suggested = this.model.suggested_threshold;
    this.savedText = h("strong", { "data-testid": "analysis-threshold" });
    this.saveStatus = h("span", { class: "save-status", "data-testid": "threshold-status", role: "status", "aria-live": "polite" });
    this.saveButton = h("button", { type: "button", "data-testid": "save-threshold", onclick: () => this.saveThreshold() }, "Update analysis threshold");
    const thresholdBox = h("div", { class: "control-block threshold-box" },
      h("div", { class: "threshold-label" }, h("label", { for: "threshold", text: "Score threshold" }), this.thresholdOut),
      h("div", { class: "slider-wrap" }, this.slider, this.suggestedTick, this.savedTick),
      h("p", { id: "threshold-help", class: "muted small", text: "Objects scored below the threshold are hidden." }),
      h("p", { class: "small", "data-testid": "suggested" },
        h("span", { class: "legend-dot dot-suggested", "aria-hidden": "true" }),
        "Suggested: ",
        suggested === null || suggested === undefined
          ? h("span", { "data-testid": "suggested-threshold", text: "none" })
          : h("button", { type: "button", class: "link", "data-testid": "suggested-threshold", title: "Move the slider to the suggested threshold", onclick: () => this.setThreshold(snap(suggested)) }, format.threshold(suggested)),
        h("span", { class: "muted", text: ` (best ${this.model.model_type === "semantic" ? "mean IoU" : "F1"} on ${this.metrics && this.metrics.test ? "test" : "train"})` }),
      ),
      h("p", { class: "small" }, h("span", { class: "legend-dot dot-saved", "aria-hidden": "true" }), "Analysis threshold: ", this.savedText, " ", this.saveStatus),
      this.saveButton,
    );

    this.classChecks = h("div", { class: "class-list" }, this.classes.map((name, index) => {
      const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
      swatch.style.backgroundColor = classColour(index);
      const count = h("span", { class: "muted small class-count", "data-testid": "class-count", "data-class": name, title: "Objects of this class drawn on this image" });
      const input = h("input", {
        type: "checkbox", value: name, checked: true, "data-testid": "class-toggle", "data-class": name,
        onchange: (event) => {
          if (event.target.checked) this.enabled.add(name);
          else this.enabled.delete(name);
          this.viewer.redraw();
        },
      });
      return h("label", { class: "check class-check" }, input, swatch, h("span", { text: name }), count);
    }));
    const outlines = h("input", {
      type: "checkbox", checked: true, "data-testid": "show-outlines",
      onchange: (event) => { this.showOutlines = event.target.checked; this.viewer.redraw(); },
    });
    const classBox = h("fieldset", { class: "control-block", "data-testid": "class-selector" },
      h("legend", { text: "Classes" }), this.classChecks,
      h("label", { class: "check" }, outlines, " Show outlines"));

    queueMicrotask(() => { this.refreshSaved(); this.placeTicks(); });
    this.resizeTicks = new ResizeObserver(() => this.placeTicks());
    this.resizeTicks.observe(this.slider);
    return h("div", { class: "controls", "data-testid": "controls" }, toggle, thresholdBox, classBox);
  }

  updateSplitLabels() {
    for (const split of ["test", "train"]) {
      const list = this.lists[split];
      const label = this.splitLabels && this.splitLabels[split];
      if (!label) continue;
      const count = label.querySelector("span");
      if (list && count) count.textContent = ` (${format.count(list.total)})`;
      if (list && list.total === 0) {
        this.splitInputs[split].disabled = true;
        label.title = split === "test" ? "This version has no test set" : "No training images were evaluated";
      }
    }
  }

  /** Place the suggested and saved ticks under the slider track (thumb is 18 px wide; see app.css). */
  placeTicks() {
    const width = this.slider.clientWidth;
    const place = (tick, value) => {
      if (value === null || value === undefined) { tick.hidden = true; return; }
      const fraction = (snap(value) - GRID_MIN) / (GRID_MAX - GRID_MIN);
      tick.hidden = false;
      tick.style.left = `${9 + fraction * (width - 18)}px`;
    };
    place(this.suggestedTick, this.model.suggested_threshold);
    place(this.savedTick, this.saved);
  }

  setSplit(split) {
    if (split === this.split) return;
    this.split = split;
    this.splitInputs[split].checked = true;
    this.viewer.showSplit(split);
  }

  onSlider() {
    const start = performance.now();
    this.threshold = snap(this.slider.value);
    this.applyThreshold();
    performance.clearMeasures("segpipe:slider-update"); // keep only the latest
    performance.measure("segpipe:slider-update", { start, end: performance.now() });
  }

  setThreshold(value) {
    this.slider.value = value.toFixed(2);
    this.onSlider();
  }

  applyThreshold() {
    this.thresholdOut.textContent = this.threshold.toFixed(2);
    this.viewer.redraw();
    this.stats.update(this.threshold);
    this.refreshSaved();
  }

  refreshSaved() {
    this.savedText.textContent = format.threshold(this.saved);
    const clean = sameThreshold(this.saved, this.threshold);
    this.saveButton.disabled = clean || this.saving;
    if (!this.saving && !this.justSaved) {
      this.saveStatus.textContent = clean ? "" : `Slider at ${this.threshold.toFixed(2)}, not saved.`;
      this.saveStatus.className = clean ? "save-status" : "save-status dirty";
    }
    this.justSaved = false;
    this.placeTicks();
  }

  async saveThreshold() {
    const value = Number(this.threshold.toFixed(2));
    this.saving = true;
    this.saveButton.disabled = true;
    this.saveStatus.textContent = "Saving…";
    this.saveStatus.className = "save-status";
    try {
      const saved = await api(`${this.base}/threshold`, { method: "PUT", body: { threshold: value }, signal: this.signal });
      this.saving = false;
      this.saved = saved.analysis_threshold;
      this.model = saved;
      this.justSaved = true;
      this.saveStatus.textContent = `Saved: analysis threshold is now ${format.threshold(saved.analysis_threshold)}.`;
      this.saveStatus.className = "save-status saved";
      this.saveStatus.dataset.saved = format.threshold(saved.analysis_threshold);
      this.refreshSaved();
      this.stats.update(this.threshold);
      if (this.onSaved) this.onSaved(saved);
    } catch (error) {
      this.saving = false;
      if (isAbort(error)) return;
      this.saveStatus.textContent = `Not saved: ${error.message}`;
      this.saveStatus.className = "save-status failed";
      this.saveButton.disabled = false;
    }
  }

  updateClassCounts(perClass) {
    for (const element of this.classChecks.querySelectorAll("[data-testid=class-count]")) {
      const name = element.dataset.class;
      element.textContent = perClass ? format.count(perClass.get(name) || 0) : "";
    }
  }
}

// --- the image viewer --------------------------------------------------------------------------

class Viewer {
  constructor({ review, signal }) {
    this.review = review;
    this.signal = signal;
    this.index = 0;
    this.positions = { test: 0, train: 0 };
    this.cache = new Map();
    this.previews = new Map();
    this.token = 0;
    this.current = null; // { entry, prepared, image }
    this.base = h("canvas", { class: "layer layer-image", "data-testid": "image-canvas" });
    this.overlay = h("canvas", { class: "layer layer-outlines", "data-testid": "overlay", role: "img", "aria-label": "Image with predicted outlines" });
    this.tooltip = h("div", { class: "tooltip", "data-testid": "tooltip", hidden: true });
    this.note = h("div", { class: "stage-note", "data-testid": "stage-note", text: "Loading…" });
    this.stage = h("div", {
      class: "stage", tabindex: 0, "data-testid": "stage",
      "aria-label": "Prediction viewer. Use the left and right arrow keys to step through images.",
    }, this.base, this.overlay, this.note, this.tooltip);
    this.counter = h("span", { class: "counter", "data-testid": "image-counter", "aria-live": "polite", text: "– / –" });
    this.prev = h("button", { type: "button", class: "secondary", "data-testid": "prev", "aria-label": "Previous image", onclick: () => this.step(-1) }, "‹ Prev");
    this.next = h("button", { type: "button", class: "secondary", "data-testid": "next", "aria-label": "Next image", onclick: () => this.step(1) }, "Next ›");
    this.name = h("span", { class: "file-name", "data-testid": "image-name" });
    this.drawn = h("strong", { "data-testid": "objects-drawn", text: "0" });
    this.total = h("span", { "data-testid": "objects-total", text: "0" });
    this.element = h("div", { class: "viewer", "data-testid": "viewer", "data-state": "loading" },
      h("div", { class: "viewer-bar" }, this.prev, this.counter, this.next, this.name),
      this.stage,
      h("p", { class: "viewer-caption" }, this.drawn, " of ", this.total, " objects drawn", h("span", { class: "muted", "data-testid": "image-size" })),
      h("p", { class: "muted small", text: "Keys: ← → step through images. Hover an outline to see its class and score." }),
    );
    this.onKey = (event) => this.keydown(event);
    document.addEventListener("keydown", this.onKey);
    this.overlay.addEventListener("pointermove", (event) => this.hover(event));
    this.overlay.addEventListener("pointerleave", () => { this.tooltip.hidden = true; });
    // Lay out again when the viewer gets wider or narrower, or the window taller or shorter.
    this.width = 0;
    this.resizer = new ResizeObserver((entries) => {
      const width = Math.round(entries[entries.length - 1].contentRect.width);
      if (width !== this.width) { this.width = width; this.layout(); }
    });
    this.resizer.observe(this.element);
    this.onResize = () => this.layout();
    window.addEventListener("resize", this.onResize);
  }

  destroy() {
    document.removeEventListener("keydown", this.onKey);
    window.removeEventListener("resize", this.onResize);
    this.resizer.disconnect();
  }

  keydown(event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    const tag = target && target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    // Text fields, sliders and radio groups use the arrow keys themselves.
    if (tag === "INPUT" && !["checkbox", "button"].includes(target.type)) return;
    if (event.key === "ArrowLeft") { this.step(-1); event.preventDefault(); }
    else if (event.key === "ArrowRight") { this.step(1); event.preventDefault(); }
  }

  setState(state) {
    this.element.dataset.state = state;
  }

  async showSplit(split) {
    this.token += 1; // whatever the other split was loading is no longer wanted
    this.split = split;
    this.list = null;
    this.setState("loading");
    this.clear("Loading images…");
    let list;
    try {
      list = await this.review.list(split);
    } catch (error) {
      if (isAbort(error) || split !== this.split) return;
      this.setState("error");
      this.clear(`The ${split} images could not be loaded: ${error.message}`);
      return;
    }
    if (split !== this.split) return;
    this.list = list;
    this.element.dataset.split = split;
    if (!list.total) {
      this.setState("empty");
      this.counter.textContent = "0 / 0";
      this.name.textContent = "";
      this.updateButtons();
      this.clear(split === "test" ? "This version has no test images." : "No training images were evaluated.");
      this.review.markRendered("image");
      return;
    }
    this.show(Math.min(this.positions[split] || 0, list.total - 1));
  }

  step(delta) {
    if (!this.list || !this.list.total) return;
    const target = Math.min(this.list.total - 1, Math.max(0, this.index + delta));
    if (target !== this.index) this.show(target);
  }

  updateButtons() {
    const total = this.list ? this.list.total : 0;
    this.prev.disabled = !total || this.index <= 0;
    this.next.disabled = !total || this.index >= total - 1;
  }

  async show(index) {
    const token = ++this.token;
    const entry = this.list.images[index];
    this.index = index;
    this.positions[this.split] = index;
    this.counter.textContent = `${index + 1} / ${this.list.total}`;
    this.name.textContent = entry.file_name;
    this.name.title = entry.file_name;
    this.element.dataset.index = String(index);
    this.element.dataset.stem = entry.stem;
    this.updateButtons();
    this.setState("loading");
    this.note.textContent = "Loading…";
    this.note.hidden = false;
    let prepared;
    let image;
    try {
      [prepared, image] = await Promise.all([this.objects(entry), this.preview(entry)]);
      if (!image && entry.preview_url && token === this.token) image = await this.renewPreview(index);
    } catch (error) {
      if (isAbort(error) || token !== this.token) return;
      this.setState("error");
      this.clear(`This image could not be loaded: ${error.message}`);
      return;
    }
    if (token !== this.token) return;
    this.current = { entry, prepared, image };
    this.total.textContent = format.count(prepared.objects.length);
    this.note.hidden = !!image;
    if (!image) this.note.textContent = "No preview for this image; outlines are drawn on a blank background.";
    this.layout();
    this.setState("ready");
    this.review.markRendered("image");
    this.prefetch(index);
  }

  clear(message) {
    this.current = null;
    this.note.textContent = message;
    this.note.hidden = false;
    this.drawn.textContent = "0";
    this.total.textContent = "0";
    this.review.updateClassCounts(null);
    for (const canvas of [this.base, this.overlay]) {
      canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
    }
  }

  objects(entry) {
    const key = `${this.split}/${entry.stem}`;
    if (this.cache.has(key)) {
      const hit = this.cache.get(key);
      this.cache.delete(key);
      this.cache.set(key, hit); // most recently used last
      return hit;
    }
    const pending = api(entry.predictions_url, { signal: this.signal }).then(
      (predictions) => prepareObjects(predictions, this.review.classes),
      (error) => { this.cache.delete(key); throw error; },
    );
    this.cache.set(key, pending);
    while (this.cache.size > PREDICTION_CACHE) this.cache.delete(this.cache.keys().next().value);
    return pending;
  }

  /** The decoded preview, or null when there is none (or it cannot be loaded). */
  preview(entry) {
    if (!entry.preview_url) return Promise.resolve(null);
    if (this.previews.has(entry.preview_url)) return this.previews.get(entry.preview_url);
    const image = new Image();
    image.decoding = "async";
    const loading = new Promise((resolve) => {
      image.onload = () => resolve(image);
      image.onerror = () => { this.previews.delete(entry.preview_url); resolve(null); };
    });
    image.src = entry.preview_url;
    this.previews.set(entry.preview_url, loading);
    while (this.previews.size > PREDICTION_CACHE) this.previews.delete(this.previews.keys().next().value);
    return loading;
  }

  /** Preview URLs are presigned and expire: ask for this image's entry again, once, and retry. */
  async renewPreview(index) {
    const entry = this.list.images[index];
    if (entry.renewed) return null;
    const page = await api(`${this.review.base}/predictions?split=${this.split}&offset=${index}&limit=1`, { signal: this.signal });
    const fresh = page.images[0];
    if (!fresh || fresh.stem !== entry.stem) return null;
    this.list.images[index] = { ...fresh, renewed: true };
    return fresh.preview_url ? this.preview(fresh) : null;
  }

  prefetch(index) {
    for (const neighbour of [index + 1, index - 1]) {
      const entry = this.list && this.list.images[neighbour];
      if (!entry) continue;
      this.objects(entry).catch(() => {});
      this.preview(entry);
    }
  }

  /** Size the stage to the image's aspect ratio within the viewer, then draw both layers. */
  layout() {
    if (!this.current) return;
    const { width, height } = this.current.prepared;
    const available = Math.max(120, this.stage.parentElement.clientWidth);
    const maxHeight = Math.max(200, window.innerHeight * 0.68);
    const displayWidth = Math.min(available, (maxHeight * width) / height);
    const displayHeight = (displayWidth * height) / width;
    this.stage.style.width = `${Math.round(displayWidth)}px`;
    this.stage.style.height = `${Math.round(displayHeight)}px`;
    const ratio = window.devicePixelRatio || 1;
    for (const canvas of [this.base, this.overlay]) {
      canvas.width = Math.round(displayWidth * ratio);
      canvas.height = Math.round(displayHeight * ratio);
    }
    this.element.querySelector("[data-testid=image-size]").textContent = ` · ${width} × ${height} px`;
    this.drawImage();
    this.redraw();
  }

  drawImage() {
    const context = this.base.getContext("2d");
    context.fillStyle = "#0b0f14";
    context.fillRect(0, 0, this.base.width, this.base.height);
    const image = this.current && this.current.image;
    if (!image) return;
    context.imageSmoothingQuality = "high";
    context.drawImage(image, 0, 0, this.base.width, this.base.height);
  }

  /** Draw the outlines of the objects at or above the threshold, of the selected classes. */
  redraw() {
    const context = this.overlay.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    if (!this.current) return;
    const { prepared } = this.current;
    const review = this.review;
    const threshold = review.threshold - 1e-9;
    const scale = this.overlay.width / prepared.width; // image pixels -> canvas pixels
    const ratio = window.devicePixelRatio || 1;
    context.setTransform(scale, 0, 0, scale, 0, 0);
    context.lineJoin = "round";
    const visible = [];
    const perClass = new Map();
    for (const object of prepared.objects) {
      if (object.score < threshold) break; // sorted by score: the rest are lower
      if (!review.enabled.has(object.category)) continue;
      visible.push(object);
      perClass.set(object.category, (perClass.get(object.category) || 0) + 1);
    }
    if (review.showOutlines) {
      context.lineWidth = (3.5 * ratio) / scale;
      context.strokeStyle = "rgba(0, 0, 0, 0.55)";
      for (const object of visible) context.stroke(object.path);
      context.lineWidth = (1.6 * ratio) / scale;
      for (const object of visible) {
        context.strokeStyle = object.colour;
        context.stroke(object.path);
      }
    }
    this.visible = review.showOutlines ? visible : [];
    this.drawn.textContent = String(this.visible.length);
    this.overlay.setAttribute("aria-label", `${this.current.entry.file_name}: ${this.visible.length} predicted outlines drawn`);
    review.updateClassCounts(review.showOutlines ? perClass : new Map());
  }

  hover(event) {
    if (!this.current || !this.visible || !this.visible.length) { this.tooltip.hidden = true; return; }
    const ratio = window.devicePixelRatio || 1;
    const x = event.offsetX * ratio;
    const y = event.offsetY * ratio;
    const scale = this.overlay.width / this.current.prepared.width;
    const ix = x / scale;
    const iy = y / scale;
    const context = this.overlay.getContext("2d");
    let found = null;
    for (const object of this.visible) {
      const [x0, y0, x1, y1] = object.box;
      if (ix < x0 || ix > x1 || iy < y0 || iy > y1) continue;
      if (context.isPointInPath(object.path, x, y)) { found = object; break; }
    }
    if (!found) { this.tooltip.hidden = true; return; }
    this.tooltip.textContent = `${found.category} · ${found.score.toFixed(2)}`;
    this.tooltip.style.left = `${event.offsetX + 12}px`;
    this.tooltip.style.top = `${event.offsetY + 12}px`;
    this.tooltip.hidden = false;
  }
}

// --- statistics --------------------------------------------------------------------------------

class StatsPanel {
  constructor({ review, metrics, error }) {
    this.review = review;
    this.metrics = metrics;
    this.caption = h("p", { class: "stats-caption", "data-testid": "stats-threshold" });
    this.element = h("section", { class: "panel", "aria-labelledby": "stats-title", "data-testid": "statistics" },
      h("div", { class: "panel-head" },
        h("h2", { id: "stats-title", text: "Statistical performance" })),
      this.caption);
    if (error || !metrics || (!metrics.test && !metrics.train)) {
      this.element.append(error ? errorBox(error, "The statistics could not be loaded.") : stateNote("No statistics were recorded for this version.", "no-statistics", "empty"));
      this.cells = [];
      review.markRendered("stats");
      return;
    }
    this.splits = ["test", "train"].filter((split) => metrics[split]);
    this.indexes = Object.fromEntries(this.splits.map((split) => [split, sweepIndex(metrics[split].sweep || [metrics[split].at])]));
    this.rows = [OVERALL, ...metrics.classes];
    this.columns = STAT_COLUMNS.filter((column) => this.hasValues(column));
    const more = h("input", {
      type: "checkbox", "data-testid": "stats-more",
      onchange: (event) => this.table.classList.toggle("show-extra", event.target.checked),
    });
    const hasExtra = this.columns.some((column) => column.extra);
    this.table = this.buildTable();
    this.plot = new ThresholdPlot({ review, metrics });
    if (hasExtra) {
      this.element.querySelector(".panel-head").append(
        h("label", { class: "check small" }, more, " More columns (matched IoU, TP, FP, FN)"));
    }
    this.element.append(
      h("div", { class: "stats-layout" },
        h("div", { class: "table-scroll" }, this.table),
        this.plot.element),
      h("p", { class: "muted small", text: "Figures at the slider's threshold, from the sweep computed at the end of training. AP does not depend on the threshold. Train figures are measured on images the model learned from." }),
    );
  }

  hasValues(column) {
    return this.splits.some((split) => {
      const data = this.metrics[split];
      if (column.ap) {
        if (data.ap_overall && data.ap_overall[column.key] !== null && data.ap_overall[column.key] !== undefined) return true;
        return Object.values(data.ap_per_class || {}).some((ap) => ap[column.key] !== null && ap[column.key] !== undefined);
      }
      return (data.sweep || [data.at]).some((point) =>
        (point.overall && point.overall[column.key] !== null && point.overall[column.key] !== undefined));
    });
  }

  buildTable() {
    const metrics = this.metrics;
    const head1 = h("tr", {}, h("th", { scope: "col", rowspan: 2, text: "Class" }));
    const head2 = h("tr", {});
    for (const column of this.columns) {
      head1.append(h("th", { scope: "colgroup", colspan: this.splits.length, class: `group ${column.extra ? "extra" : ""}`, title: column.title || null, text: column.label }));
      for (const split of this.splits) {
        head2.append(h("th", { scope: "col", class: `num sub sub-${split} ${column.extra ? "extra" : ""}`, text: split === "test" ? "Test" : "Train" }));
      }
    }
    this.cells = [];
    const body = h("tbody", {});
    for (const row of this.rows) {
      const index = metrics.classes.indexOf(row);
      const label = row === OVERALL ? h("span", { text: "Overall" }) : h("span", {}, (() => {
        const swatch = h("span", { class: "swatch", "aria-hidden": "true" });
        swatch.style.backgroundColor = classColour(index);
        return swatch;
      })(), row);
      const suggested = row === OVERALL ? metrics.suggested_threshold : (metrics.suggested_thresholds || {})[row];
      const tr = h("tr", { class: row === OVERALL ? "overall" : "", "data-row": row },
        h("th", { scope: "row" }, label,
          suggested !== null && suggested !== undefined
            ? h("span", { class: "suggested-note", title: "Suggested threshold for this row", text: `suggested ${format.threshold(suggested)}` })
            : null));
      for (const column of this.columns) {
        for (const split of this.splits) {
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

  update(threshold) {
    const metrics = this.metrics;
    const suggested = metrics ? metrics.suggested_threshold : null;
    const atSuggested = sameThreshold(snap(suggested ?? -1), threshold);
    const atSaved = sameThreshold(this.review.saved, threshold);
    replace(this.caption,
      "At score threshold ",
      h("strong", { "data-testid": "stats-threshold-value", text: threshold.toFixed(2) }),
      atSuggested ? h("span", { class: "badge suggested", "data-testid": "stats-suggested", text: "suggested" }) : null,
      atSaved ? h("span", { class: "badge saved", text: "analysis threshold" }) : null,
      suggested !== null && suggested !== undefined && !atSuggested
        ? h("span", { class: "muted", text: ` · suggested ${format.threshold(suggested)}` }) : null,
    );
    if (!this.cells.length) return;
    const points = Object.fromEntries(this.splits.map((split) => [split, pointAt(metrics[split], this.indexes[split], threshold)]));
    for (const { cell, split, row, column } of this.cells) {
      const value = this.value(split, points[split], row, column);
      cell.textContent = format[column.kind](value);
      cell.dataset.value = value === null || value === undefined ? "" : String(value);
    }
    if (this.plot) this.plot.update(threshold);
    this.review.markRendered("stats");
  }

  value(split, point, row, column) {
    if (column.ap) {
      const data = this.metrics[split];
      const ap = row === OVERALL ? data.ap_overall : (data.ap_per_class || {})[row];
      return ap ? ap[column.key] : null;
    }
    if (!point) return null;
    const metrics = row === OVERALL ? point.overall : (point.per_class || {})[row];
    return metrics ? metrics[column.key] : null;
  }
}

/** Map each slider value to its nearest sweep point, once. */
function sweepIndex(sweep) {
  const index = new Map();
  for (let t = GRID_MIN; t <= GRID_MAX + 1e-9; t += GRID_STEP) {
    const key = snap(t).toFixed(2);
    let best = null;
    for (const point of sweep) {
      if (!best || Math.abs(point.threshold - t) < Math.abs(best.threshold - t)) best = point;
    }
    index.set(key, best);
  }
  return index;
}

function pointAt(splitMetrics, index, threshold) {
  if (!splitMetrics) return null;
  return index.get(snap(threshold).toFixed(2)) || splitMetrics.at;
}

// --- the precision / recall / F1 plot ----------------------------------------------------------

class ThresholdPlot {
  constructor({ review, metrics }) {
    this.review = review;
    this.split = metrics.test ? "test" : "train";
    this.sweep = (metrics[this.split].sweep || []).slice().sort((a, b) => a.threshold - b.threshold);
    this.series = PLOT_SERIES[metrics.model_type] || PLOT_SERIES.instance;
    this.suggested = metrics.suggested_threshold;
    this.size = { width: 460, height: 280, left: 40, right: 14, top: 30, bottom: 40 };
    this.svg = s("svg", {
      viewBox: `0 0 ${this.size.width} ${this.size.height}`, class: "plot", "data-testid": "stats-plot",
      role: "img", "aria-label": `${this.series.map((item) => item.label).join(", ")} against the score threshold, ${this.split} split`,
    });
    this.element = h("figure", { class: "plot-figure" },
      this.svg,
      h("figcaption", { class: "small muted", text: `${this.series.map((item) => item.label).join(", ")} against the score threshold (${this.split} split${this.split === "train" ? ": no test set" : ""}). Click to move the threshold.` }));
    this.draw();
    this.svg.addEventListener("click", (event) => this.click(event));
  }

  x(threshold) {
    const { left, right, width } = this.size;
    return left + ((threshold - 0) / 1) * (width - left - right);
  }

  y(value) {
    const { top, bottom, height } = this.size;
    return top + (1 - value) * (height - top - bottom);
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
    const lines = s("g", { class: "plot-lines" });
    for (const series of this.series) {
      let d = "";
      let pen = false;
      for (const point of this.sweep) {
        const value = point.overall ? point.overall[series.key] : null;
        if (value === null || value === undefined) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${this.x(point.threshold).toFixed(1)},${this.y(value).toFixed(1)}`;
        pen = true;
      }
      if (d) lines.append(s("path", { d, fill: "none", stroke: series.colour, "stroke-width": series.wide ? 2.6 : 1.8, "data-series": series.key }));
    }
    const legend = s("g", { class: "plot-legend" });
    this.series.forEach((series, i) => {
      const x = left + i * 100;
      const y = 12;
      legend.append(s("line", { x1: x, x2: x + 18, y1: y, y2: y, stroke: series.colour, "stroke-width": series.wide ? 2.6 : 1.8 }));
      legend.append(s("text", { x: x + 24, y: y + 4, class: "plot-label", text: series.label }));
    });
    const suggested = this.suggested === null || this.suggested === undefined ? null : s("g", { class: "plot-suggested", "data-testid": "plot-suggested" },
      s("line", { x1: this.x(this.suggested), x2: this.x(this.suggested), y1: top, y2: height - bottom }),
      s("text", { x: this.x(this.suggested) + 4, y: top + 10, class: "plot-label", text: `suggested ${this.suggested.toFixed(2)}` }));
    this.marker = s("g", { class: "plot-marker", "data-testid": "plot-marker" });
    this.svg.append(grid, lines, suggested, this.marker, legend);
  }

  update(threshold) {
    const { top, height, bottom } = this.size;
    const x = this.x(threshold);
    const point = this.sweep.reduce((best, p) => (!best || Math.abs(p.threshold - threshold) < Math.abs(best.threshold - threshold) ? p : best), null);
    const dots = this.series.map((series) => {
      const value = point && point.overall ? point.overall[series.key] : null;
      return value === null || value === undefined ? null : s("circle", { cx: x, cy: this.y(value), r: 3.6, fill: series.colour, stroke: "#fff", "stroke-width": 1.2 });
    });
    replace(this.marker,
      s("line", { x1: x, x2: x, y1: top, y2: height - bottom }),
      ...dots,
      s("text", { x: x + 4, y: height - bottom - 6, class: "plot-label strong", text: threshold.toFixed(2) }),
    );
    this.marker.dataset.threshold = threshold.toFixed(2);
  }

  click(event) {
    const box = this.svg.getBoundingClientRect();
    const scale = this.size.width / box.width;
    const x = (event.clientX - box.left) * scale;
    const threshold = (x - this.size.left) / (this.size.width - this.size.left - this.size.right);
    this.review.setThreshold(snap(threshold));
  }
}

// --- start -------------------------------------------------------------------------------------

setupProjectForm();
window.addEventListener("hashchange", route);
route();
