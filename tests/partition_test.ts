/**
 * A node cut off from its peers but not from Kafka: on the minority side it
 * leaves the consumer group at once, so that every partition keeps being
 * processed by the majority for as long as the cut lasts; once the cut heals
 * it learns it was downed and exits. Exact totals afterwards.
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { UserStatsClient } from "../grpc/user_client.ts";
import { eventually, nodePorts, ready, shardsOf, startProcessor, type Stream, withNodes } from "./support/cluster.ts";
import { CUT_PREFIX, NetworkCut } from "./support/cut.ts";
import { createTopic, testKafka } from "./support/kafka.ts";
import { exactOnEveryNode, SteadyStream } from "./support/totals.ts";

const SHARDS = 16;

/** The group's committed offset of every partition. */
async function committed(kafka: Kafka, stream: Stream): Promise<Map<number, number>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [topic] = await admin.fetchOffsets({ groupId: stream.group, topics: [stream.topic] });
    return new Map(topic.partitions.map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}

Deno.test("a node cut off from its peers leaves the group at once: every partition goes on being processed; exact", async () => {
  await withNodes("partition-cut", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, SHARDS);
    const [a, b, c] = nodePorts(3);
    const nodes = [startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream)];
    const cutNode = startProcessor(c, [a, b], stream, [], CUT_PREFIX);
    nodes.push(cutNode);
    started.push(...nodes);
    await Promise.all(nodes.map((node, i) => ready(node, [a, b, c][i])));
    await eventually("every shard on its partition's consumer, some on the node to cut", async () => {
      const views = await Promise.all([a, b, c].map((n) => shardsOf(n, stream.group)));
      return views.every((v) => v && v.shards.length > 0 && JSON.stringify(v.shards) === JSON.stringify(v.consumed)) &&
        views.reduce((n, v) => n + v!.shards.length, 0) === SHARDS;
    }, 90_000);
    const steady = new SteadyStream(stream.topic, { users: 200, perSecond: 400 });
    const cut = await NetworkCut.cut(c.remoting, [a.remoting, b.remoting]);
    const cutAt = Date.now();
    try {
      await steady.reach(800);
      await cutNode.waitForOutput(/on the minority side of a cut: this node hears 1 of 3 members/, 30_000);
      // Once the majority has downed it (8 s), queries there for its users have its shards opened there,
      // which fences the cut node's writes: its partitions must be consumed by the majority by then.
      await new Promise((resolve) => setTimeout(resolve, 10_000));
      const client = new UserStatsClient(`127.0.0.1:${a.grpc}`);
      await Promise.all(Array.from({ length: 200 }, (_, i) => client.userStats(String(i), 5000).catch(() => {})));
      client.close();
      // Its partitions go to the majority: every partition's committed offset moves on while the cut lasts.
      const before = await committed(kafka, stream);
      await eventually(
        "every partition committed further during the cut",
        async () => {
          const now = await committed(kafka, stream);
          return [...before].every(([partition, offset]) => (now.get(partition) ?? -1) > offset);
        },
        20_000,
        async () => JSON.stringify([...await committed(kafka, stream)]),
      );
      // The cut lasts 40 s in all.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + 40_000 - Date.now())));
    } finally {
      await cut.heal();
    }
    try {
      const { code } = await cutNode.exited(60_000);
      assert.equal(code, 1);
      assert.match(cutNode.stderr.trim().split("\n").at(-1) ?? "", /^usershard process: this node was downed/);
      await steady.reach(steady.sent + 800);
    } finally {
      await steady.stop();
    }
    await exactOnEveryNode(kafka, stream.topic, [a, b]);
  });
});
