// @ts-check
// One colour per class, in the order of the version's classes.

export const CLASS_COLOURS = [
  "#ffb000", "#4cc9f0", "#f72585", "#7bd389", "#b388ff",
  "#ff6b35", "#e9ff70", "#4f7cff", "#ff99c8", "#00d1b2",
];

/**
 * @param {number} index the class's position in the version's classes
 * @returns {string}
 */
export function classColour(index) {
  return CLASS_COLOURS[index % CLASS_COLOURS.length];
}

/**
 * The colour of a class by name; an unknown name gets the first colour.
 * @param {readonly string[]} classes
 * @param {string} name
 * @returns {string}
 */
export function colourOf(classes, name) {
  const index = classes.indexOf(name);
  return classColour(index < 0 ? 0 : index);
}
