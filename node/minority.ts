/**
 * What a node does on the minority side of a cut, as Akka's split-brain
 * resolver has the minority down itself: it stops consuming and leaves the
 * Kafka group at once, so that Kafka gives its partitions to the majority
 * instead of leaving them stalled for as long as the cut lasts, and it
 * consumes again if it hears a majority before the others have downed it.
 * Pure: whether the node hears a majority goes in, what to do comes out.
 *
 * @module
 */

/** What the node must do now. */
export type MinorityAction = "leave" | "rejoin";

/**
 * Tracks whether this node left the group for being on the minority side.
 *
 * @example
 * ```ts
 * const rule = new MinorityRule();
 * rule.step(true);  // undefined: consuming, and hears a majority
 * rule.step(false); // "leave"
 * rule.step(false); // undefined: already out
 * rule.step(true);  // "rejoin"
 * ```
 */
export class MinorityRule {
  #left = false;

  /** Whether the node left the group for being on the minority side. */
  get left(): boolean {
    return this.#left;
  }

  /** Whether the node hears a majority now (`ClusterNode.hearsMajority`); what to do about it, if anything. */
  step(hearsMajority: boolean): MinorityAction | undefined {
    if (!this.#left && !hearsMajority) {
      this.#left = true;
      return "leave";
    }
    if (this.#left && hearsMajority) {
      this.#left = false;
      return "rejoin";
    }
    return undefined;
  }
}
