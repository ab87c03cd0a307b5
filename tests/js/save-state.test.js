// @ts-check
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { IDLE, SAVING, afterChange, describeSave } from "../../functions/segpipe/ui/save-state.js";

describe("the save state machine", () => {
  it("idle: says nothing and offers no save while the slider is at the saved threshold", () => {
    assert.deepEqual(describeSave(IDLE, 0.5, 0.5), { text: "", tone: "", buttonDisabled: true });
  });

  it("idle: says the slider is not saved when it moved away", () => {
    assert.deepEqual(describeSave(IDLE, 0.5, 0.65), { text: "Slider at 0.65, not saved.", tone: "dirty", buttonDisabled: false });
    assert.equal(describeSave(IDLE, null, 0.5).tone, "dirty");
  });

  it("saving: says so and blocks a second save, whatever the slider does", () => {
    assert.deepEqual(describeSave(SAVING, 0.5, 0.65), { text: "Saving…", tone: "", buttonDisabled: true });
    assert.equal(afterChange(SAVING), SAVING);
  });

  it("saved: keeps its message until the next change, then goes back to idle", () => {
    const saved = { kind: /** @type {const} */ ("saved"), value: 0.65 };
    assert.deepEqual(describeSave(saved, 0.65, 0.65), { text: "Saved: analysis threshold is now 0.65.", tone: "saved", buttonDisabled: true });
    assert.equal(describeSave(saved, 0.65, 0.7).buttonDisabled, false);
    assert.equal(afterChange(saved), IDLE);
  });

  it("failed: says why and lets the save be tried again, until the next change", () => {
    const failed = { kind: /** @type {const} */ ("failed"), message: "The API could not be reached." };
    assert.deepEqual(describeSave(failed, 0.5, 0.5), { text: "Not saved: The API could not be reached.", tone: "failed", buttonDisabled: false });
    assert.equal(afterChange(failed), IDLE);
  });
});
