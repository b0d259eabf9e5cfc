/**
 * The changelog against the real broker: what one owner commits, the next
 * restores; once a new owner has opened a shard, the old one cannot write.
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { ShardFencedError } from "../cluster/sharding/shard_storage.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { encodeChangelogValue, ensureChangelog, KafkaShardStorage } from "../kafka/changelog.ts";
import { BROKERS, testKafka, withTopic } from "./support/kafka.ts";

/** Runs `run` with a changelog topic of its own, made the way `process` makes it. */
function withChangelog(prefix: string, shards: number, run: (kafka: Kafka, topic: string) => Promise<void>) {
  return withTopic(prefix, async (topic) => {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    await ensureChangelog(admin, topic, shards).finally(() => admin.disconnect());
    await run(kafka, topic);
  });
}

Deno.test("a new owner fences the old one: its later writes are refused and never restored", async () => {
  await withChangelog("changelog-fence", 2, async (kafka, topic) => {
    const settings = { kafka, brokers: BROKERS, clientId: "usershard-test", topic };
    const first = new KafkaShardStorage(settings);
    const second = new KafkaShardStorage(settings);
    try {
      const old = await first.open(1);
      assert.equal(old.restored, undefined);
      await old.write(
        [["7", { totalPurchases: 1, amountSpent: 100 }], ["8", { totalPurchases: 1, amountSpent: 5 }]],
        1,
      );
      await old.write([["7", { totalPurchases: 2, amountSpent: 300 }]], 4);

      const current = await second.open(1);
      assert.deepEqual(current.restored, {
        shard: 1,
        lastOffset: 4,
        entities: [["7", { totalPurchases: 2, amountSpent: 300 }], ["8", { totalPurchases: 1, amountSpent: 5 }]],
      });
      // The old owner woke up (a pause, a cut) and tries to write what it applied meanwhile.
      await assert.rejects(old.write([["7", { totalPurchases: 3, amountSpent: 999 }]], 6), ShardFencedError);
      await current.write([["8", { totalPurchases: 2, amountSpent: 10 }]], 7);
      await old.close().catch(() => {});
      await current.close();

      const again = await first.open(1);
      assert.deepEqual(again.restored, {
        shard: 1,
        lastOffset: 7,
        entities: [["7", { totalPurchases: 2, amountSpent: 300 }], ["8", { totalPurchases: 2, amountSpent: 10 }]],
      });
      await again.close();
      // The other shard's partition holds nothing of this one.
      const other = await first.open(0);
      assert.equal(other.restored, undefined);
      await other.close();
    } finally {
      await first.close();
      await second.close();
    }
  });
});

Deno.test("a changelog topic with another partition count, or one that deletes, is refused with one line", async () => {
  await withTopic("changelog-layout", async (topic) => {
    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureChangelog(admin, topic, 4);
      await assert.rejects(
        ensureChangelog(admin, topic, 8),
        new RegExp(`^ChangelogLayoutError: changelog topic ${topic} has 4 partitions but there are 8 shards`),
      );
      const configs = await admin.describeConfigs({
        resources: [{ type: 2, name: topic, configNames: ["cleanup.policy"] }],
        includeSynonyms: false,
      });
      assert.equal(configs.resources[0].configEntries[0].configValue, "compact");
      // A topic someone made by hand with retention would delete users whose totals stood still.
      const deleting = `${topic}-delete`;
      await ensureTopic(admin, deleting, 4);
      await assert.rejects(
        ensureChangelog(admin, deleting, 4),
        new RegExp(`^ChangelogLayoutError: changelog topic ${deleting} has cleanup.policy=delete, which deletes state`),
      );
    } finally {
      await admin.disconnect();
    }
  });
});

Deno.test("a restore skips what an owner left in an open transaction, and reads on past it", async () => {
  await withChangelog("changelog-aborted", 1, async (kafka, topic) => {
    const storage = new KafkaShardStorage({ kafka, brokers: BROKERS, clientId: "usershard-test", topic });
    // An owner that froze half way through a batch: its records are in the log, uncommitted.
    const frozen = kafka.producer({ transactionalId: `${topic}-0`, maxInFlightRequests: 1, idempotent: true });
    await frozen.connect();
    try {
      const open = await frozen.transaction();
      await open.send({
        topic,
        messages: [{
          key: "7",
          partition: 0,
          value: encodeChangelogValue({ totals: { totalPurchases: 99, amountSpent: 99 }, shardOffset: 99 }),
        }],
      });
      const next = await storage.open(0);
      assert.equal(next.restored, undefined, "an aborted write was restored");
      await next.write([["7", { totalPurchases: 1, amountSpent: 10 }]], 3);
      await next.close();
      const again = await storage.open(0);
      assert.deepEqual(again.restored, {
        shard: 0,
        lastOffset: 3,
        entities: [["7", { totalPurchases: 1, amountSpent: 10 }]],
      });
      await again.close();
    } finally {
      await frozen.disconnect();
      await storage.close();
    }
  });
});
