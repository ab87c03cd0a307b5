// @ts-check
// The image viewer: a preview image under a canvas of outlines, stepped through with buttons or
// the arrow keys. It is told what to draw (`setFilter`) and reports back through callbacks. It
// shows one of several image lists at a time, named by a key: a version's splits ("test",
// "train") on the version page, an analysis's images ("images") on the analysis page; where the
// lists and each image's objects come from is the caller's (`loadList`, `loadObjects`).
/** @import { ImagePredictions, ViewerEntry, ViewerList } from "./types.js" */
/** @import { DrawFilter, PreparedImage, PreparedObject } from "./objects.js" */

import { isAbort, messageOf } from "./api.js";
import { h } from "./dom.js";
import { count } from "./format.js";
import { objectAt, prepareObjects, visibleObjects } from "./objects.js";

/** Prepared images and decoded previews kept (most recently used). */
const CACHE_SIZE = 64;

/** @typedef {PreparedImage<Path2D> & {previewUrl: string | null}} Prepared */
/** @typedef {{entry: ViewerEntry, prepared: Prepared, image: HTMLImageElement | null}} Shown */

/**
 * @typedef {object} ViewerOptions
 * @property {AbortSignal} signal
 * @property {readonly string[]} classes the version's classes (colours)
 * @property {DrawFilter} filter what to draw at first
 * @property {(key: string) => Promise<ViewerList>} loadList the images of a list
 * @property {(entry: ViewerEntry) => Promise<ImagePredictions & {preview_url?: string | null}>} loadObjects
 *   an image's objects (and its preview URL, when the listing's entry has none)
 * @property {(key: string, index: number) => Promise<ViewerEntry | undefined>} fetchEntry
 *   the listing's entry at `index` again (fresh preview URL)
 * @property {(key: string) => string} emptyText what the stage says for a list without images
 * @property {() => void} onRendered an image (or the empty state) is on screen
 * @property {(perClass: Map<string, number> | null) => void} onCounts objects drawn per class
 */

/**
 * @template K, V
 * @param {Map<K, V>} cache
 */
function trim(cache) {
  while (cache.size > CACHE_SIZE) cache.delete(/** @type {K} */ (cache.keys().next().value));
}

export class Viewer {
  /** @param {ViewerOptions} options */
  constructor(options) {
    this.options = options;
    this.filter = options.filter;
    /** The list shown (its key). */
    this.split = "";
    /** @type {ViewerList | null} */
    this.list = null;
    this.index = 0;
    /** @type {Record<string, number>} where each list was left */
    this.positions = {};
    /** @type {Map<string, Promise<Prepared>>} */
    this.cache = new Map();
    /** @type {Map<string, Promise<HTMLImageElement | null>>} */
    this.previews = new Map();
    this.token = 0;
    /** @type {Shown | null} */
    this.current = null;
    /** @type {PreparedObject<Path2D>[]} */
    this.visible = [];
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
    this.size = h("span", { class: "muted", "data-testid": "image-size" });
    this.element = h("div", { class: "viewer", "data-testid": "viewer", "data-state": "loading" },
      h("div", { class: "viewer-bar" }, this.prev, this.counter, this.next, this.name),
      this.stage,
      h("p", { class: "viewer-caption" }, this.drawn, " of ", this.total, " objects drawn", this.size),
      h("p", { class: "muted small", text: "Keys: ← → step through images. Hover an outline to see its class and score." }),
    );
    /** @param {KeyboardEvent} event */
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

  /** @param {DrawFilter} filter */
  setFilter(filter) {
    this.filter = filter;
    this.redraw();
  }

  /** @param {KeyboardEvent} event */
  keydown(event) {
    if (event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = /** @type {HTMLElement | null} */ (event.target);
    const tag = target && target.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    // Text fields, sliders and radio groups use the arrow keys themselves.
    if (tag === "INPUT" && !["checkbox", "button"].includes(/** @type {HTMLInputElement} */ (target).type)) return;
    if (event.key === "ArrowLeft") { this.step(-1); event.preventDefault(); }
    else if (event.key === "ArrowRight") { this.step(1); event.preventDefault(); }
  }

  /** @param {"loading" | "ready" | "empty" | "error"} state */
  setState(state) {
    this.element.dataset.state = state;
  }

  /**
   * A load that failed, shown as the viewer's error unless it was aborted or is no longer wanted.
   * @param {unknown} error @param {boolean} wanted @param {string} what what could not be loaded
   */
  failed(error, wanted, what) {
    if (isAbort(error) || !wanted) return;
    this.setState("error");
    this.clear(`${what} could not be loaded: ${messageOf(error)}`);
  }

  /** @param {string} split the list's key */
  async showSplit(split) {
    this.token += 1; // whatever the other split was loading is no longer wanted
    this.split = split;
    this.list = null;
    this.setState("loading");
    this.clear("Loading images…");
    let list;
    try {
      list = await this.options.loadList(split);
    } catch (error) {
      this.failed(error, split === this.split, "The images");
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
      this.clear(this.options.emptyText(split));
      this.options.onRendered();
      return;
    }
    this.show(Math.min(this.positions[split] || 0, list.total - 1));
  }

  /** @param {number} delta */
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

  /** @param {number} index */
  async show(index) {
    const list = /** @type {ViewerList} */ (this.list);
    const token = ++this.token;
    const entry = list.images[index];
    this.index = index;
    this.positions[this.split] = index;
    this.counter.textContent = `${index + 1} / ${list.total}`;
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
      const objects = this.objects(entry);
      // The listing's preview URL when it has one, else the one that comes with the objects.
      const previewUrl = entry.preview_url ? Promise.resolve(entry.preview_url) : objects.then((p) => p.previewUrl);
      [prepared, image] = await Promise.all([objects, previewUrl.then((url) => this.preview(url))]);
      if (!image && prepared.previewUrl && token === this.token) image = await this.renewPreview(index);
    } catch (error) {
      this.failed(error, token === this.token, "This image");
      return;
    }
    if (token !== this.token) return;
    this.current = { entry, prepared, image };
    this.total.textContent = count(prepared.objects.length);
    this.note.hidden = !!image;
    if (!image) this.note.textContent = "No preview for this image; outlines are drawn on a blank background.";
    this.layout();
    this.setState("ready");
    this.options.onRendered();
    this.prefetch(index);
  }

  /** @param {string} message */
  clear(message) {
    this.current = null;
    this.note.textContent = message;
    this.note.hidden = false;
    this.drawn.textContent = "0";
    this.total.textContent = "0";
    this.options.onCounts(null);
    for (const canvas of [this.base, this.overlay]) {
      context2d(canvas).clearRect(0, 0, canvas.width, canvas.height);
    }
  }

  /**
   * The image's objects, prepared, from a small most-recently-used cache.
   * @param {ViewerEntry} entry
   * @returns {Promise<Prepared>}
   */
  objects(entry) {
    const key = `${this.split}/${entry.stem}`;
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit); // most recently used last
      return hit;
    }
    const pending = this.options.loadObjects(entry).then(
      (predictions) => ({
        ...prepareObjects(predictions, this.options.classes, () => new Path2D()),
        previewUrl: entry.preview_url || predictions.preview_url || null,
      }),
      (error) => { this.cache.delete(key); throw error; },
    );
    this.cache.set(key, pending);
    trim(this.cache);
    return pending;
  }

  /**
   * The decoded preview, or null when there is none (or it cannot be loaded).
   * @param {string | null | undefined} url
   * @returns {Promise<HTMLImageElement | null>}
   */
  preview(url) {
    if (!url) return Promise.resolve(null);
    const known = this.previews.get(url);
    if (known) return known;
    const image = new Image();
    image.decoding = "async";
    /** @type {Promise<HTMLImageElement | null>} */
    const loading = new Promise((resolve) => {
      image.onload = () => resolve(image);
      image.onerror = () => { this.previews.delete(url); resolve(null); };
    });
    image.src = url;
    this.previews.set(url, loading);
    trim(this.previews);
    return loading;
  }

  /**
   * Preview URLs are presigned and expire: ask for this image's entry again, once, and retry.
   * @param {number} index
   * @returns {Promise<HTMLImageElement | null>}
   */
  async renewPreview(index) {
    const list = /** @type {ViewerList} */ (this.list);
    const entry = list.images[index];
    if (entry.renewed) return null;
    const fresh = await this.options.fetchEntry(this.split, index);
    if (!fresh || fresh.stem !== entry.stem) return null;
    list.images[index] = { ...fresh, renewed: true };
    return fresh.preview_url ? this.preview(fresh.preview_url) : null;
  }

  /** @param {number} index */
  prefetch(index) {
    for (const neighbour of [index + 1, index - 1]) {
      const entry = this.list && this.list.images[neighbour];
      if (!entry) continue;
      const objects = this.objects(entry);
      objects.catch(() => {});
      if (entry.preview_url) this.preview(entry.preview_url);
      else objects.then((prepared) => this.preview(prepared.previewUrl), () => {});
    }
  }

  /** Size the stage to the image's aspect ratio within the viewer, then draw both layers. */
  layout() {
    if (!this.current) return;
    const { width, height } = this.current.prepared;
    const parent = /** @type {HTMLElement} */ (this.stage.parentElement);
    const available = Math.max(120, parent.clientWidth);
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
    this.size.textContent = ` · ${width} × ${height} px`;
    this.drawImage();
    this.redraw();
  }

  drawImage() {
    const context = context2d(this.base);
    context.fillStyle = "#0b0f14";
    context.fillRect(0, 0, this.base.width, this.base.height);
    const image = this.current && this.current.image;
    if (!image) return;
    context.imageSmoothingQuality = "high";
    context.drawImage(image, 0, 0, this.base.width, this.base.height);
  }

  /** Draw the outlines of the objects the filter lets through. */
  redraw() {
    const context = context2d(this.overlay);
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, this.overlay.width, this.overlay.height);
    if (!this.current) return;
    const { prepared, entry } = this.current;
    const scale = this.overlay.width / prepared.width; // image pixels -> canvas pixels
    const ratio = window.devicePixelRatio || 1;
    const { visible, perClass } = visibleObjects(prepared.objects, this.filter);
    context.setTransform(scale, 0, 0, scale, 0, 0);
    context.lineJoin = "round";
    context.lineWidth = (3.5 * ratio) / scale;
    context.strokeStyle = "rgba(0, 0, 0, 0.55)";
    for (const object of visible) context.stroke(object.path);
    context.lineWidth = (1.6 * ratio) / scale;
    for (const object of visible) {
      context.strokeStyle = object.colour;
      context.stroke(object.path);
    }
    this.visible = visible;
    this.drawn.textContent = String(visible.length);
    this.overlay.setAttribute("aria-label", `${entry.file_name}: ${visible.length} predicted outlines drawn`);
    this.options.onCounts(perClass);
  }

  /** @param {PointerEvent} event */
  hover(event) {
    if (!this.current || !this.visible.length) { this.tooltip.hidden = true; return; }
    const ratio = window.devicePixelRatio || 1;
    const x = event.offsetX * ratio;
    const y = event.offsetY * ratio;
    const scale = this.overlay.width / this.current.prepared.width;
    const context = context2d(this.overlay);
    const found = objectAt(this.visible, x / scale, y / scale, (object) => context.isPointInPath(object.path, x, y));
    if (!found) { this.tooltip.hidden = true; return; }
    this.tooltip.textContent = `${found.category} · ${found.score.toFixed(2)}`;
    this.tooltip.style.left = `${event.offsetX + 12}px`;
    this.tooltip.style.top = `${event.offsetY + 12}px`;
    this.tooltip.hidden = false;
  }
}

/**
 * @param {HTMLCanvasElement} canvas
 * @returns {CanvasRenderingContext2D}
 */
function context2d(canvas) {
  return /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
}
