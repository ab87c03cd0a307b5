// @ts-check
// Saving the analysis threshold, as an explicit state machine:
//
//   idle --save--> saving --ok--> saved --any change--> idle
//                         \-fail-> failed --any change--> idle
//
// "saved" and "failed" keep their message until the next change (slider, model reload); a change
// while saving leaves it saving. What the status line and the button show follows from the state,
// the saved threshold and the slider's threshold alone (`describeSave`).

import { sameThreshold } from "./threshold.js";
import { threshold as formatThreshold } from "./format.js";

/**
 * @typedef {{kind: "idle"} | {kind: "saving"} | {kind: "saved", value: number | null}
 *   | {kind: "failed", message: string}} SaveState
 */

/** @type {SaveState} */
export const IDLE = Object.freeze({ kind: "idle" });
/** @type {SaveState} */
export const SAVING = Object.freeze({ kind: "saving" });

/**
 * The state after the slider or the saved threshold changed.
 * @param {SaveState} state
 * @returns {SaveState}
 */
export function afterChange(state) {
  return state.kind === "saving" ? state : IDLE;
}

/** @typedef {"" | "dirty" | "saved" | "failed"} SaveTone */
/** @typedef {{text: string, tone: SaveTone, buttonDisabled: boolean}} SaveView */

/**
 * What the status line says and whether "Update analysis threshold" can be pressed.
 * @param {SaveState} state
 * @param {number | null | undefined} saved the version's analysis threshold
 * @param {number} slider the slider's threshold
 * @returns {SaveView}
 */
export function describeSave(state, saved, slider) {
  const clean = sameThreshold(saved, slider);
  switch (state.kind) {
    case "saving":
      return { text: "Saving…", tone: "", buttonDisabled: true };
    case "saved":
      return {
        text: `Saved: analysis threshold is now ${formatThreshold(state.value)}.`,
        tone: "saved",
        buttonDisabled: clean,
      };
    case "failed":
      return { text: `Not saved: ${state.message}`, tone: "failed", buttonDisabled: false };
    default:
      return clean
        ? { text: "", tone: "", buttonDisabled: true }
        : { text: `Slider at ${slider.toFixed(2)}, not saved.`, tone: "dirty", buttonDisabled: false };
  }
}
