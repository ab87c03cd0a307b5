// @ts-check
// The slider's score-threshold grid and comparisons on it.

export const GRID_MIN = 0.05;
export const GRID_MAX = 0.95;
export const GRID_STEP = 0.05;

/**
 * The grid value nearest to `value`, clamped to GRID_MIN .. GRID_MAX.
 * @param {number | string} value
 * @returns {number}
 */
export function snap(value) {
  const clamped = Math.min(GRID_MAX, Math.max(GRID_MIN, Number(value)));
  return Math.round(clamped / GRID_STEP) * GRID_STEP;
}

/**
 * The key a grid value is known by (two decimals, as the slider shows it).
 * @param {number} value
 * @returns {string}
 */
export function gridKey(value) {
  return snap(value).toFixed(2);
}

/**
 * Every grid value, smallest first.
 * @returns {number[]}
 */
export function gridValues() {
  const steps = Math.round((GRID_MAX - GRID_MIN) / GRID_STEP);
  return Array.from({ length: steps + 1 }, (_, index) => snap(GRID_MIN + index * GRID_STEP));
}

/**
 * Whether two thresholds are both set and equal (to within rounding).
 * @param {number | null | undefined} a
 * @param {number | null | undefined} b
 * @returns {boolean}
 */
export function sameThreshold(a, b) {
  return a !== null && a !== undefined && b !== null && b !== undefined && Math.abs(a - b) < 1e-6;
}

/**
 * Where a threshold sits along the slider's track: 0 at GRID_MIN, 1 at GRID_MAX.
 * @param {number} value
 * @returns {number}
 */
export function trackFraction(value) {
  return (snap(value) - GRID_MIN) / (GRID_MAX - GRID_MIN);
}
