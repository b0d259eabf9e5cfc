/**
 * What a node does on the minority side of a cut, as Akka's split-brain
 * resolver has the minority down itself: it stops consuming and leaves the
 * Kafka group at once, so that Kafka gives its partitions to the majority
 * instead of leaving them stalled for as long as the cut lasts, and it
 * consumes again once it has heard a majority for a while, before the
 * others have downed it. Pure: whether the node hears a majority, and the
 * time, go in; what to do comes out.
 *
 * @module
 */

/** What the node must do now. */
export type MinorityAction = "leave" | "rejoin";

/** How long a node must hear a majority without a break before it joins again: a flapping link must not churn the group. */
export const REJOIN_AFTER_MS = 2_000;

/**
 * Tracks whether this node left the group for being on the minority side.
 *
 * @example
 * ```ts
 * const rule = new MinorityRule(2000);
 * rule.step(true, 0);     // undefined: consuming, and hears a majority
 * rule.step(false, 250);  // "leave"
 * rule.step(true, 500);   // undefined: hears a majority, not for long yet
 * rule.step(true, 2500);  // "rejoin"
 * ```
 */
export class MinorityRule {
  readonly #rejoinAfterMs: number;
  #left = false;
  /** Since when the node has heard a majority without a break, while out. */
  #majoritySince: number | undefined;

  constructor(rejoinAfterMs: number = REJOIN_AFTER_MS) {
    this.#rejoinAfterMs = rejoinAfterMs;
  }

  /** Whether the node is out of the group for being on the minority side. */
  get left(): boolean {
    return this.#left;
  }

  /** Whether the node hears a majority now (`ClusterNode.hearsMajority`); what to do about it, if anything. */
  step(hearsMajority: boolean, now: number): MinorityAction | undefined {
    if (!this.#left) {
      if (hearsMajority) return undefined;
      this.#left = true;
      this.#majoritySince = undefined;
      return "leave";
    }
    if (!hearsMajority) {
      this.#majoritySince = undefined;
      return undefined;
    }
    this.#majoritySince ??= now;
    if (now - this.#majoritySince < this.#rejoinAfterMs) return undefined;
    this.#left = false;
    return "rejoin";
  }

  /** Joining again failed: the node is still out, and tries again at the next step that hears a majority. */
  rejoinFailed(): void {
    this.#left = true;
  }
}
