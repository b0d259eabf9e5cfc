/**
 * Which node consumes which partition, read from Kafka itself: the consumer
 * group's description while the group is Stable. That is the ordered,
 * authoritative source of desired shard placement (invariant 5 of ARCHITECTURE.md);
 * nodes' own reports only say "look again".
 *
 * @module
 */
import type { Admin, Group } from "@platformatic/kafka";

/**
 * The Kafka client id of the node at `address`, so Kafka's own tools
 * (kafka-consumer-groups.sh --describe) show which node consumes what.
 *
 * @example
 * ```ts
 * nodeClientId("127.0.0.1:2551"); // "usershard-127.0.0.1-2551"
 * ```
 */
export function nodeClientId(address: string): string {
  const at = address.lastIndexOf(":");
  return `usershard-${address.slice(0, at)}-${address.slice(at + 1)}`;
}

/** The node address behind a client id made by {@linkcode nodeClientId}; `undefined` for other clients. */
export function addressFromClientId(clientId: string): string | undefined {
  const match = /^usershard-(.+)-(\d+)$/.exec(clientId);
  return match ? `${match[1]}:${match[2]}` : undefined;
}

/**
 * Partition → node address for `topic` in consumer group `group`, or
 * `undefined` while the group is not Stable (a rebalance is under way, so
 * any answer would already be stale).
 */
export async function groupPlacement(
  admin: Admin,
  group: string,
  topic: string,
): Promise<Map<number, string> | undefined> {
  const groups = await admin.describeGroups({ groups: [group] });
  const description = groups.get(group);
  return description ? placementOf(description, topic) : undefined;
}

/**
 * Partition → node address for `topic` in a group's description, as
 * {@linkcode groupPlacement} gives it. The client has decoded each member's
 * assignment (`decodeConsumerProtocolAssignment`) into `assignments`;
 * members that are not nodes (no {@linkcode nodeClientId}) are left out.
 */
export function placementOf(
  description: Pick<Group, "state" | "members">,
  topic: string,
): Map<number, string> | undefined {
  if (description.state === "Empty" || description.state === "Dead") return new Map();
  if (description.state !== "Stable") return undefined;
  const placement = new Map<number, string>();
  for (const member of description.members.values()) {
    const address = addressFromClientId(member.clientId);
    if (!address) continue;
    for (const partition of member.assignments?.get(topic)?.partitions ?? []) placement.set(partition, address);
  }
  return placement;
}
