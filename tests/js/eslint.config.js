// Lint of the review page's modules (browser globals) and of their unit tests (Node globals).
// Run from the repository root with `-c tests/js/eslint.config.js` (`make js` does), so that
// ESLint's base path is the root and the page's folder, outside this one, is inside it.
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["functions/segpipe/ui/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.browser },
  },
  {
    files: ["tests/js/*.js"],
    languageOptions: { ecmaVersion: 2022, sourceType: "module", globals: globals.node },
  },
  {
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-shadow": "error",
      "no-implicit-globals": "error",
      "no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      "no-console": "error",
      "no-restricted-globals": ["error", "name", "event", "status"],
      "object-shorthand": "error",
      "no-param-reassign": "error",
      complexity: ["error", 15],
      "max-lines-per-function": ["error", { max: 60, skipBlankLines: true, skipComments: true }],
      "max-params": ["error", 6],
      "max-depth": ["error", 4],
    },
  },
];
