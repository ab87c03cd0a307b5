// @ts-check
// The segpipe HTTP API as the page calls it: one function per call, typed answers, typed errors.
/**
 * @import { AnalysedImage, AnalysisImageEntry, AnalysisRow, AnalysisView, ImageList, ImagePredictions,
 *   MetricsView, ModelTable, ModelVersion, PredictionsPage, Split } from "./types.js"
 */

/** Images asked for per page of the predictions listing. */
export const PAGE_LIMIT = 1000;

export class ApiError extends Error {
  /**
   * @param {number} status the HTTP status; 0 when the API could not be reached
   * @param {string} code the API's stable error code
   * @param {string} message
   * @param {Record<string, unknown>} [context]
   */
  constructor(status, code, message, context = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.context = context;
  }
}

/**
 * Where the API lives, from the page's own path: the page is served at {base}/ui/.
 * @param {string} pathname
 * @returns {string}
 */
export function apiBase(pathname) {
  return pathname.replace(/\/ui(\/.*)?$/, "");
}

/** @param {unknown} error @returns {boolean} */
export function isAbort(error) {
  return error instanceof Error && error.name === "AbortError";
}

/** @param {unknown} error @returns {string} */
export function messageOf(error) {
  if (error instanceof Error) return error.message;
  return String(error);
}

/**
 * The ApiError an unsuccessful answer means: the API's error envelope when there is one.
 * @param {number} status
 * @param {string} statusText
 * @param {unknown} data the parsed body, or null
 * @returns {ApiError}
 */
export function errorFromAnswer(status, statusText, data) {
  const body = /** @type {{error?: {code?: string, message?: string, context?: Record<string, unknown>}, message?: string} | null} */ (
    data !== null && typeof data === "object" ? data : null
  );
  const detail = (body && body.error) || {};
  return new ApiError(
    status,
    detail.code || `http_${status}`,
    detail.message || (body && body.message) || `The API answered ${status} ${statusText}.`,
    detail.context || {},
  );
}

/**
 * @typedef {object} CallOptions
 * @property {string} [method]
 * @property {unknown} [body] sent as JSON
 * @property {AbortSignal} [signal]
 */

/**
 * Call the API; resolves to the parsed JSON answer, rejects with an ApiError (or an AbortError).
 * @param {string} path from the API's root, e.g. /projects/x/models
 * @param {CallOptions} [options]
 * @returns {Promise<unknown>}
 */
export async function call(path, { method = "GET", body, signal } = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json" };
  /** @type {RequestInit} */
  const init = { method, signal, headers };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(apiBase(window.location.pathname) + path, init);
  } catch (error) {
    if (isAbort(error)) throw error;
    throw new ApiError(0, "network_error", "The API could not be reached. Check your connection and try again.");
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) throw errorFromAnswer(response.status, response.statusText, data);
  return data;
}

/** @param {string} project @returns {string} */
export function projectPath(project) {
  return `/projects/${encodeURIComponent(project)}`;
}

/** @param {string} project @param {number | string} version @returns {string} */
export function versionPath(project, version) {
  return `${projectPath(project)}/models/${encodeURIComponent(version)}`;
}

/**
 * @param {string} project
 * @param {{activeOnly: boolean, signal?: AbortSignal}} options
 * @returns {Promise<ModelTable>}
 */
export async function listModels(project, { activeOnly, signal }) {
  const query = activeOnly ? "?active=true" : "";
  return /** @type {ModelTable} */ (await call(`${projectPath(project)}/models${query}`, { signal }));
}

/**
 * @param {string} project @param {number | string} version @param {AbortSignal} [signal]
 * @returns {Promise<ModelVersion>}
 */
export async function getModel(project, version, signal) {
  return /** @type {ModelVersion} */ (await call(versionPath(project, version), { signal }));
}

/**
 * @param {string} project @param {number | string} version @param {AbortSignal} [signal]
 * @returns {Promise<MetricsView>}
 */
export async function getSweep(project, version, signal) {
  return /** @type {MetricsView} */ (await call(`${versionPath(project, version)}/metrics?sweep=true`, { signal }));
}

/**
 * @param {string} project @param {number | string} version @param {number} threshold
 * @param {AbortSignal} [signal]
 * @returns {Promise<ModelVersion>}
 */
export async function putThreshold(project, version, threshold, signal) {
  const path = `${versionPath(project, version)}/threshold`;
  return /** @type {ModelVersion} */ (await call(path, { method: "PUT", body: { threshold }, signal }));
}

/**
 * @param {string} project @param {number | string} version @param {"activate" | "deactivate"} action
 * @returns {Promise<ModelVersion>}
 */
export async function setActive(project, version, action) {
  return /** @type {ModelVersion} */ (await call(`${versionPath(project, version)}/${action}`, { method: "POST" }));
}

/**
 * @param {string} project @param {number | string} version @param {Split} split
 * @param {{offset: number, limit: number, signal?: AbortSignal}} page
 * @returns {Promise<PredictionsPage>}
 */
export async function predictionsPage(project, version, split, { offset, limit, signal }) {
  const path = `${versionPath(project, version)}/predictions?split=${split}&offset=${offset}&limit=${limit}`;
  return /** @type {PredictionsPage} */ (await call(path, { signal }));
}

/**
 * @param {string} url an image's `predictions_url` (an API path)
 * @param {AbortSignal} [signal]
 * @returns {Promise<ImagePredictions>}
 */
export async function imagePredictions(url, signal) {
  return /** @type {ImagePredictions} */ (await call(url, { signal }));
}

/**
 * Every image of a split, one page after another until the listing's total is reached (or a page
 * comes back empty).
 * @param {Split} split
 * @param {(offset: number) => Promise<PredictionsPage>} getPage
 * @returns {Promise<ImageList>}
 */
export async function collectImages(split, getPage) {
  /** @type {import("./types.js").PredictionImage[]} */
  const images = [];
  let total = Infinity;
  while (images.length < total) {
    const page = await getPage(images.length);
    total = page.total;
    images.push(...page.images);
    if (!page.images.length) break;
  }
  return { split, total: images.length, images };
}

/**
 * @param {string} project @param {number | string} version @param {Split} split
 * @param {AbortSignal} [signal]
 * @returns {Promise<ImageList>}
 */
export function loadImageList(project, version, split, signal) {
  return collectImages(split, (offset) =>
    predictionsPage(project, version, split, { offset, limit: PAGE_LIMIT, signal }));
}

// ---- analyses

/** @param {string} project @param {number | string} analysis @returns {string} */
export function analysisPath(project, analysis) {
  return `${projectPath(project)}/analyses/${encodeURIComponent(analysis)}`;
}

/**
 * The analyses of a project (the table), newest first as the API gives them.
 * @param {string} project @param {AbortSignal} [signal]
 * @returns {Promise<AnalysisRow[]>}
 */
export async function listAnalyses(project, signal) {
  const body = /** @type {{analyses?: AnalysisRow[]} | AnalysisRow[]} */ (await call(`${projectPath(project)}/analyses`, { signal }));
  return Array.isArray(body) ? body : body.analyses || [];
}

/**
 * @param {string} project @param {number | string} analysis @param {AbortSignal} [signal]
 * @returns {Promise<AnalysisView>}
 */
export async function getAnalysis(project, analysis, signal) {
  return /** @type {AnalysisView} */ (await call(analysisPath(project, analysis), { signal }));
}

/**
 * @typedef {{images: AnalysisImageEntry[], total?: number}} AnalysisImagesPage
 * One answer of the images listing (AnalysedImagesPage: `{project, analysis, total, offset,
 * images}`); read leniently: a bare list, or `{images}` without a total, is one page.
 */

/**
 * The listing's answer as a page, whichever of its shapes it has.
 * @param {unknown} body
 * @returns {AnalysisImagesPage}
 */
export function asImagesPage(body) {
  if (Array.isArray(body)) return { images: /** @type {AnalysisImageEntry[]} */ (body) };
  const page = /** @type {{images?: AnalysisImageEntry[], total?: number}} */ (body || {});
  return typeof page.total === "number" ? { images: page.images || [], total: page.total } : { images: page.images || [] };
}

/**
 * Every analysed image: page after page while the listing says there are more.
 * @param {(offset: number) => Promise<AnalysisImagesPage>} getPage
 * @returns {Promise<{total: number, images: AnalysisImageEntry[]}>}
 */
export async function collectAnalysisImages(getPage) {
  /** @type {AnalysisImageEntry[]} */
  const images = [];
  for (;;) {
    const page = await getPage(images.length);
    images.push(...page.images);
    if (page.total === undefined || images.length >= page.total || !page.images.length) break;
  }
  return { total: images.length, images };
}

/**
 * @param {string} project @param {number | string} analysis @param {AbortSignal} [signal]
 * @returns {Promise<{total: number, images: AnalysisImageEntry[]}>}
 */
export function loadAnalysisImages(project, analysis, signal) {
  const path = `${analysisPath(project, analysis)}/images`;
  return collectAnalysisImages(async (offset) =>
    asImagesPage(await call(`${path}?offset=${offset}&limit=${PAGE_LIMIT}`, { signal })));
}

/**
 * One analysed image's kept objects, with its preview URL.
 * @param {string} project @param {number | string} analysis @param {AnalysisImageEntry} entry
 * @param {AbortSignal} [signal]
 * @returns {Promise<AnalysedImage>}
 */
export async function analysedImage(project, analysis, entry, signal) {
  const path = entry.objects_url || `${analysisPath(project, analysis)}/images/${encodeURIComponent(entry.stem)}`;
  return /** @type {AnalysedImage} */ (await call(path, { signal }));
}
