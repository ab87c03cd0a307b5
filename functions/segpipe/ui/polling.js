// @ts-check
// Loading a view again while what it shows can still change: one request at a time, the next one
// POLL_MS after an answer that is still busy and three times that after a failure, none once the
// view is gone.

import { isAbort } from "./api.js";

export const POLL_MS = 5000;

/** @template T */
export class Poller {
  /**
   * @param {object} steps
   * @param {(signal: AbortSignal) => Promise<T>} steps.fetch Loads what the view shows.
   * @param {(value: T) => boolean | Promise<boolean>} steps.show Draws it; true while it can still change.
   * @param {(error: unknown) => boolean} steps.failed Draws a failed load; true to try again later.
   */
  constructor({ fetch, show, failed }) {
    this.fetch = fetch;
    this.show = show;
    this.failed = failed;
    this.controller = new AbortController();
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /** The signal of every request of the view: aborted when it stops. */
  get signal() {
    return this.controller.signal;
  }

  async load() {
    clearTimeout(this.timer);
    /** @type {T} */
    let value;
    try {
      value = await this.fetch(this.signal);
    } catch (error) {
      if (isAbort(error)) return;
      if (this.failed(error)) this.again(3 * POLL_MS);
      return;
    }
    if (await this.show(value)) this.again(POLL_MS);
  }

  /** @param {number} delay */
  again(delay) {
    if (!this.signal.aborted) this.timer = setTimeout(() => this.load(), delay);
  }

  stop() {
    this.controller.abort();
    clearTimeout(this.timer);
  }
}
