import assert from "node:assert/strict";
import type { Group, GroupMember } from "@platformatic/kafka";
import { addressFromClientId, nodeClientId, placementOf } from "./assignment.ts";

Deno.test("a node's Kafka client id names its address and reads back", () => {
  assert.equal(nodeClientId("127.0.0.1:2551"), "usershard-127.0.0.1-2551");
  assert.equal(addressFromClientId(nodeClientId("node-a.example:2552")), "node-a.example:2552");
  assert.equal(addressFromClientId("console-consumer"), undefined);
});

/** A group description as the admin client gives it: members with their decoded assignments. */
function described(state: string, members: [clientId: string, partitions: Record<string, number[]>][]) {
  return {
    state: state as Group["state"],
    members: new Map(members.map(([clientId, assigned], i): [string, GroupMember] => [`m${i}`, {
      id: `m${i}`,
      groupInstanceId: null,
      clientId,
      clientHost: "/127.0.0.1",
      assignments: new Map(Object.entries(assigned).map(([topic, partitions]) => [topic, { topic, partitions }])),
    }])),
  };
}

Deno.test("placementOf(): each partition of the topic on its node's address, only while the group is Stable", () => {
  const stable = described("Stable", [
    [nodeClientId("127.0.0.1:2551"), { events: [0, 2], other: [1] }],
    [nodeClientId("127.0.0.1:2552"), { events: [1, 3] }],
    ["console-consumer", { events: [4] }],
  ]);
  assert.deepEqual(
    placementOf(stable, "events"),
    new Map([[0, "127.0.0.1:2551"], [2, "127.0.0.1:2551"], [1, "127.0.0.1:2552"], [3, "127.0.0.1:2552"]]),
  );
  assert.deepEqual(placementOf(stable, "nothing"), new Map());
  assert.equal(placementOf(described("PreparingRebalance", []), "events"), undefined);
  assert.equal(placementOf(described("CompletingRebalance", []), "events"), undefined);
  assert.deepEqual(placementOf(described("Empty", []), "events"), new Map());
  assert.deepEqual(placementOf(described("Dead", []), "events"), new Map());
});
