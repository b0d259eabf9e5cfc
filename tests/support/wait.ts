/**
 * Bounded waits for tests: poll a condition, fail with what was awaited.
 * Tests never sleep a fixed time.
 *
 * @module
 */

/**
 * Polls `check` (every `everyMs`) until it returns a value that is not
 * `undefined`/`false`; fails with `what` and `describe()` after `timeoutMs`.
 *
 * @example
 * ```ts
 * let n = 0;
 * await eventually("n reaching 3", () => ++n >= 3, 1000, () => `n is ${n}`, 1);
 * ```
 */
export async function eventually<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 30_000,
  describe: () => Promise<string> | string = () => "",
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms. ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
