/**
 * Who is in the cluster: node identities, member states and their order.
 *
 * @module
 */

/** A node incarnation: its `host:port` remoting address and the uid it picked at start. */
export interface NodeId {
  readonly address: string;
  readonly uid: number;
}

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

/**
 * A fresh incarnation uid: milliseconds since the epoch times 1000 plus a
 * random tail, so a restarted node's uid is higher than its previous one's
 * and still exact in a JavaScript number.
 */
export function newUid(now: number = Date.now(), random: () => number = Math.random): number {
  return now * 1000 + Math.floor(random() * 1000);
}

/** `host:port` split into its parts. */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}

/**
 * Address order used for the leader: host, then port as a number.
 *
 * @example
 * ```ts
 * ["127.0.0.1:10000", "127.0.0.1:2552"].sort(compareAddresses); // ["127.0.0.1:2552", "127.0.0.1:10000"]
 * ```
 */
export function compareAddresses(a: string, b: string): number {
  const x = splitAddress(a);
  const y = splitAddress(b);
  return x.host < y.host ? -1 : x.host > y.host ? 1 : x.port - y.port;
}

/** Whether two ids name the same incarnation. */
export function sameNode(a: NodeId, b: NodeId): boolean {
  return a.address === b.address && a.uid === b.uid;
}

/** `address#uid`, for logs and map keys. */
export function nodeKey(node: NodeId): string {
  return `${node.address}#${node.uid}`;
}
