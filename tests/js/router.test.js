// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { isProjectName, parseRoute, projectHash, versionHash } from "../../functions/segpipe/ui/router.js";

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

  it("round-trips the hashes it builds", () => {
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
