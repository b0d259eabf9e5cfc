/**
 * Who is in the cluster: member states and the order they move in.
 *
 * @module
 */
import type { NodeId } from "../remoting/node.ts";

/** A member's life cycle, in the only order it may move. */
export const MEMBER_STATUSES = ["Joining", "Up", "Leaving", "Exiting", "Down", "Removed"] as const;

/** One of {@linkcode MEMBER_STATUSES}. */
export type MemberStatus = typeof MEMBER_STATUSES[number];

/** A member as the cluster's shared view holds it. */
export interface Member {
  readonly node: NodeId;
  readonly status: MemberStatus;
  /** Order of becoming Up (1 = first); 0 until then. The lowest is the oldest. */
  readonly upNumber: number;
  /** `host:port` of the member's management HTTP endpoint ("" when unknown). */
  readonly management: string;
}

/** Position of a status in the life cycle; a merge keeps the later one. */
export function statusRank(status: MemberStatus): number {
  return MEMBER_STATUSES.indexOf(status);
}

/** Whether a member in this status takes part (counts for leader, oldest, failure detection). */
export function isActive(status: MemberStatus): boolean {
  return status === "Up" || status === "Leaving";
}
