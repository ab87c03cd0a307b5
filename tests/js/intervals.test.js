// @ts-check
// Bootstrap intervals on the review page: how they read, which cell gets which, and the plot's bands.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { interval, intervalMeaning } from "../../functions/segpipe/ui/format.js";
import { PLOT_SIZE, bandPath, bandSweep, xOf, yOf } from "../../functions/segpipe/ui/plot.js";
import { OVERALL, STAT_COLUMNS, cellInterval, selectionNote } from "../../functions/segpipe/ui/statistics.js";

/** @param {string} key */
const column = (key) => {
  const found = STAT_COLUMNS.find((c) => c.key === key);
  if (!found) throw new Error(key);
  return found;
};

/** @type {import("../../functions/segpipe/ui/types.js").Bootstrap} */
const intervals = {
  split: "test",
  draws: 1000,
  seed: 0,
  confidence: 0.95,
  images: 3,
  headline: {
    threshold: 0.5,
    metrics: {
      f1: { estimate: 0.9, low: 0.85, high: 0.96 },
      panoptic_quality: { estimate: 0.7, low: 0.6, high: 0.8 },
      ap50: { estimate: 0.8, low: 0.7, high: 0.88 },
      ap: { estimate: 0.5, low: null, high: null },
    },
  },
  sweep: [
    { threshold: 0.6, metrics: { f1: { estimate: 0.8, low: 0.7, high: 0.9 } } },
    { threshold: 0.5, metrics: { f1: { estimate: 0.9, low: 0.84, high: 0.95 } } },
    { threshold: 0.4, metrics: { f1: { estimate: 0.85, low: 0.8, high: 0.9 }, precision: { estimate: null } } },
  ],
};

/** @param {number} threshold */
const point = (threshold) => ({ threshold, overall: {} });

describe("how an interval reads", () => {
  it("gives both bounds with two decimals, in brackets", () => {
    assert.equal(interval({ estimate: 0.912, low: 0.8512, high: 0.9649 }), "(0.85–0.96)");
    assert.equal(interval({ low: 0, high: 1 }), "(0.00–1.00)");
  });

  it("gives nothing without both bounds", () => {
    assert.equal(interval({ estimate: 0.5, low: null, high: 0.6 }), null);
    assert.equal(interval({ estimate: 0.5 }), null);
    assert.equal(interval(null), null);
  });

  it("says what the interval is, over how many images and draws", () => {
    assert.equal(intervalMeaning(intervals), "95 % bootstrap interval over 3 test images, 1,000 draws");
    assert.equal(intervalMeaning({ ...intervals, images: 1, confidence: 0.9 }), "90 % bootstrap interval over 1 test image, 1,000 draws");
  });
});

describe("which cell has an interval", () => {
  it("takes the headline's at the suggested threshold, PQ included", () => {
    assert.deepEqual(cellInterval(intervals, "test", point(0.5), OVERALL, column("f1")), { estimate: 0.9, low: 0.85, high: 0.96 });
    assert.deepEqual(cellInterval(intervals, "test", point(0.5), OVERALL, column("panoptic_quality")), { estimate: 0.7, low: 0.6, high: 0.8 });
  });

  it("takes the sweep's at another threshold, and has none where the sweep has none", () => {
    assert.deepEqual(cellInterval(intervals, "test", point(0.6), OVERALL, column("f1")), { estimate: 0.8, low: 0.7, high: 0.9 });
    assert.equal(cellInterval(intervals, "test", point(0.6), OVERALL, column("panoptic_quality")), null);
    assert.equal(cellInterval(intervals, "test", point(0.4), OVERALL, column("precision")), null);
    assert.equal(cellInterval(intervals, "test", point(0.7), OVERALL, column("f1")), null);
    assert.equal(cellInterval(intervals, "test", null, OVERALL, column("f1")), null);
  });

  it("gives AP its headline interval at any threshold, unless it has no bounds", () => {
    assert.deepEqual(cellInterval(intervals, "test", point(0.6), OVERALL, column("ap50")), { estimate: 0.8, low: 0.7, high: 0.88 });
    assert.equal(cellInterval(intervals, "test", point(0.5), OVERALL, column("ap")), null);
  });

  it("gives none to class rows, to the other split, or without intervals", () => {
    assert.equal(cellInterval(intervals, "test", point(0.5), "nucleus", column("f1")), null);
    assert.equal(cellInterval(intervals, "train", point(0.5), OVERALL, column("f1")), null);
    assert.equal(cellInterval(null, "test", point(0.5), OVERALL, column("f1")), null);
    assert.equal(cellInterval(undefined, "test", point(0.5), OVERALL, column("f1")), null);
  });
});

describe("the plot's bands", () => {
  it("uses the plotted split's interval sweep, sorted by threshold", () => {
    assert.deepEqual(bandSweep(intervals, "test").map((p) => p.threshold), [0.4, 0.5, 0.6]);
    assert.deepEqual(bandSweep(intervals, "train"), []);
    assert.deepEqual(bandSweep(null, "test"), []);
    assert.deepEqual(bandSweep({ ...intervals, sweep: undefined }, "test"), []);
  });

  it("goes along the upper bounds and back along the lower ones", () => {
    const sweep = [
      { threshold: 0, metrics: { f1: { low: 0.5, high: 1 } } },
      { threshold: 1, metrics: { f1: { low: 0, high: 0.5 } } },
    ];
    assert.equal(bandPath(sweep, "f1", PLOT_SIZE), "M40.0,30.0L446.0,135.0L446.0,240.0L40.0,135.0Z");
  });

  it("keeps every low bound under its high bound on screen", () => {
    const sweep = bandSweep(intervals, "test");
    const d = bandPath(sweep, "f1", PLOT_SIZE);
    const ys = [...d.matchAll(/[ML][\d.]+,([\d.]+)/g)].map((m) => Number(m[1]));
    assert.equal(ys.length, 6);
    for (let i = 0; i < 3; i += 1) assert.ok(ys[i] < ys[5 - i], `${ys[i]} above ${ys[5 - i]}`);
    assert.equal(ys[0], Number(yOf(PLOT_SIZE, 0.9).toFixed(1)));
  });

  it("breaks the band where a bound is missing and drops a lone threshold", () => {
    /** @type {import("../../functions/segpipe/ui/types.js").ThresholdIntervals[]} */
    const sweep = [0, 0.1, 0.2, 0.3, 0.4, 0.5].map((threshold, i) => ({
      threshold, metrics: { f1: i === 2 ? { estimate: 0.5 } : { low: 0.4, high: 0.6 } },
    }));
    sweep.splice(4, 0, { threshold: 0.35, metrics: {} });
    const d = bandPath(sweep, "f1", PLOT_SIZE);
    assert.equal(d.split("Z").length - 1, 2);
    assert.ok(d.startsWith(`M${xOf(PLOT_SIZE, 0).toFixed(1)},`));
    assert.ok(!d.includes(`${xOf(PLOT_SIZE, 0.3).toFixed(1)},`), "the lone 0.3 is not drawn");
    assert.equal(bandPath(sweep, "recall", PLOT_SIZE), "");
  });
});

describe("the selection note", () => {
  it("uses the trainer's sentence, else one from the method", () => {
    assert.equal(selectionNote({ method: "refit", summary: "Chosen on 2 held-out images." }), "Chosen on 2 held-out images.");
    assert.match(String(selectionNote({ method: "none", summary: "" })), /training images/);
    assert.match(String(selectionNote({ method: "holdout" })), /held out/);
    assert.equal(selectionNote(null), null);
  });
});
