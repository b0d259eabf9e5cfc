/**
 * Waiting that a shutdown can cut short.
 *
 * @module
 */

/**
 * Waits `ms`, or less if `signal` aborts first; never rejects.
 *
 * @example
 * ```ts
 * await sleep(50, AbortSignal.timeout(10)); // returns after 10 ms
 * ```
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0 || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
