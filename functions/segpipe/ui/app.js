// @ts-check
// segpipe model review page: the model table and one version's details, predictions and statistics;
// the analyses table and one analysis's summary, outputs and outlined images.
// Plain ES modules, no framework, no build step. Served by the API under a strict CSP: no inline
// scripts or style attributes (element.style set from script is fine), no external resources.
// This entry module wires the project form and the router to the views; the others do no work
// when imported.

import { AnalysesTableView } from "./analyses-table.js";
import { AnalysisPage } from "./analysis-view.js";
import { h, replace } from "./dom.js";
import { ModelTableView } from "./model-table.js";
import { isProjectName, parseRoute, projectHash } from "./router.js";
import { VersionView } from "./version-view.js";

const PROJECT_KEY = "segpipe.project";

/** @type {{destroy(): void} | null} */
let currentView = null;

/** @param {string} id @returns {HTMLElement} */
function byId(id) {
  return /** @type {HTMLElement} */ (document.getElementById(id));
}

function route() {
  if (currentView) currentView.destroy();
  currentView = null;
  const target = parseRoute(window.location.hash);
  const root = byId("app");
  replace(root);
  if (target.name === "home") {
    const stored = localStorage.getItem(PROJECT_KEY);
    if (stored && isProjectName(stored)) {
      window.location.replace(projectHash(stored));
      return;
    }
    root.append(homeView());
    return;
  }
  if (target.name === "models") {
    rememberProject(target.project);
    const views = [new ModelTableView(root, target.project), new AnalysesTableView(root, target.project)];
    currentView = { destroy: () => views.forEach((view) => view.destroy()) };
  } else if (target.name === "analysis") {
    rememberProject(target.project);
    currentView = new AnalysisPage(root, target.project, target.analysis);
  } else if (target.name === "version") {
    rememberProject(target.project);
    currentView = new VersionView(root, target.project, target.version);
  } else {
    root.append(
      h("section", { class: "panel" },
        h("h1", { text: "Page not found" }),
        h("p", {}, "There is nothing at this address. ", h("a", { href: "#/", text: "Go to the model table" }), "."),
      ),
    );
  }
}

/** @param {string} project */
function rememberProject(project) {
  if (!isProjectName(project)) return;
  localStorage.setItem(PROJECT_KEY, project);
  const input = /** @type {HTMLInputElement} */ (byId("project-input"));
  if (document.activeElement !== input) input.value = project;
}

function homeView() {
  return h("section", { class: "panel welcome", "data-testid": "home" },
    h("h1", { text: "AI models" }),
    h("p", { text: "Enter a project name above to see its trained models." }),
  );
}

function setupProjectForm() {
  const form = byId("project-form");
  const input = /** @type {HTMLInputElement} */ (byId("project-input"));
  const hint = byId("project-hint");
  input.value = localStorage.getItem(PROJECT_KEY) || "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const project = input.value.trim();
    if (!isProjectName(project)) {
      hint.textContent = "Use letters, digits, - and _ (up to 63 characters).";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    hint.textContent = "";
    input.removeAttribute("aria-invalid");
    const target = projectHash(project);
    if (window.location.hash === target) route();
    else window.location.hash = target;
  });
}

setupProjectForm();
window.addEventListener("hashchange", route);
route();
