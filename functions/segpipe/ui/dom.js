// @ts-check
// Building elements, and the page's small recurring pieces (badges, notes, error boxes, swatches).
// Nothing here touches the document until it is called.

import { ApiError, messageOf } from "./api.js";

/** @typedef {Node | string | number | null | undefined | false} Child */
/** @typedef {Child | Child[]} Children */
/**
 * Attributes: `class`, `text`, `on<event>` listeners, element properties (non-string values) and
 * plain attributes; null, undefined and false leave the attribute out, true sets it empty.
 * @typedef {Record<string, unknown>} Attrs
 */

/**
 * Build an element: h("button", {class: "x", "data-testid": "y", onclick: fn}, "text", child).
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {Attrs} [attrs]
 * @param {...Children} children
 * @returns {HTMLElementTagNameMap[K]}
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), /** @type {EventListener} */ (value));
    } else if (name === "class") {
      element.className = String(value);
    } else if (name === "text") {
      element.textContent = String(value);
    } else if (name in element && typeof value !== "string") {
      /** @type {Record<string, unknown>} */ (/** @type {unknown} */ (element))[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

/**
 * Append children, skipping null, undefined and false.
 * @template {Element} E
 * @param {E} parent
 * @param {Children[]} children
 * @returns {E}
 */
export function append(parent, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/**
 * Replace an element's children, skipping null, undefined and false (replaceChildren would print them).
 * @template {Element} E
 * @param {E} parent
 * @param {...Children} children
 * @returns {E}
 */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * Build an SVG element; attributes are set as strings, `text` sets the text.
 * @template {keyof SVGElementTagNameMap} K
 * @param {K} tag
 * @param {Record<string, string | number | null | undefined>} [attrs]
 * @param {...(SVGElement | null | undefined)} children
 * @returns {SVGElementTagNameMap[K]}
 */
export function s(tag, attrs = {}, ...children) {
  const element = /** @type {SVGElementTagNameMap[K]} */ (document.createElementNS(SVG_NS, tag));
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (name === "text") element.textContent = String(value);
    else element.setAttribute(name, String(value));
  }
  for (const child of children) if (child) element.append(child);
  return element;
}

/**
 * The checkbox or radio an event came from.
 * @param {Event} event
 * @returns {HTMLInputElement}
 */
export function inputOf(event) {
  return /** @type {HTMLInputElement} */ (event.currentTarget);
}

/**
 * A class's colour square (the CSP forbids style attributes; a style set from script is fine).
 * @param {string} colour
 * @returns {HTMLSpanElement}
 */
export function swatch(colour) {
  const square = h("span", { class: "swatch", "aria-hidden": "true" });
  square.style.backgroundColor = colour;
  return square;
}

/** @param {string} status @returns {HTMLSpanElement} */
export function statusBadge(status) {
  return h("span", { class: `badge status-${status}`, "data-testid": "status", text: status });
}

/** @returns {HTMLSpanElement} */
export function activeBadge() {
  return h("span", { class: "badge active", "data-testid": "active-badge", text: "active" });
}

/** @param {string} text @param {string} testid @param {string} [kind] @returns {HTMLParagraphElement} */
export function stateNote(text, testid, kind = "") {
  return h("p", { class: `state-note ${kind}`.trim(), "data-testid": testid, text });
}

/**
 * What went wrong, in words, with the API's error code.
 * @param {unknown} error
 * @param {string} what
 * @returns {HTMLDivElement}
 */
export function errorBox(error, what) {
  const code = error instanceof ApiError ? error.code : "error";
  return h(
    "div",
    { class: "alert alert-error", role: "alert", "data-testid": "error" },
    h("strong", { text: what }),
    " ",
    h("span", { "data-testid": "error-message", text: messageOf(error) }),
    h("code", { class: "error-code", text: code }),
  );
}

/**
 * A Poller's `failed` step on the page of one item: the error in the page's header, and another try
 * later unless the item does not exist (404).
 * @param {() => HTMLElement} header the page's header, read when a load fails
 * @param {string} noun what the page shows: "version", "analysis"
 * @returns {(error: unknown) => boolean}
 */
export function failedInHeader(header, noun) {
  return (error) => {
    const status = error instanceof ApiError ? error.status : 0;
    replace(header(), errorBox(error, status === 404 ? `No such ${noun}.` : `The ${noun} could not be loaded.`));
    return status !== 404;
  };
}

/**
 * @typedef {object} ItemAreas the parts of the page of one item, top to bottom
 * @property {HTMLElement} header its name and badges (first: a note that it is loading)
 * @property {HTMLElement} status where it stands (running, failed...)
 * @property {HTMLElement} details what was asked for and what it used
 * @property {HTMLElement} main what it produced (a version's review, an analysis's images)
 */

/**
 * Lay out the page of one item (a version, an analysis) in `root` under its breadcrumb. An id that
 * cannot be one (`unknown`: the sentence saying so) is answered in the header as the API answers
 * an unknown item, with a 404 and `{noun}_not_found`.
 * @param {HTMLElement} root
 * @param {{ crumb: HTMLElement, noun: string, statusTestId: string, unknown: string | null }} page
 * @returns {ItemAreas}
 */
export function itemAreas(root, { crumb, noun, statusTestId, unknown }) {
  const areas = {
    header: h("div", { class: "version-head" }, stateNote(`Loading the ${noun}…`, "loading")),
    status: h("div", { class: "status-area", "data-testid": statusTestId }),
    details: h("div", { class: "details-area" }),
    main: h("div", { class: "review-area" }),
  };
  root.append(crumb, areas.header, areas.status, areas.details, areas.main);
  if (unknown !== null) {
    replace(areas.header, errorBox(new ApiError(404, `${noun}_not_found`, unknown), `No such ${noun}.`));
  }
  return areas;
}

/**
 * The breadcrumb of the page of one item: a link back to its table, then the item.
 * @param {string} href @param {string} back the link's text @param {string} here
 * @returns {HTMLElement}
 */
export function breadcrumb(href, back, here) {
  return h("nav", { class: "breadcrumb", "aria-label": "Breadcrumb" },
    h("a", { href, "data-testid": "back", text: back }),
    h("span", { "aria-hidden": "true", text: " / " }),
    h("span", { text: here }),
  );
}

/** @type {ReturnType<typeof setTimeout> | undefined} */
let noticeTimer;

/**
 * A short message in the page's notice bar; errors stay longer.
 * @param {string} text
 * @param {"info" | "success" | "error"} [kind]
 */
export function notify(text, kind = "info") {
  const box = /** @type {HTMLElement} */ (document.getElementById("notice"));
  box.textContent = text;
  box.className = `notice notice-${kind}`;
  box.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { box.hidden = true; }, kind === "error" ? 10000 : 4000);
}
