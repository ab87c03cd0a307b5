// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { nearestPoint, pointAt, sweepIndex, sweepOf } from "../../functions/segpipe/ui/sweep.js";

/** @param {number} threshold @param {number} f1 */
const point = (threshold, f1) => ({ threshold, overall: { f1 } });

describe("nearestPoint", () => {
  it("finds the sweep point closest to the threshold", () => {
    const sweep = [point(0.1, 1), point(0.3, 3), point(0.5, 5)];
    assert.equal(nearestPoint(sweep, 0.32)?.threshold, 0.3);
    assert.equal(nearestPoint(sweep, 0.9)?.threshold, 0.5);
    assert.equal(nearestPoint(sweep, 0)?.threshold, 0.1);
  });

  it("keeps the first of equally near points, in the sweep's order", () => {
    assert.equal(nearestPoint([point(0.25, 2), point(0.75, 4)], 0.5)?.overall.f1, 2);
    assert.equal(nearestPoint([point(0.75, 4), point(0.25, 2)], 0.5)?.overall.f1, 4);
  });

  it("is null for an empty sweep", () => {
    assert.equal(nearestPoint([], 0.5), null);
  });
});

describe("sweepIndex and pointAt", () => {
  const sweep = [0.05, 0.25, 0.5, 0.75, 0.95].map((t) => point(t, t));
  const index = sweepIndex(sweep);
  const split = { images: 3, objects: 10, at: point(0.5, -1), sweep };

  it("maps every slider value to its nearest sweep point", () => {
    assert.equal(index.size, 19);
    assert.equal(index.get("0.10")?.threshold, 0.05);
    assert.equal(index.get("0.20")?.threshold, 0.25);
    assert.equal(index.get("0.65")?.threshold, 0.75);
  });

  it("reads the figures at an off-grid threshold through its grid value", () => {
    assert.equal(pointAt(split, index, 0.61)?.threshold, 0.5);
  });

  it("falls back to the point the API sent when the sweep is empty, and to null without a split", () => {
    const empty = sweepIndex([]);
    assert.equal(pointAt(split, empty, 0.3)?.overall.f1, -1);
    assert.equal(pointAt(null, index, 0.3), null);
  });

  it("takes the API's one point as the sweep when no sweep was sent", () => {
    assert.deepEqual(sweepOf({ images: 1, objects: 1, at: point(0.4, 4) }), [point(0.4, 4)]);
  });
});
