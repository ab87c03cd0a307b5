// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  ApiError, analysisPath, apiBase, asImagesPage, collectAnalysisImages, collectImages, errorFromAnswer, isAbort, messageOf,
  versionPath,
} from "../../functions/segpipe/ui/api.js";

describe("apiBase", () => {
  it("is the path above /ui/, whatever the stage prefix", () => {
    assert.equal(apiBase("/ui/"), "");
    assert.equal(apiBase("/ui/index.html"), "");
    assert.equal(apiBase("/prod/ui/"), "/prod");
    assert.equal(apiBase("/prod/ui"), "/prod");
  });
});

describe("errorFromAnswer", () => {
  it("reads the API's error envelope", () => {
    const error = errorFromAnswer(404, "Not Found", { error: { code: "version_not_found", message: "There is no version 42.", context: { version: 42 } } });
    assert.ok(error instanceof ApiError);
    assert.equal(error.status, 404);
    assert.equal(error.code, "version_not_found");
    assert.equal(error.message, "There is no version 42.");
    assert.deepEqual(error.context, { version: 42 });
  });

  it("falls back to a gateway's message, then to the status", () => {
    const gateway = errorFromAnswer(413, "Payload Too Large", { message: "Request Entity Too Large" });
    assert.equal(gateway.code, "http_413");
    assert.equal(gateway.message, "Request Entity Too Large");
    const bare = errorFromAnswer(502, "Bad Gateway", null);
    assert.equal(bare.message, "The API answered 502 Bad Gateway.");
    assert.deepEqual(bare.context, {});
  });
});

describe("errors", () => {
  it("tells aborts apart and reads messages of anything thrown", () => {
    const abort = new Error("stop");
    abort.name = "AbortError";
    assert.equal(isAbort(abort), true);
    assert.equal(isAbort(new Error("x")), false);
    assert.equal(isAbort("AbortError"), false);
    assert.equal(messageOf(new ApiError(0, "network_error", "unreachable")), "unreachable");
    assert.equal(messageOf("plain"), "plain");
  });
});

describe("paths", () => {
  it("encodes the parts of a version's path", () => {
    assert.equal(versionPath("a b", 3), "/projects/a%20b/models/3");
  });
});

describe("collectImages", () => {
  /** @param {number} n */
  const image = (n) => ({ file_name: `${n}.png`, split: "test", stem: String(n), width: 1, height: 1, objects: 0, predictions_url: `/p/${n}` });

  it("asks page after page until the total is reached", async () => {
    /** @type {number[]} */
    const offsets = [];
    const list = await collectImages("test", async (offset) => {
      offsets.push(offset);
      const images = [offset, offset + 1].filter((n) => n < 5).map(image);
      return { total: 5, offset, images };
    });
    assert.deepEqual(offsets, [0, 2, 4]);
    assert.equal(list.split, "test");
    assert.equal(list.total, 5);
    assert.deepEqual(list.images.map((i) => i.stem), ["0", "1", "2", "3", "4"]);
  });

  it("stops at an empty page even if the total said more", async () => {
    let calls = 0;
    const list = await collectImages("train", async (offset) => {
      calls += 1;
      return { total: 10, offset, images: offset === 0 ? [image(0)] : [] };
    });
    assert.equal(calls, 2);
    assert.equal(list.total, 1);
  });
});

describe("analysis images", () => {
  /** @param {string} stem */
  const entry = (stem) => ({ file_name: `${stem}.png`, stem });

  it("builds the analysis path with encoded parts", () => {
    assert.equal(analysisPath("lab", 3), "/projects/lab/analyses/3");
    assert.equal(analysisPath("a b", "x/y"), "/projects/a%20b/analyses/x%2Fy");
  });

  it("reads a bare list or an {images, total} page", () => {
    assert.deepEqual(asImagesPage([entry("a")]), { images: [entry("a")] });
    assert.deepEqual(asImagesPage({ images: [entry("a")], total: 3, offset: 0 }), { images: [entry("a")], total: 3 });
    assert.deepEqual(asImagesPage({ images: [entry("a")] }), { images: [entry("a")] });
    assert.deepEqual(asImagesPage(null), { images: [] });
  });

  it("pages on while the total says there are more, and stops on an empty page", async () => {
    /** @type {number[]} */
    const offsets = [];
    const all = ["a", "b", "c"].map(entry);
    const paged = await collectAnalysisImages(async (offset) => {
      offsets.push(offset);
      return { images: all.slice(offset, offset + 2), total: 3 };
    });
    assert.deepEqual(offsets, [0, 2]);
    assert.deepEqual(paged, { total: 3, images: all });
    const short = await collectAnalysisImages(async () => ({ images: [], total: 9 }));
    assert.deepEqual(short, { total: 0, images: [] });
  });

  it("asks once when the listing gives no total", async () => {
    let calls = 0;
    const list = await collectAnalysisImages(async () => { calls += 1; return { images: [entry("a")] }; });
    assert.equal(calls, 1);
    assert.equal(list.total, 1);
  });
});
