// @ts-check
// The page's addresses: #/ (home), #/projects/{project} (the model table),
// #/projects/{project}/models/{version} (one version), #/projects/{project}/analyses/{analysis}
// (one analysis).

import { analysisPath, projectPath, versionPath } from "./api.js";

export const PROJECT_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/;
export const VERSION_PATTERN = /^\d{1,6}$/;
export const ANALYSIS_PATTERN = /^[1-9]\d{0,5}$/;

/**
 * @typedef {{name: "home"} | {name: "models", project: string}
 *   | {name: "version", project: string, version: string}
 *   | {name: "analysis", project: string, analysis: string} | {name: "unknown"}} Route
 */

/**
 * The view a location hash asks for (trailing slashes ignored, parts URI-decoded).
 * @param {string} hash
 * @returns {Route}
 */
export function parseRoute(hash) {
  const path = hash.replace(/^#/, "").replace(/\/+$/, "") || "/";
  try {
    let match = path.match(/^\/projects\/([^/]+)\/models\/([^/]+)$/);
    if (match) return { name: "version", project: decodeURIComponent(match[1]), version: decodeURIComponent(match[2]) };
    match = path.match(/^\/projects\/([^/]+)\/analyses\/([^/]+)$/);
    if (match) return { name: "analysis", project: decodeURIComponent(match[1]), analysis: decodeURIComponent(match[2]) };
    match = path.match(/^\/projects\/([^/]+)$/);
    if (match) return { name: "models", project: decodeURIComponent(match[1]) };
  } catch {
    return { name: "unknown" }; // a malformed %-escape
  }
  if (path === "/") return { name: "home" };
  return { name: "unknown" };
}

/** @param {string} project @returns {boolean} */
export function isProjectName(project) {
  return PROJECT_PATTERN.test(project);
}

/** @param {string} project @returns {string} */
export function projectHash(project) {
  return `#${projectPath(project)}`;
}

/** @param {string} project @param {number | string} version @returns {string} */
export function versionHash(project, version) {
  return `#${versionPath(project, version)}`;
}

/** @param {string} project @param {number | string} analysis @returns {string} */
export function analysisHash(project, analysis) {
  return `#${analysisPath(project, analysis)}`;
}
