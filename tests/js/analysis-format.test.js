// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  OUTPUT_NAMES, anyAnalysisBusy, areaText, areaUm2, classOrder, classSummary, isBusy, isSafeUrl, objectCounts,
  outputLinks, progressOf, statusSentence, thresholdPairs,
} from "../../functions/segpipe/ui/analysis-format.js";

/** @typedef {import("../../functions/segpipe/ui/types.js").AnalysisView} AnalysisView */

/** @param {Partial<AnalysisView>} fields @returns {AnalysisView} */
function view(fields) {
  return {
    project: "lab", analysis: 3, name: "plate 7", images_folder: "plate-7", version: 2, status: "completed",
    images: 4, thresholds: { nucleus: 0.5, cell: 0.35 }, created_at: "2026-12-01T10:00:00Z",
    model_type: "instance", classes: ["nucleus", "cell"], job_name: "segpipe-lab-a3-0123abcd", ...fields,
  };
}

describe("progressOf", () => {
  it("counts images done of the folder's total while running", () => {
    assert.deepEqual(progressOf({ status: "running", images: 40, images_done: 12 }),
      { done: 12, total: 40, fraction: 0.3, text: "12 of 40 images" });
  });

  it("starts a running analysis without a count at 0 and clamps counts into 0..total", () => {
    assert.equal(progressOf({ status: "running", images: 5, images_done: null })?.done, 0);
    assert.equal(progressOf({ status: "running", images: 5, images_done: 9 })?.done, 5);
    assert.equal(progressOf({ status: "running", images: 5, images_done: -2 })?.done, 0);
  });

  it("is whole once completed, absent when queued without a count, and says image for one", () => {
    assert.deepEqual(progressOf({ status: "completed", images: 1, images_done: null }),
      { done: 1, total: 1, fraction: 1, text: "1 of 1 image" });
    assert.equal(progressOf({ status: "queued", images: 7 }), null);
    assert.equal(progressOf({ status: "running", images: 0, images_done: 0 })?.fraction, 0);
  });
});

describe("busy", () => {
  it("is queued or running, for one analysis or any of a table", () => {
    assert.equal(isBusy("queued"), true);
    assert.equal(isBusy("running"), true);
    assert.equal(isBusy("completed"), false);
    assert.equal(anyAnalysisBusy([{ status: "failed" }, { status: "running" }]), true);
    assert.equal(anyAnalysisBusy([{ status: "stopped" }, { status: "completed" }]), false);
    assert.equal(anyAnalysisBusy([]), false);
  });
});

describe("class figures", () => {
  it("keeps the version's class order, then other names sorted", () => {
    assert.deepEqual(classOrder(["b", "a"], { z: 1, a: 2 }, null, { c: 0 }), ["b", "a", "c", "z"]);
  });

  it("formats the thresholds used, in class order", () => {
    assert.deepEqual(thresholdPairs({ cell: 0.35, nucleus: 0.5 }, ["nucleus", "cell"]), [["nucleus", "0.50"], ["cell", "0.35"]]);
    assert.deepEqual(thresholdPairs(null), []);
  });

  it("counts kept objects per class, zero for a class without any, and sums them", () => {
    assert.deepEqual(objectCounts({ cell: 4 }, ["nucleus", "cell"]), { perClass: [["nucleus", 0], ["cell", 4]], total: 4 });
    assert.deepEqual(objectCounts(undefined, []), { perClass: [], total: 0 });
  });
});

describe("areas", () => {
  it("takes the summary's µm², else pixels times the pixel size squared, else none", () => {
    assert.equal(areaUm2({ objects: 1, area: 100, area_um2: 6.5 }, 0.5), 6.5);
    assert.equal(areaUm2({ objects: 1, area: 100 }, 0.5), 25);
    assert.equal(areaUm2({ objects: 1, area: 100 }, null), null);
    assert.equal(areaUm2({ objects: 1, area: 100 }, 0), null);
  });

  it("reads as whole pixels or µm² with fewer decimals the larger it is", () => {
    assert.equal(areaText(12345.6, "px"), "12,346 px");
    assert.equal(areaText(1234.56, "µm²"), "1,235 µm²");
    assert.equal(areaText(12.345, "µm²"), "12.3 µm²");
    assert.equal(areaText(0.01234, "µm²"), "0.012 µm²");
    assert.equal(areaText(null, "px"), "–");
  });
});

describe("classSummary", () => {
  it("reads the stored summary: objects, area, µm² and mean area per class", () => {
    const rows = classSummary(view({
      pixel_size: 0.5,
      summary: {
        version: 2, classes: ["nucleus", "cell"], thresholds: { nucleus: 0.5, cell: 0.35 }, images: 4, objects: 5,
        per_class: { nucleus: { objects: 4, area: 400 }, cell: { objects: 1, area: 90, area_um2: 22.5 } },
      },
    }));
    assert.deepEqual(rows, [
      { name: "nucleus", threshold: "0.50", objects: 4, area: 400, areaUm2: 100, meanArea: 100 },
      { name: "cell", threshold: "0.35", objects: 1, area: 90, areaUm2: 22.5, meanArea: 90 },
    ]);
  });

  it("falls back to the row's counts without a summary (no area, no mean)", () => {
    const rows = classSummary(view({ status: "running", objects: { cell: 2 } }));
    assert.deepEqual(rows.map((row) => [row.name, row.objects, row.area, row.areaUm2, row.meanArea]),
      [["nucleus", 0, 0, null, null], ["cell", 2, 0, null, 0]]);
  });
});

describe("links", () => {
  it("allows http(s) URLs and same-origin paths only", () => {
    assert.equal(isSafeUrl("https://bucket.s3.eu-west-1.amazonaws.com/x?X-Amz-Signature=1"), true);
    assert.equal(isSafeUrl("http://127.0.0.1:5000/bucket/key"), true);
    assert.equal(isSafeUrl("/projects/lab/analyses/3/images/a"), true);
    for (const bad of ["javascript:alert(1)", "JAVASCRIPT:alert(1)", "data:text/html,x", "//evil.example/x", "/\\evil", "", null, 3]) {
      assert.equal(isSafeUrl(bad), false, String(bad));
    }
  });

  it("orders the merged outputs as the API names them, then others, leaving unsafe ones out", () => {
    const links = outputLinks({
      "summary.json": "https://s/summary", "masks.zip": "https://s/masks", "coco.json": "https://s/coco",
      "objects.csv": "javascript:alert(1)", "images.csv": "https://s/images",
    });
    assert.deepEqual(links.map((link) => link.name), ["coco.json", "images.csv", "summary.json", "masks.zip"]);
    assert.equal(links[0].url, "https://s/coco");
    assert.deepEqual(OUTPUT_NAMES, ["coco.json", "objects.csv", "images.csv", "summary.json"]);
    assert.deepEqual(outputLinks(undefined), []);
  });
});

describe("statusSentence", () => {
  it("says why a failed or stopped analysis ended and that a queued one waits", () => {
    assert.equal(statusSentence({ status: "failed", failure_reason: "Image a.tif could not be read." }), "Image a.tif could not be read.");
    assert.equal(statusSentence({ status: "failed" }), "No reason was recorded.");
    assert.equal(statusSentence({ status: "stopped", status_history: [{ status: "stopped", at: "x", reason: "Stopped by a person." }] }), "Stopped by a person.");
    assert.match(String(statusSentence({ status: "stopped" })), /stopped before it completed/);
    assert.match(String(statusSentence({ status: "queued" })), /^Queued/);
    assert.equal(statusSentence({ status: "completed" }), null);
  });
});
