/**
 * The two counting rules membership decides by. A side of the cluster keeps
 * working (its leader downs the others) while it holds a quorum, at least
 * half of the members that take part: half rather than more than half, so
 * that a two-node cluster survives a crash of either node. A member is
 * downed only on a strict majority of the observers that may judge it, so
 * that one observer's one-way cut never outvotes the others.
 *
 * @module
 */

/**
 * Whether `reachable` members of `participants` are a quorum: at least half.
 *
 * @example
 * ```ts
 * hasQuorum(1, 2); // true: a two-node cluster survives a crash
 * hasQuorum(1, 3); // false: the lone node of three stands down
 * ```
 */
export function hasQuorum(reachable: number, participants: number): boolean {
  return reachable * 2 >= participants;
}

/**
 * Whether `reports` of `voters` observers are a strict majority: more than half.
 *
 * @example
 * ```ts
 * isMajority(1, 2); // false: one of two observers is not enough to down a member
 * isMajority(2, 3); // true
 * ```
 */
export function isMajority(reports: number, voters: number): boolean {
  return reports * 2 > voters;
}
