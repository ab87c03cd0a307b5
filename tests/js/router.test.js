// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { ANALYSIS_PATTERN, analysisHash, isProjectName, parseRoute, projectHash, versionHash } from "../../functions/segpipe/ui/router.js";

describe("parseRoute", () => {
  it("reads home, a project's table and a version", () => {
    assert.deepEqual(parseRoute(""), { name: "home" });
    assert.deepEqual(parseRoute("#/"), { name: "home" });
    assert.deepEqual(parseRoute("#/projects/nuclei-lab"), { name: "models", project: "nuclei-lab" });
    assert.deepEqual(parseRoute("#/projects/lab/models/12"), { name: "version", project: "lab", version: "12" });
  });

  it("ignores trailing slashes and decodes the parts", () => {
    assert.deepEqual(parseRoute("#/projects/lab//"), { name: "models", project: "lab" });
    assert.deepEqual(parseRoute("#/projects/a%20b/models/x%2Fy"), { name: "version", project: "a b", version: "x/y" });
  });

  it("names anything else unknown, malformed escapes included", () => {
    assert.deepEqual(parseRoute("#/elsewhere"), { name: "unknown" });
    assert.deepEqual(parseRoute("#/projects/lab/models"), { name: "unknown" });
    assert.deepEqual(parseRoute("#/projects/%E0%A4%A"), { name: "unknown" });
  });

  it("reads an analysis", () => {
    assert.deepEqual(parseRoute("#/projects/lab/analyses/3"), { name: "analysis", project: "lab", analysis: "3" });
    assert.deepEqual(parseRoute("#/projects/lab/analyses/3/"), { name: "analysis", project: "lab", analysis: "3" });
    assert.deepEqual(parseRoute("#/projects/lab/analyses"), { name: "unknown" });
    assert.deepEqual(parseRoute("#/projects/lab/analyses/3/images"), { name: "unknown" });
  });

  it("takes analysis numbers from 1 to 999999 only", () => {
    assert.equal(ANALYSIS_PATTERN.test("1"), true);
    assert.equal(ANALYSIS_PATTERN.test("999999"), true);
    for (const bad of ["0", "01", "1000000", "x", "-1", ""]) assert.equal(ANALYSIS_PATTERN.test(bad), false, bad);
  });

  it("round-trips the hashes it builds", () => {
    assert.deepEqual(parseRoute(analysisHash("lab", 12)), { name: "analysis", project: "lab", analysis: "12" });
    assert.deepEqual(parseRoute(projectHash("lab_1")), { name: "models", project: "lab_1" });
    assert.deepEqual(parseRoute(versionHash("lab", 7)), { name: "version", project: "lab", version: "7" });
  });
});

describe("isProjectName", () => {
  it("accepts what the API accepts and refuses the rest", () => {
    assert.equal(isProjectName("nuclei-lab_2"), true);
    assert.equal(isProjectName("a".repeat(63)), true);
    assert.equal(isProjectName("a".repeat(64)), false);
    assert.equal(isProjectName("-lab"), false);
    assert.equal(isProjectName("lab/../x"), false);
    assert.equal(isProjectName(""), false);
  });
});
