/**
 * A sticky partition assignor for the processors' consumer group. Shards
 * follow partitions, so every partition that changes consumer is a shard
 * handoff; a round-robin assignor deals every partition out afresh on
 * each rebalance (a third node moves about two thirds of them). This one keeps
 * each member's partitions where it can and moves only what balance needs: a
 * third node takes a third, a leaving node's partitions are shared out and
 * nothing else moves.
 *
 * Each member says what it owns in its join metadata (`userData`); only the
 * group leader runs {@linkcode stickyAssignment}, which is pure.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { GroupAssignment, GroupPartitionsAssigner } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["usershard", "consumer"]);

/** The assignor's protocol name, as Kafka's group tools show it. */
export const STICKY_ASSIGNOR = "UsershardSticky";

/** A member of the group and the partitions of one topic it owned before this rebalance. */
export interface MemberClaim {
  readonly memberId: string;
  readonly owned: readonly number[];
}

/**
 * A balanced assignment of `partitions` over `members` (sizes differ by at
 * most one) that leaves as many partitions as possible with their previous
 * owner. Deterministic: the same input gives the same output on any leader.
 * A partition claimed by two members (a stale claim) goes to the first by
 * member id; claims of partitions that do not exist are ignored.
 *
 * @example
 * ```ts
 * stickyAssignment([0, 1, 2, 3, 4, 5], [
 *   { memberId: "a", owned: [0, 1, 2] },
 *   { memberId: "b", owned: [3, 4, 5] },
 *   { memberId: "c", owned: [] },
 * ]); // a → [0, 1], b → [3, 4], c → [2, 5]
 * ```
 */
export function stickyAssignment(
  partitions: readonly number[],
  members: readonly MemberClaim[],
): Map<string, number[]> {
  const ordered = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0));
  const result = new Map<string, number[]>(ordered.map((m) => [m.memberId, []]));
  if (ordered.length === 0) return result;
  const exists = new Set(partitions);
  const taken = new Set<number>();
  for (const member of ordered) {
    const kept = result.get(member.memberId)!;
    for (const partition of [...member.owned].sort((a, b) => a - b)) {
      if (!exists.has(partition) || taken.has(partition)) continue;
      taken.add(partition);
      kept.push(partition);
    }
  }
  // The members that hold most get the extra partitions when the count does not divide evenly.
  const base = Math.floor(partitions.length / ordered.length);
  const byHolding = [...ordered].sort((a, b) => result.get(b.memberId)!.length - result.get(a.memberId)!.length);
  const quota = new Map(byHolding.map((m, i) => [m.memberId, base + (i < partitions.length % ordered.length ? 1 : 0)]));
  for (const member of ordered) {
    const kept = result.get(member.memberId)!;
    for (const released of kept.splice(quota.get(member.memberId)!)) taken.delete(released);
  }
  const free = [...partitions].filter((p) => !taken.has(p)).sort((a, b) => a - b);
  for (const member of ordered) {
    const kept = result.get(member.memberId)!;
    kept.push(...free.splice(0, quota.get(member.memberId)! - kept.length));
    kept.sort((a, b) => a - b);
  }
  return result;
}

/** What a member owned, per topic, as carried in its join metadata. */
export type Ownership = Readonly<Record<string, readonly number[]>>;

/** Encodes a member's ownership as join `userData`. */
export function encodeOwnership(owned: Ownership): Buffer {
  return Buffer.from(JSON.stringify(owned));
}

/**
 * Decodes another member's `userData`; anything unreadable counts as owning
 * nothing, which costs stickiness, never correctness.
 */
export function decodeOwnership(userData: Uint8Array | null | undefined): Ownership {
  if (!userData || userData.length === 0) return {};
  try {
    const parsed: unknown = JSON.parse(new TextDecoder().decode(userData));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) return {};
    const owned: Record<string, number[]> = {};
    for (const [topic, partitions] of Object.entries(parsed)) {
      if (Array.isArray(partitions)) owned[topic] = partitions.filter((p) => Number.isSafeInteger(p) && p >= 0);
    }
    return owned;
  } catch {
    return {};
  }
}

/**
 * The group leader's assigner around {@linkcode stickyAssignment}, for
 * @platformatic/kafka: each member's claim is the ownership it sent as its
 * join metadata (see {@linkcode encodeOwnership}). Every member is assumed to
 * subscribe to the same topics, as the processors do.
 */
export const stickyPartitionsAssigner: GroupPartitionsAssigner = (_current, members, topics, metadata) => {
  const claims = [...members].map(([memberId, subscription]) => ({
    memberId,
    owned: decodeOwnership(
      typeof subscription.metadata === "string" ? Buffer.from(subscription.metadata) : subscription.metadata,
    ),
  }));
  const perMember = new Map(claims.map((c) => [c.memberId, new Map<string, GroupAssignment>()]));
  for (const topic of topics) {
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    const partitions = Array.from({ length: count }, (_, i) => i);
    const assignment = stickyAssignment(
      partitions,
      claims.map((c) => ({ memberId: c.memberId, owned: c.owned[topic] ?? [] })),
    );
    let moved = 0;
    for (const claim of claims) {
      const now = new Set(assignment.get(claim.memberId));
      moved += (claim.owned[topic] ?? []).filter((p) => !now.has(p)).length;
      perMember.get(claim.memberId)!.set(topic, { topic, partitions: assignment.get(claim.memberId)! });
    }
    log.info(
      "assigned {count} partitions of {topic} over {members} consumers; {moved} taken from their previous consumer",
      { count, topic, members: claims.length, moved },
    );
  }
  return [...perMember].map(([memberId, assignments]) => ({ memberId, assignments }));
};
