// @ts-check
// Reading a metrics sweep at the slider's threshold.
/** @import { ThresholdPoint, SplitMetrics } from "./types.js" */

import { gridKey, gridValues } from "./threshold.js";

/**
 * The sweep point nearest to `threshold`; the first of equally near ones. Null for an empty sweep.
 * @param {readonly ThresholdPoint[]} sweep
 * @param {number} threshold
 * @returns {ThresholdPoint | null}
 */
export function nearestPoint(sweep, threshold) {
  /** @type {ThresholdPoint | null} */
  let best = null;
  for (const point of sweep) {
    if (!best || Math.abs(point.threshold - threshold) < Math.abs(best.threshold - threshold)) best = point;
  }
  return best;
}

/** @typedef {Map<string, ThresholdPoint | null>} SweepIndex */

/**
 * Each slider value's nearest sweep point, looked up once.
 * @param {readonly ThresholdPoint[]} sweep
 * @returns {SweepIndex}
 */
export function sweepIndex(sweep) {
  return new Map(gridValues().map((value) => [gridKey(value), nearestPoint(sweep, value)]));
}

/**
 * The split's figures at a slider value: its nearest sweep point, else the point the API sent.
 * @param {SplitMetrics | null | undefined} splitMetrics
 * @param {SweepIndex} index
 * @param {number} threshold
 * @returns {ThresholdPoint | null}
 */
export function pointAt(splitMetrics, index, threshold) {
  if (!splitMetrics) return null;
  return index.get(gridKey(threshold)) || splitMetrics.at;
}

/**
 * The sweep of a split, or the one point the API sent when it sent no sweep.
 * @param {SplitMetrics} splitMetrics
 * @returns {ThresholdPoint[]}
 */
export function sweepOf(splitMetrics) {
  return splitMetrics.sweep || [splitMetrics.at];
}
