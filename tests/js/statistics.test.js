// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { headlineColumns } from "../../functions/segpipe/ui/model-table.js";
import { seriesPath, thresholdAt, xOf, PLOT_SIZE } from "../../functions/segpipe/ui/plot.js";
import { firstSplit, startThreshold } from "../../functions/segpipe/ui/review.js";
import { OVERALL, STAT_COLUMNS, cellValue, hasValues, splitsOf } from "../../functions/segpipe/ui/statistics.js";

/** @param {string} key */
const column = (key) => {
  const found = STAT_COLUMNS.find((c) => c.key === key);
  if (!found) throw new Error(key);
  return found;
};

const instance = {
  images: 4,
  objects: 40,
  at: { threshold: 0.5, overall: { f1: 0.8 } },
  ap_overall: { ap50: 0.7, ap: null },
  ap_per_class: { nucleus: { ap50: 0.6 } },
  sweep: [
    { threshold: 0.3, overall: { f1: 0.7, precision: null }, per_class: { nucleus: { f1: 0.6 } } },
    { threshold: 0.5, overall: { f1: 0.8 } },
  ],
};

describe("statistics columns", () => {
  it("shows a column when any sweep point or AP has a value", () => {
    assert.equal(hasValues(column("f1"), [instance]), true);
    assert.equal(hasValues(column("precision"), [instance]), false);
    assert.equal(hasValues(column("ap50"), [instance]), true);
    assert.equal(hasValues(column("ap"), [instance]), false);
    assert.equal(hasValues(column("iou"), [instance]), false);
  });

  it("reads a cell of a class or of the overall row", () => {
    const point = instance.sweep[0];
    assert.equal(cellValue(instance, point, OVERALL, column("f1")), 0.7);
    assert.equal(cellValue(instance, point, "nucleus", column("f1")), 0.6);
    assert.equal(cellValue(instance, point, "mitotic", column("f1")), null);
    assert.equal(cellValue(instance, null, OVERALL, column("f1")), null);
  });

  it("reads AP whatever the threshold", () => {
    assert.equal(cellValue(instance, null, OVERALL, column("ap50")), 0.7);
    assert.equal(cellValue(instance, null, "nucleus", column("ap50")), 0.6);
    assert.equal(cellValue(instance, null, "mitotic", column("ap50")), null);
  });

  it("puts test before train and leaves out a split without figures", () => {
    const base = { model_type: /** @type {const} */ ("instance"), classes: [], threshold: 0.5, suggested_threshold: null };
    assert.deepEqual(splitsOf({ ...base, train: instance, test: instance }), ["test", "train"]);
    assert.deepEqual(splitsOf({ ...base, train: instance, test: null }), ["train"]);
  });
});

describe("the model table's headline columns", () => {
  const row = {
    project: "p", version: 1, label: "l", status: /** @type {const} */ ("completed"), model_type: /** @type {const} */ ("semantic"),
    classes: [], active: false, created_at: "",
  };

  it("shows the headline numbers some row has", () => {
    const models = [{ ...row, headline: { split: "test", threshold: 0.5, mean_iou: 0.7, f1: null } }, { ...row, headline: null }];
    assert.deepEqual(headlineColumns(models).map((c) => c.key), ["mean_iou"]);
  });

  it("falls back to F1, precision and recall when no row has any", () => {
    assert.deepEqual(headlineColumns([row]).map((c) => c.key), ["f1", "precision", "recall"]);
  });
});

describe("the threshold plot", () => {
  it("draws a series through the sweep, lifting the pen over missing values", () => {
    const sweep = [
      { threshold: 0, overall: { f1: 1 } },
      { threshold: 0.5, overall: { f1: 0.5 } },
      { threshold: 0.6, overall: {} },
      { threshold: 1, overall: { f1: 0 } },
    ];
    assert.equal(seriesPath(sweep, "f1", PLOT_SIZE), "M40.0,30.0L243.0,135.0M446.0,240.0");
    assert.equal(seriesPath(sweep, "recall", PLOT_SIZE), "");
  });

  it("maps a click position back to the threshold under it", () => {
    for (const t of [0, 0.25, 0.8, 1]) assert.ok(Math.abs(thresholdAt(PLOT_SIZE, xOf(PLOT_SIZE, t)) - t) < 1e-12);
  });
});

describe("where the review starts", () => {
  it("starts on test images unless there are none", () => {
    assert.equal(firstSplit({ split: "test", total: 0, images: [] }), "train");
    assert.equal(firstSplit({ split: "test", total: 3, images: [] }), "test");
    assert.equal(firstSplit(null), "test");
  });

  it("starts the slider at the analysis threshold, else the suggested one, else 0.5, on the grid", () => {
    assert.equal(startThreshold({ analysis_threshold: 0.62, suggested_threshold: 0.3 }).toFixed(2), "0.60");
    assert.equal(startThreshold({ analysis_threshold: null, suggested_threshold: 0.31 }).toFixed(2), "0.30");
    assert.equal(startThreshold({}).toFixed(2), "0.50");
    assert.equal(startThreshold({ analysis_threshold: 0.99 }).toFixed(2), "0.95");
  });
});
