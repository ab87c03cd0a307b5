// @ts-check
// An image's predicted objects, prepared once for drawing, then filtered at each redraw.
/** @import { ImagePredictions } from "./types.js" */

import { classColour } from "./colours.js";

/**
 * The part of a Path2D the outlines need (so tests can pass a recording stand-in).
 * @typedef {{moveTo(x: number, y: number): void, lineTo(x: number, y: number): void, closePath(): void}} PathSink
 */

/**
 * @template {PathSink} P
 * @typedef {object} PreparedObject
 * @property {string} category
 * @property {number} score
 * @property {P} path the outline rings, in image pixels
 * @property {[number, number, number, number]} box x0, y0, x1, y1 in image pixels
 * @property {string} colour
 */

/**
 * @template {PathSink} P
 * @typedef {{width: number, height: number, objects: PreparedObject<P>[]}} PreparedImage
 */

/**
 * An image's objects with outlines as paths in image pixels, highest score first. Rings of fewer
 * than three points are skipped; a class the version does not list gets the next free colour.
 * @template {PathSink} P
 * @param {ImagePredictions} predictions
 * @param {readonly string[]} classes the version's classes (their order gives the colours)
 * @param {() => P} newPath
 * @returns {PreparedImage<P>}
 */
export function prepareObjects(predictions, classes, newPath) {
  const known = new Map(classes.map((name, index) => [name, index]));
  const objects = predictions.objects.map((object) => {
    const path = newPath();
    for (const ring of object.segmentation || []) {
      if (ring.length < 6) continue;
      path.moveTo(ring[0], ring[1]);
      for (let i = 2; i < ring.length; i += 2) path.lineTo(ring[i], ring[i + 1]);
      path.closePath();
    }
    const [x, y, w, h] = object.bbox;
    let index = known.get(object.category);
    if (index === undefined) {
      index = known.size;
      known.set(object.category, index);
    }
    /** @type {PreparedObject<P>} */
    const prepared = {
      category: object.category, score: object.score, path, box: [x, y, x + w, y + h], colour: classColour(index),
    };
    return prepared;
  });
  objects.sort((a, b) => b.score - a.score);
  return { width: predictions.width, height: predictions.height, objects };
}

/**
 * What the viewer draws: objects scored at or above the threshold, of the enabled classes.
 * @typedef {object} DrawFilter
 * @property {number} threshold
 * @property {ReadonlySet<string>} enabled
 * @property {boolean} showOutlines
 */

/**
 * The objects to draw under a filter (none when outlines are off) and how many of each class.
 * @template {{category: string, score: number}} T
 * @param {readonly T[]} objects highest score first
 * @param {DrawFilter} filter
 * @returns {{visible: T[], perClass: Map<string, number>}}
 */
export function visibleObjects(objects, filter) {
  const threshold = filter.threshold - 1e-9;
  /** @type {T[]} */
  const visible = [];
  const perClass = new Map();
  for (const object of objects) {
    if (object.score < threshold) break; // sorted by score: the rest are lower
    if (!filter.enabled.has(object.category)) continue;
    visible.push(object);
    perClass.set(object.category, (perClass.get(object.category) || 0) + 1);
  }
  return filter.showOutlines ? { visible, perClass } : { visible: [], perClass: new Map() };
}

/**
 * The first of `objects` whose box holds the image point and whose outline does too.
 * @template {{box: readonly number[]}} T
 * @param {readonly T[]} objects
 * @param {number} x image pixels
 * @param {number} y image pixels
 * @param {(object: T) => boolean} inside the exact test (the canvas's isPointInPath)
 * @returns {T | null}
 */
export function objectAt(objects, x, y, inside) {
  for (const object of objects) {
    const [x0, y0, x1, y1] = object.box;
    if (x < x0 || x > x1 || y < y0 || y > y1) continue;
    if (inside(object)) return object;
  }
  return null;
}
