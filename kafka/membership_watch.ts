/**
 * Keeps a consumer in its group when the client stops trying.
 *
 * @platformatic/kafka rejoins on its own after a heartbeat meets a
 * rebalance, and reports a rejoin that failed for good as an `error` event.
 * A commit that meets a rebalance also rejoins, but when that join fails
 * (a broker that froze mid-rebalance, its request timed out) the client has
 * cancelled its heartbeat and says nothing: it is out of the group for good,
 * still fetching the partitions it had, while the group gives them to the
 * other members. The watch sees such a client (`isActive()` false) and has
 * it join again once it has been out longer than a join takes, and has it
 * replaced if that does not bring it back.
 *
 * @module
 */

/**
 * What to do about a client out of its group: join again, or, when a join of
 * ours did not bring it back either, replace the client. A client can be
 * wedged (after a broker froze, every request of one was seen failing with
 * "Connection closed" for as long as the test waited, a minute, none of its
 * joins in the broker's log, while the other clients of its node went on).
 */
export type WatchAction = "rejoin" | "replace";

/** When to join again, or replace the client, from whether it is a member; time is an input. */
export class MembershipWatch {
  readonly #afterMs: number;
  #outSince: number | undefined;
  #rejoined = false;

  /** `afterMs`: how long a client may be out of its group before it is made to join (a join in progress is out too). */
  constructor(afterMs: number) {
    this.#afterMs = afterMs;
  }

  /** Hears whether the client is a member at `now`; what to do about it now, if anything. */
  check(active: boolean, now: number): WatchAction | undefined {
    if (active) {
      this.#outSince = undefined;
      this.#rejoined = false;
      return undefined;
    }
    this.#outSince ??= now;
    if (now - this.#outSince < this.#afterMs) return undefined;
    // What it does is out of the group too while it runs: give it as long again.
    this.#outSince = now;
    if (!this.#rejoined) {
      this.#rejoined = true;
      return "rejoin";
    }
    this.#rejoined = false;
    return "replace";
  }
}

/** What the watch reads of a consumer client. */
export interface GroupClient {
  /** Whether the client is a member of its group with its heartbeat running. */
  isActive(): boolean;
}

/**
 * Checks `client` every `everyMs` and calls `act` when it has been out of its
 * group for `afterMs` (see {@linkcode MembershipWatch}); returns the function
 * that stops the watch.
 */
export function watchMembership(
  client: GroupClient,
  { afterMs, everyMs, act }: { afterMs: number; everyMs: number; act: (action: WatchAction) => void },
): () => void {
  const watch = new MembershipWatch(afterMs);
  const timer = setInterval(() => {
    const action = watch.check(client.isActive(), Date.now());
    if (action) act(action);
  }, everyMs);
  return () => clearInterval(timer);
}
