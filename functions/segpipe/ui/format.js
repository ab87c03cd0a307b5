// @ts-check
// How numbers, dates and durations read on the page; "–" where there is no value.
/** @import { Interval } from "./types.js" */

const NONE = "–";

/** @param {unknown} value @returns {value is null | undefined} */
export function missing(value) {
  return value === null || value === undefined;
}

/** @param {number | null | undefined} value @returns {string} */
export function ratio(value) {
  return missing(value) ? NONE : Number(value).toFixed(3);
}

/** @param {number | null | undefined} value @returns {string} */
export function count(value) {
  return missing(value) ? NONE : Number(value).toLocaleString("en-US");
}

/** @param {number | null | undefined} value @returns {string} */
export function threshold(value) {
  return missing(value) ? NONE : Number(value).toFixed(2);
}

/** @param {string | null | undefined} iso @returns {string} */
export function date(iso) {
  if (!iso) return NONE;
  const parsed = new Date(iso);
  if (Number.isNaN(parsed.getTime())) return iso;
  return parsed.toLocaleString(undefined, {
    year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
  });
}

/**
 * How long from `start` to `end`: minutes below 90, hours from there; null when unknown.
 * @param {string | null | undefined} start
 * @param {string | null | undefined} end
 * @returns {string | null}
 */
export function duration(start, end) {
  if (!start || !end) return null;
  const minutes = Math.round((new Date(end).getTime() - new Date(start).getTime()) / 60000);
  if (!Number.isFinite(minutes) || minutes < 0) return null;
  return minutes >= 90 ? `${(minutes / 60).toFixed(1)} h` : `${minutes} min`;
}

/** @param {number} n @param {string} noun @returns {string} */
export function plural(n, noun) {
  return `${count(n)} ${noun}${n === 1 ? "" : "s"}`;
}

/**
 * An interval's bounds as they read beside its figure, "(0.85–0.96)"; null without both bounds.
 * @param {Interval | null | undefined} bounds
 * @returns {string | null}
 */
export function interval(bounds) {
  if (!bounds || missing(bounds.low) || missing(bounds.high)) return null;
  return `(${Number(bounds.low).toFixed(2)}–${Number(bounds.high).toFixed(2)})`;
}

/**
 * What a bootstrap interval is, in words: "95 % bootstrap interval over 3 test images, 1,000 draws".
 * @param {{split: string, confidence: number, images: number, draws: number}} bootstrap
 * @returns {string}
 */
export function intervalMeaning(bootstrap) {
  const share = Number((bootstrap.confidence * 100).toFixed(1));
  return `${share} % bootstrap interval over ${plural(bootstrap.images, `${bootstrap.split} image`)}, ${plural(bootstrap.draws, "draw")}`;
}

/** @typedef {"ratio" | "count"} ValueKind */

/** @type {Record<ValueKind, (value: number | null | undefined) => string>} */
export const byKind = { ratio, count };
