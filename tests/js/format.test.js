// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { count, duration, plural, ratio, threshold } from "../../functions/segpipe/ui/format.js";
import { ignoredText, issuesOf, modelConfigText, testSetText } from "../../functions/segpipe/ui/details.js";

describe("number formats", () => {
  it("writes ratios with three decimals, thresholds with two, counts with separators", () => {
    assert.equal(ratio(0.12345), "0.123");
    assert.equal(threshold(0.5), "0.50");
    assert.equal(count(1234567), "1,234,567");
  });

  it("writes a dash for a missing value, but not for zero", () => {
    for (const write of [ratio, threshold, count]) {
      assert.equal(write(null), "–");
      assert.equal(write(undefined), "–");
    }
    assert.equal(ratio(0), "0.000");
    assert.equal(count(0), "0");
  });

  it("pluralises by count", () => {
    assert.equal(plural(1, "image"), "1 image");
    assert.equal(plural(2000, "image"), "2,000 images");
  });
});

describe("duration", () => {
  it("gives minutes below 90 and hours from there", () => {
    assert.equal(duration("2025-01-01T10:00:00Z", "2025-01-01T10:45:20Z"), "45 min");
    assert.equal(duration("2025-01-01T10:00:00Z", "2025-01-01T13:06:00Z"), "3.1 h");
  });

  it("is null when an end is missing, unreadable or before the start", () => {
    assert.equal(duration("2025-01-01T10:00:00Z", null), null);
    assert.equal(duration("2025-01-01T10:00:00Z", "soon"), null);
    assert.equal(duration("2025-01-01T10:00:00Z", "2025-01-01T09:00:00Z"), null);
  });
});

describe("training details in words", () => {
  it("describes each test-set strategy", () => {
    assert.equal(testSetText({ strategy: "fraction", fraction: 0.25, seed: 3 }), "25 % of images (seed 3)");
    assert.equal(testSetText({ strategy: "fraction", fraction: 0.2 }), "20 % of images (seed 0)");
    assert.equal(testSetText({ strategy: "images", images: ["a.tif", "b.tif"] }), "2 chosen images");
    assert.equal(testSetText({ strategy: "none" }), "none");
    assert.equal(testSetText({}), "none");
  });

  it("joins preset, tiles and epochs, falling back to the model type", () => {
    assert.equal(modelConfigText({ preset: "tiny", tile_size: 128, epochs: 10 }, "instance"), "tiny · 128 px tiles · 10 epochs");
    assert.equal(modelConfigText({}, "semantic"), "semantic");
  });

  it("lists what validation ignored, or nothing", () => {
    assert.equal(
      ignoredText({ excluded_classes: { debris: 1200 }, unfinished_images: 1, invalid_annotations: 2, images_held_out: 0 }),
      "Ignored: classes left out: debris (1,200); 1 image not completed; 2 broken annotations dropped.",
    );
    assert.equal(ignoredText({ excluded_classes: {}, unfinished_images: 0 }), null);
    assert.equal(ignoredText(null), null);
  });

  it("shows a failure as an error ahead of the warnings", () => {
    const base = { project: "p", version: 1, label: "l", model_type: /** @type {const} */ ("instance"), classes: [], active: false, created_at: "" };
    const issues = issuesOf({
      ...base, status: "failed", failure_reason: "Out of memory.",
      warnings: [{ code: "small_test_set", message: "Few test images." }],
    });
    assert.deepEqual(issues, [
      { level: "error", code: "training_failed", message: "Out of memory." },
      { level: "warning", code: "small_test_set", message: "Few test images." },
    ]);
    assert.deepEqual(issuesOf({ ...base, status: "completed" }), []);
  });
});
