// @ts-check
import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it, mock } from "node:test";

import { POLL_MS, Poller } from "../../functions/segpipe/ui/polling.js";

/** Lets the poller's awaited promises settle. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/**
 * A poller whose fetches answer `answers` in turn (an Error is thrown), recording what it did.
 * @param {(string | Error)[]} answers
 * @param {{busyWhile?: string, retry?: boolean}} [options]
 */
function recorder(answers, { busyWhile = "busy", retry = true } = {}) {
  /** @type {string[]} */
  const log = [];
  const poller = new Poller({
    fetch: async () => {
      const answer = answers.shift() ?? "done";
      if (answer instanceof Error) throw answer;
      return answer;
    },
    show: (value) => {
      log.push(`show ${value}`);
      return value === busyWhile;
    },
    failed: (error) => {
      log.push(`failed ${error instanceof Error ? error.message : error}`);
      return retry;
    },
  });
  return { poller, log };
}

describe("Poller", () => {
  beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }));
  afterEach(() => mock.timers.reset());

  it("loads again after POLL_MS while the answer is busy, then stops", async () => {
    const { poller, log } = recorder(["busy", "busy", "done"]);
    await poller.load();
    assert.deepEqual(log, ["show busy"]);
    mock.timers.tick(POLL_MS - 1);
    await settle();
    assert.deepEqual(log, ["show busy"]);
    mock.timers.tick(1);
    await settle();
    mock.timers.tick(POLL_MS);
    await settle();
    assert.deepEqual(log, ["show busy", "show busy", "show done"]);
    mock.timers.tick(10 * POLL_MS);
    await settle();
    assert.equal(log.length, 3);
  });

  it("tries again three times slower after a failure, unless told not to", async () => {
    const { poller, log } = recorder([new Error("down"), "done"]);
    await poller.load();
    mock.timers.tick(POLL_MS);
    await settle();
    assert.deepEqual(log, ["failed down"]);
    mock.timers.tick(2 * POLL_MS);
    await settle();
    assert.deepEqual(log, ["failed down", "show done"]);

    const gone = recorder([new Error("404"), "done"], { retry: false });
    await gone.poller.load();
    mock.timers.tick(10 * POLL_MS);
    await settle();
    assert.deepEqual(gone.log, ["failed 404"]);
  });

  it("does nothing more once stopped, and treats an aborted request as no answer", async () => {
    const { poller, log } = recorder(["busy", "busy"]);
    await poller.load();
    poller.stop();
    assert.equal(poller.signal.aborted, true);
    mock.timers.tick(10 * POLL_MS);
    await settle();
    assert.deepEqual(log, ["show busy"]);

    const abort = new DOMException("stopped", "AbortError");
    const aborted = recorder([/** @type {Error} */ (abort)]);
    await aborted.poller.load();
    mock.timers.tick(10 * POLL_MS);
    await settle();
    assert.deepEqual(aborted.log, []);
  });

  it("a manual load cancels the pending one instead of adding a second loop", async () => {
    const { poller, log } = recorder(["busy", "busy", "done", "busy"]);
    await poller.load();
    await poller.load();
    mock.timers.tick(POLL_MS);
    await settle();
    mock.timers.tick(10 * POLL_MS);
    await settle();
    assert.deepEqual(log, ["show busy", "show busy", "show done"]);
  });
});
