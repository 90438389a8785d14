// @ts-check
/**
 * @file What a panel says about the runs it leaves out: one line per reason, naming the first few
 * runs, instead of one line per run (thirty runs without groups would push the charts a screen
 * down).
 */

/** Runs a line names before it counts the rest. */
export const NAMED_RUNS = 3;

export class RunNotes {
  constructor() {
    /** @type {Map<string, {plural: string, runs: string[]}>} */
    this.reasons = new Map();
  }

  /**
   * @param {string} run
   * @param {string} singular what is said of the run, after its name: "has no groups to show".
   * @param {string} [plural] the same said of several runs: "have no groups to show".
   */
  add(run, singular, plural = singular) {
    const entry = this.reasons.get(singular) ?? { plural, runs: [] };
    entry.runs.push(run);
    this.reasons.set(singular, entry);
  }

  /**
   * One line per reason, in the order the reasons first came: "Run a has no groups to show." for
   * one run, "5 runs have no groups to show: a, b, c and 2 more." for several.
   * @returns {string[]}
   */
  lines() {
    return [...this.reasons].map(([singular, { plural, runs }]) => {
      if (runs.length === 1) return `Run ${runs[0]} ${singular}.`;
      const named = runs.slice(0, NAMED_RUNS).join(', ');
      const more = runs.length - NAMED_RUNS;
      return `${runs.length} runs ${plural}: ${named}${more > 0 ? ` and ${more} more` : ''}.`;
    });
  }
}
