/**
 * Waiting for the sink inside kafkajs's `eachBatch`: heartbeating meanwhile,
 * for a bounded time only, and not at all once the group rebalances. Each of
 * these outcomes is the caller's to act on; the work itself goes on whatever
 * the wait's outcome.
 *
 * @module
 */

/** How {@linkcode waitBounded} ended. */
export type Waited<T> =
  | { readonly kind: "settled"; readonly value: T }
  | { readonly kind: "failed"; readonly error: unknown }
  /** Still running after `giveUpAfterMs`. */
  | { readonly kind: "slow" }
  /** A heartbeat failed with `error`, which says this member must rejoin the group. */
  | { readonly kind: "rejoin"; readonly error: unknown };

/** How {@linkcode waitBounded} waits. */
export interface BoundedWaitOptions {
  /** Called every `heartbeatEveryMs` while waiting. */
  readonly heartbeat: () => Promise<void>;
  readonly heartbeatEveryMs: number;
  readonly giveUpAfterMs: number;
}

/**
 * The heartbeat errors after which the group goes on only once this member
 * rejoins: kafkajs's own rebalancing errors, and an unknown member (the group
 * evicted us). kafkajs rejoins when `eachBatch` throws one of them.
 */
const REJOIN_ERRORS: ReadonlySet<string> = new Set([
  "REBALANCE_IN_PROGRESS",
  "ILLEGAL_GENERATION",
  "NOT_COORDINATOR_FOR_GROUP",
  "UNKNOWN_MEMBER_ID",
]);

/** Whether a heartbeat's error means this member has to rejoin its group. */
export function mustRejoin(error: unknown): boolean {
  if (typeof error !== "object" || error === null || !("type" in error)) return false;
  return typeof error.type === "string" && REJOIN_ERRORS.has(error.type);
}

/**
 * Waits for `work`, heartbeating every `heartbeatEveryMs` (kafkajs heartbeats
 * only when asked), until it settles, `giveUpAfterMs` have passed, or a
 * heartbeat says the group is rebalancing. Other heartbeat errors are left to
 * the next beat: a broker that is slow to answer once is no reason to stop.
 */
export function waitBounded<T>(work: Promise<T>, options: BoundedWaitOptions): Promise<Waited<T>> {
  return new Promise((resolve) => {
    const end = (outcome: Waited<T>) => {
      clearInterval(beat);
      clearTimeout(bound);
      resolve(outcome);
    };
    const beat = setInterval(() => {
      options.heartbeat().catch((error) => {
        if (mustRejoin(error)) end({ kind: "rejoin", error });
      });
    }, options.heartbeatEveryMs);
    const bound = setTimeout(() => end({ kind: "slow" }), options.giveUpAfterMs);
    work.then((value) => end({ kind: "settled", value }), (error) => end({ kind: "failed", error }));
  });
}
