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
 * it join again once it has been out longer than a join takes.
 *
 * @module
 */

/** When to join again, from whether the client is a member; time is an input. */
export class MembershipWatch {
  readonly #afterMs: number;
  #outSince: number | undefined;

  /** `afterMs`: how long a client may be out of its group before it is made to join (a join in progress is out too). */
  constructor(afterMs: number) {
    this.#afterMs = afterMs;
  }

  /** Hears whether the client is a member at `now`; true when it must join again now. */
  check(active: boolean, now: number): boolean {
    if (active) {
      this.#outSince = undefined;
      return false;
    }
    this.#outSince ??= now;
    if (now - this.#outSince < this.#afterMs) return false;
    // The join it starts is out of the group too while it runs: give it as long again.
    this.#outSince = now;
    return true;
  }
}

/** What the watch reads of a consumer client. */
export interface GroupClient {
  /** Whether the client is a member of its group with its heartbeat running. */
  isActive(): boolean;
}

/**
 * Checks `client` every `everyMs` and calls `rejoin` when it has been out of
 * its group for `afterMs`; returns the function that stops the watch.
 */
export function watchMembership(
  client: GroupClient,
  { afterMs, everyMs, rejoin }: { afterMs: number; everyMs: number; rejoin: (outForMs: number) => void },
): () => void {
  const watch = new MembershipWatch(afterMs);
  const timer = setInterval(() => {
    if (watch.check(client.isActive(), Date.now())) rejoin(afterMs);
  }, everyMs);
  return () => clearInterval(timer);
}
