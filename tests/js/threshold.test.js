// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { GRID_MAX, GRID_MIN, gridKey, gridValues, sameThreshold, snap, trackFraction } from "../../functions/segpipe/ui/threshold.js";

describe("snap", () => {
  it("rounds to the nearest 0.05", () => {
    assert.equal(snap(0.42).toFixed(2), "0.40");
    assert.equal(snap(0.43).toFixed(2), "0.45");
    assert.equal(snap("0.65").toFixed(2), "0.65");
  });

  it("clamps to the slider's range", () => {
    assert.equal(snap(0), GRID_MIN);
    assert.equal(snap(-3), GRID_MIN);
    assert.equal(snap(1).toFixed(2), GRID_MAX.toFixed(2));
    assert.equal(snap(0.999).toFixed(2), "0.95");
  });

  it("keys grid values by their two decimals", () => {
    assert.equal(gridKey(0.15000000000000002), "0.15");
    assert.equal(gridKey(0.151), "0.15");
  });
});

describe("gridValues", () => {
  it("lists the 19 slider values from 0.05 to 0.95", () => {
    const keys = gridValues().map((value) => value.toFixed(2));
    assert.equal(keys.length, 19);
    assert.equal(keys[0], "0.05");
    assert.equal(keys[18], "0.95");
    assert.equal(new Set(keys).size, 19);
  });
});

describe("sameThreshold", () => {
  it("is true only for two set, equal thresholds", () => {
    assert.equal(sameThreshold(0.3, 0.30000000001), true);
    assert.equal(sameThreshold(0.3, 0.35), false);
    assert.equal(sameThreshold(null, 0.3), false);
    assert.equal(sameThreshold(undefined, undefined), false);
  });
});

describe("trackFraction", () => {
  it("is 0 at the minimum, 1 at the maximum, linear between", () => {
    assert.equal(trackFraction(GRID_MIN), 0);
    assert.ok(Math.abs(trackFraction(GRID_MAX) - 1) < 1e-9);
    assert.ok(Math.abs(trackFraction(0.5) - 0.5) < 1e-9);
  });
});
