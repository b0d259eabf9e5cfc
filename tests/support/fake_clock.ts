/**
 * Waiting under `@sinonjs/fake-timers`: the clock only moves when the test
 * moves it, so a wait moves it in small steps until what it waits for holds.
 *
 * @module
 */
// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import type FakeTimers from "@sinonjs/fake-timers";

/** Moves `clock` on, `stepMs` at a time, until `condition` holds; fails after `limitMs` of simulated time. */
export async function tickUntil(
  clock: FakeTimers.InstalledClock,
  condition: () => boolean,
  limitMs: number,
  what: string,
  stepMs = 50,
): Promise<number> {
  for (let waited = 0; waited <= limitMs; waited += stepMs) {
    if (condition()) return waited;
    await clock.tickAsync(stepMs);
  }
  throw new Error(`${what}: not within ${limitMs} ms (simulated)`);
}

/** Settles `promise` while `clock` moves on; fails when it has not settled within `limitMs` of simulated time. */
export async function settleTicking<T>(
  clock: FakeTimers.InstalledClock,
  promise: Promise<T>,
  limitMs = 30_000,
): Promise<T> {
  let outcome: { value: T } | { error: unknown } | undefined;
  promise.then((value) => outcome = { value }, (error) => outcome = { error });
  await tickUntil(clock, () => outcome !== undefined, limitMs, "an answer, or a failure");
  if ("error" in outcome!) throw outcome.error;
  return outcome!.value;
}
