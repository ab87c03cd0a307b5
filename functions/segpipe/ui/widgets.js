// @ts-check
// Pieces the model table and the version page share: class chips, the status cell, activation.
/** @import { ModelSummary } from "./types.js" */

import { messageOf, setActive } from "./api.js";
import { classColour } from "./colours.js";
import { h, notify, statusBadge, swatch } from "./dom.js";

/** @param {readonly string[]} classes @returns {HTMLSpanElement} */
export function classChips(classes) {
  return h("span", { class: "chips" }, classes.map((name, index) =>
    h("span", { class: "chip" }, swatch(classColour(index)), name)));
}

/**
 * The status badge, with the epoch while training.
 * @param {ModelSummary} model
 * @returns {HTMLSpanElement}
 */
export function statusCell(model) {
  const badge = statusBadge(model.status);
  const progress = model.progress;
  if (model.status !== "training" || !progress) return badge;
  const bar = h("progress", { max: progress.epochs, value: progress.epoch, "aria-label": "Training progress" });
  return h("span", { class: "status-progress" }, badge, bar,
    h("span", { class: "muted small", "data-testid": "epoch", text: `epoch ${progress.epoch} / ${progress.epochs}` }));
}

/**
 * "Activate" (completed versions only) or "Deactivate"; `after` runs once the API answered.
 * @param {ModelSummary} model
 * @param {() => void} after
 * @returns {HTMLButtonElement}
 */
export function activationButton(model, after) {
  const activate = !model.active;
  const action = activate ? "activate" : "deactivate";
  const button = h("button", {
    type: "button",
    class: activate ? "secondary small" : "ghost small",
    "data-testid": action,
    disabled: activate && model.status !== "completed",
    title: activate && model.status !== "completed" ? "Only a completed version can be activated" : null,
    text: activate ? "Activate" : "Deactivate",
  });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await setActive(model.project, model.version, action);
      notify(`Version ${model.version} is ${activate ? "now active" : "no longer active"}.`, "success");
    } catch (error) {
      notify(`Could not ${action} version ${model.version}: ${messageOf(error)}`, "error");
    }
    after();
  });
  return button;
}
