// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { CLASS_COLOURS } from "../../functions/segpipe/ui/colours.js";
import { objectAt, prepareObjects, visibleObjects } from "../../functions/segpipe/ui/objects.js";

/** A Path2D stand-in that records the calls. */
class RecordingPath {
  constructor() {
    /** @type {string[]} */
    this.calls = [];
  }

  /** @param {number} x @param {number} y */
  moveTo(x, y) { this.calls.push(`M${x},${y}`); }

  /** @param {number} x @param {number} y */
  lineTo(x, y) { this.calls.push(`L${x},${y}`); }

  closePath() { this.calls.push("Z"); }
}

const predictions = {
  width: 100,
  height: 50,
  objects: [
    { category: "nucleus", score: 0.3, segmentation: [[0, 0, 10, 0, 10, 10]], bbox: [0, 0, 10, 10] },
    { category: "mitotic", score: 0.9, segmentation: [[20, 20, 30, 20, 30, 30, 20, 30], [1, 1, 2, 2]], bbox: [20, 20, 10, 10] },
    { category: "debris", score: 0.6, bbox: [40, 5, 4, 6] },
  ],
};

describe("prepareObjects", () => {
  const prepared = prepareObjects(predictions, ["nucleus", "mitotic"], () => new RecordingPath());

  it("keeps the image size and sorts objects by score, highest first", () => {
    assert.equal(prepared.width, 100);
    assert.equal(prepared.height, 50);
    assert.deepEqual(prepared.objects.map((o) => o.score), [0.9, 0.6, 0.3]);
  });

  it("turns polygon rings into closed paths and skips rings of fewer than three points", () => {
    const mitotic = prepared.objects[0];
    assert.deepEqual(mitotic.path.calls, ["M20,20", "L30,20", "L30,30", "L20,30", "Z"]);
    assert.deepEqual(prepared.objects[2].path.calls, ["M0,0", "L10,0", "L10,10", "Z"]);
    assert.deepEqual(prepared.objects[1].path.calls, []);
  });

  it("turns [x, y, width, height] boxes into corners", () => {
    assert.deepEqual(prepared.objects[1].box, [40, 5, 44, 11]);
  });

  it("colours classes by their place in the version's classes; unknown ones get the next colour", () => {
    const colours = Object.fromEntries(prepared.objects.map((o) => [o.category, o.colour]));
    assert.deepEqual(colours, { nucleus: CLASS_COLOURS[0], mitotic: CLASS_COLOURS[1], debris: CLASS_COLOURS[2] });
  });
});

describe("visibleObjects", () => {
  const objects = [
    { category: "a", score: 0.9 },
    { category: "b", score: 0.7 },
    { category: "a", score: 0.5 },
    { category: "b", score: 0.2 },
  ];

  it("keeps objects scored at or above the threshold, of enabled classes, and counts them per class", () => {
    const { visible, perClass } = visibleObjects(objects, { threshold: 0.5, enabled: new Set(["a", "b"]), showOutlines: true });
    assert.deepEqual(visible.map((o) => o.score), [0.9, 0.7, 0.5]);
    assert.deepEqual([...perClass], [["a", 2], ["b", 1]]);
  });

  it("leaves out disabled classes", () => {
    const { visible, perClass } = visibleObjects(objects, { threshold: 0.05, enabled: new Set(["b"]), showOutlines: true });
    assert.deepEqual(visible.map((o) => o.score), [0.7, 0.2]);
    assert.deepEqual([...perClass], [["b", 2]]);
  });

  it("draws and counts nothing when outlines are off", () => {
    const { visible, perClass } = visibleObjects(objects, { threshold: 0.05, enabled: new Set(["a", "b"]), showOutlines: false });
    assert.deepEqual(visible, []);
    assert.equal(perClass.size, 0);
  });
});

describe("objectAt", () => {
  const objects = [{ id: 1, box: [0, 0, 10, 10] }, { id: 2, box: [5, 5, 20, 20] }];

  it("returns the first object whose box and outline hold the point", () => {
    assert.equal(objectAt(objects, 7, 7, () => true)?.id, 1);
    assert.equal(objectAt(objects, 7, 7, (o) => o.id === 2)?.id, 2);
  });

  it("never asks the exact test outside the box, and is null when nothing is hit", () => {
    /** @type {number[]} */
    const asked = [];
    const found = objectAt(objects, 15, 15, (o) => { asked.push(o.id); return false; });
    assert.equal(found, null);
    assert.deepEqual(asked, [2]);
  });
});
