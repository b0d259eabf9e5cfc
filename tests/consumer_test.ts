import assert from "node:assert/strict";
import type { PurchaseEvent } from "../cluster/sharding/entity.ts";
import { ConsumerPipeline } from "../kafka/consumer.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { eventually } from "./support/cluster.ts";
import { createTopic, knownPurchases, producePurchases, testKafka, uniqueName, withTopic } from "./support/kafka.ts";

Deno.test("a shard that refuses events for a while: the consumer keeps its place in the group and delivers each event once", () =>
  withTopic("consumer-retry", async (topic) => {
    const kafka = testKafka("usershard-127.0.0.1-1");
    const purchases = knownPurchases(200, 20);
    await createTopic(kafka, topic, 2);
    await producePurchases(kafka, topic, purchases);
    const expected = [0, 1].map((p) => purchases.filter((e) => partitionFor(e.userId, 2) === p).length);

    // Longer than kafkajs's own retries of a failing batch before it would restart the consumer (a few seconds).
    const refuseUntil = Date.now() + 12_000;
    const applied = [new Map<number, number>(), new Map<number, number>()];
    let refusals = 0;
    let otherDoneAt = Infinity;
    let joins = 0;
    const group = uniqueName("consumer-retry-group");
    const pipeline = new ConsumerPipeline({
      kafka,
      topic,
      group,
      partitions: 2,
      sink: {
        applyEvents(shard: number, events: readonly PurchaseEvent[]) {
          if (shard === 0 && Date.now() < refuseUntil) {
            refusals++;
            return Promise.reject(new Error("shard 0 is moving"));
          }
          for (const e of events) applied[shard].set(e.offset, (applied[shard].get(e.offset) ?? 0) + 1);
          if (shard === 1 && applied[1].size === expected[1]) otherDoneAt = Date.now();
          return Promise.resolve({ lastOffset: events.at(-1)!.offset, local: true });
        },
      },
      onAssignment: () => joins++,
      partitionCount: () => Promise.resolve(2),
      hostedShards: () => 2,
    });
    const admin = kafka.admin();
    await admin.connect();
    await pipeline.start();
    try {
      await eventually("every offset committed", async () => {
        const [{ partitions }] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        return [0, 1].every((p) => Number(partitions.find((x) => x.partition === p)?.offset) === expected[p]);
      }, 60_000);
    } finally {
      await pipeline.stop();
      await admin.disconnect();
    }
    assert.ok(refusals >= 3, `the sink refused ${refusals} times`);
    assert.equal(joins, 1, "the consumer joined the group once and never rejoined");
    assert.ok(otherDoneAt < refuseUntil, "partition 1 went on while shard 0 refused");
    for (const p of [0, 1]) {
      assert.equal(applied[p].size, expected[p], `partition ${p}: every event applied`);
      assert.ok([...applied[p].values()].every((n) => n === 1), `partition ${p}: no event applied twice`);
    }
  }));
