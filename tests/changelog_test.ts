/**
 * The changelog against the real broker: what one owner commits, the next
 * restores; once a new owner has opened a shard, the old one cannot write.
 */
import assert from "node:assert/strict";
import type { Kafka } from "kafkajs";
import { ConfigResourceTypes } from "@platformatic/kafka";
import { ShardFencedError, StateRefusedError } from "../cluster/sharding/shard_storage.ts";
import { ensureTopic } from "../kafka/admin.ts";
import {
  type ChangelogSettings,
  encodeChangelogValue,
  ensureChangelog,
  KafkaShardStorage,
} from "../kafka/changelog.ts";
import { OffsetsReader } from "../kafka/offsets.ts";
import { BROKERS, createTopic, testAdmin, testKafka, withTopic } from "./support/kafka.ts";
import { PartitionReader } from "../kafka/partition_reader.ts";
import { eventually } from "./support/wait.ts";

/** Events in each input partition: what the changelog's offsets may count up to. */
const INPUT_EVENTS = 10;

/** Fills `topic`'s partitions with {@linkcode INPUT_EVENTS} records each (what they hold does not matter here). */
async function fillInput(kafka: Kafka, topic: string, partitions: number): Promise<void> {
  const producer = kafka.producer();
  await producer.connect();
  try {
    await producer.send({
      topic,
      messages: Array.from({ length: partitions * INPUT_EVENTS }, (_, i) => ({
        partition: i % partitions,
        key: String(i),
        value: "x",
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

/**
 * Runs `run` with a changelog topic of its own, made the way `process` makes
 * it, and an input topic it counts (`<changelog>-input`, filled with
 * {@linkcode INPUT_EVENTS} records per partition), with the settings a node
 * would give its storage.
 */
function withChangelog(
  prefix: string,
  shards: number,
  run: (kafka: Kafka, topic: string, settings: ChangelogSettings) => Promise<void>,
) {
  return withTopic(prefix, async (topic) => {
    const kafka = testKafka();
    const admin = testAdmin();
    const input = `${topic}-input`;
    try {
      await ensureChangelog(admin, topic, shards);
      await ensureTopic(admin, input, shards);
    } finally {
      await admin.close();
    }
    await fillInput(kafka, input, shards);
    const offsets = new OffsetsReader({ brokers: BROKERS, clientId: "usershard-test" });
    try {
      await run(kafka, topic, {
        offsets,
        input: { topic: input, group: `${topic}-group` },
        brokers: BROKERS,
        clientId: "usershard-test",
        topic,
      });
    } finally {
      await offsets.close();
    }
  });
}

Deno.test("a new owner fences the old one: its later writes are refused and never restored", async () => {
  await withChangelog("changelog-fence", 2, async (_kafka, _topic, settings) => {
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
    const admin = testAdmin();
    try {
      await ensureChangelog(admin, topic, 4);
      await assert.rejects(
        ensureChangelog(admin, topic, 8),
        new RegExp(`^ChangelogLayoutError: changelog topic ${topic} has 4 partitions but there are 8 shards`),
      );
      const [configs] = await admin.describeConfigs({
        resources: [{
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: topic,
          configurationKeys: ["cleanup.policy"],
        }],
      });
      assert.equal(configs.configs[0].value, "compact");
      // A topic someone made by hand with retention would delete users whose totals stood still.
      const deleting = `${topic}-delete`;
      await ensureTopic(admin, deleting, 4);
      await assert.rejects(
        ensureChangelog(admin, deleting, 4),
        new RegExp(`^ChangelogLayoutError: changelog topic ${deleting} has cleanup.policy=delete, which deletes state`),
      );
    } finally {
      await admin.close();
    }
  });
});

Deno.test("a restore skips what an owner left in an open transaction, and reads on past it", async () => {
  await withChangelog("changelog-aborted", 1, async (kafka, topic, settings) => {
    const storage = new KafkaShardStorage(settings);
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

/** The one line a refused restore gives, or a failure when the restore was not refused. */
async function refusal(storage: KafkaShardStorage, shard: number): Promise<string> {
  try {
    const log = await storage.open(shard);
    await log.close();
  } catch (error) {
    if (error instanceof StateRefusedError) return error.message;
    throw error;
  }
  return assert.fail(`shard ${shard} was restored, not refused`);
}

Deno.test("a changelog counts one incarnation of its input: the topic deleted and created again is refused", async () => {
  await withChangelog("changelog-recreated", 1, async (kafka, topic, settings) => {
    const storage = new KafkaShardStorage(settings);
    try {
      const log = await storage.open(0);
      await log.write([["7", { totalPurchases: 4, amountSpent: 400 }]], 3);
      await log.close();
      // The operator deletes the input topic and creates it again; new events arrive.
      const admin = testAdmin();
      try {
        await admin.deleteTopics({ topics: [settings.input.topic] });
        for (let tries = 0;; tries++) {
          try {
            await ensureTopic(admin, settings.input.topic, 1);
            break;
          } catch (error) {
            if (tries > 50) throw error;
            await new Promise((resolve) => setTimeout(resolve, 200));
          }
        }
      } finally {
        await admin.close();
      }
      await fillInput(kafka, settings.input.topic, 1);
      const line = await refusal(storage, 0);
      assert.match(
        line,
        new RegExp(
          `^changelog ${topic} partition 0 counts another incarnation of ${settings.input.topic} \\(topic id \\S+\\) ` +
            `up to offset 3, but ${settings.input.topic} is now topic id \\S+ and ${settings.input.topic}/0 ends at ` +
            `offset 10 .*usershard rebuild --topic ${settings.input.topic} --group ${settings.input.group}`,
        ),
      );
    } finally {
      await storage.close();
    }
  });
});

Deno.test("a changelog ahead of its input's end is refused: it would take new events for counted", async () => {
  await withChangelog("changelog-ahead", 1, async (kafka, topic, settings) => {
    // What an older build left: records without the marker, counting offsets the input no longer has.
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic,
      messages: [{
        key: "7",
        partition: 0,
        value: encodeChangelogValue({ totals: { totalPurchases: 16, amountSpent: 1600 }, shardOffset: 41 }),
      }],
    });
    await producer.disconnect();
    const storage = new KafkaShardStorage(settings);
    try {
      assert.match(
        await refusal(storage, 0),
        new RegExp(
          `^changelog ${topic} partition 0 counts ${settings.input.topic}/0 up to offset 41, but that partition ` +
            "ends at offset 10 ",
        ),
      );
    } finally {
      await storage.close();
    }
  });
});

Deno.test("an empty changelog while the group has counted its partition is refused: the totals are lost", async () => {
  await withChangelog("changelog-lost", 2, async (kafka, topic, settings) => {
    const admin = kafka.admin();
    await admin.connect();
    await admin.setOffsets({
      groupId: settings.input.group,
      topic: settings.input.topic,
      partitions: [{ partition: 1, offset: "6" }],
    });
    await admin.disconnect();
    const storage = new KafkaShardStorage(settings);
    try {
      // Partition 0 was never counted: a fresh start, which writes its marker.
      const fresh = await storage.open(0);
      await fresh.close();
      assert.match(
        await refusal(storage, 1),
        new RegExp(
          `^changelog ${topic} partition 1 is empty, but group ${settings.input.group} has counted ` +
            `${settings.input.topic}/1 up to offset 6 \\(its committed offset; the changelog counts up to offset -1\\)`,
        ),
      );
      // Once marked, an empty partition is a partition whose events changed nobody, whatever the group committed.
      await admin.connect();
      await admin.setOffsets({
        groupId: settings.input.group,
        topic: settings.input.topic,
        partitions: [{ partition: 0, offset: "8" }],
      });
      await admin.disconnect();
      const again = await storage.open(0);
      assert.equal(again.restored, undefined);
      await again.close();
    } finally {
      await storage.close();
    }
  });
});

Deno.test("a changelog whose first records were deleted is refused at once, not read from offset 0 forever", async () => {
  await withChangelog("changelog-trimmed", 1, async (kafka, topic, settings) => {
    const storage = new KafkaShardStorage(settings);
    try {
      const log = await storage.open(0);
      await log.write([["7", { totalPurchases: 1, amountSpent: 100 }]], 2);
      await log.write([["8", { totalPurchases: 1, amountSpent: 50 }]], 5);
      await log.close();
      // Someone lets the topic delete (retention, or kafka-delete-records), and sets it back.
      const admin = kafka.admin();
      await admin.connect();
      const policy = (value: string) =>
        admin.alterConfigs({
          validateOnly: false,
          resources: [{ type: 2, name: topic, configEntries: [{ name: "cleanup.policy", value }] }],
        });
      try {
        await policy("delete");
        await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: "3" }] });
        await policy("compact");
      } finally {
        await admin.disconnect();
      }
      assert.match(
        await refusal(storage, 0),
        new RegExp(`^changelog ${topic} partition 0 starts at offset 3, not 0: records before it were deleted`),
      );
    } finally {
      await storage.close();
    }
  });
});

Deno.test("a write against a broker that stopped answering fails within the write timeout, not the client's retries", async () => {
  await withChangelog("changelog-frozen", 1, async (_kafka, _topic, settings) => {
    const storage = new KafkaShardStorage({ ...settings, writeTimeoutMs: 2000 });
    const log = await storage.open(0);
    const pid = await new Deno.Command("bash", {
      args: [new URL("../scripts/kafka.sh", import.meta.url).pathname, "pid"],
      stdout: "piped",
    }).output();
    const broker = Number(new TextDecoder().decode(pid.stdout).trim());
    Deno.kill(broker, "SIGSTOP");
    let thawed = false;
    try {
      // Settles while the broker is still frozen: a failure the shard's host can act on (drop and reopen).
      const outcome = await Promise.race([
        log.write([["7", { totalPurchases: 1, amountSpent: 100 }]], 3).then(() => "written", (error: Error) => error),
        new Promise((resolve) => setTimeout(() => resolve("still waiting after 10 s"), 10_000)),
      ]);
      assert.ok(outcome instanceof Error, String(outcome));
      assert.match(outcome.message, /^the changelog write of shard 0 took longer than 2000 ms$/);
      Deno.kill(broker, "SIGCONT");
      thawed = true;
    } finally {
      if (!thawed) Deno.kill(broker, "SIGCONT");
      await log.close().catch(() => {});
      await storage.close();
    }
  });
});

Deno.test("after the cleaner has compacted a changelog of many transactions, aborted and fenced ones among them, a restore is exact", async () => {
  await withChangelog("changelog-compacted", 1, async (kafka, topic, settings) => {
    // Segments that roll every 100 ms and are cleaned at once: the broker's cleaner (every 15 s) gets to them.
    const admin = kafka.admin();
    await admin.connect();
    await admin.alterConfigs({
      validateOnly: false,
      resources: [{
        type: 2,
        name: topic,
        configEntries: [
          { name: "cleanup.policy", value: "compact" },
          { name: "segment.ms", value: "100" },
          { name: "min.cleanable.dirty.ratio", value: "0.01" },
          { name: "min.compaction.lag.ms", value: "0" },
          { name: "delete.retention.ms", value: "100" },
        ],
      }],
    });
    await admin.disconnect();
    let restoredRecords = Infinity;
    const storage = new KafkaShardStorage({
      ...settings,
      observer: { restored: (r) => (restoredRecords = r.records) },
    });
    const expected = new Map<string, { totalPurchases: number; amountSpent: number }>();
    let log = await storage.open(0);
    let writes = 0;
    let offset = 0;
    try {
      for (let round = 0; round < 6; round++) {
        for (let i = 0; i < 40; i++) {
          const user = String(i % 12);
          const totals = { totalPurchases: round * 40 + i + 1, amountSpent: 100 * (round * 40 + i + 1) };
          await log.write([[user, totals]], offset);
          expected.set(user, totals);
          offset = Math.min(offset + 1, INPUT_EVENTS - 1);
          writes++;
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
        // A writer that froze mid-transaction: its records are in the log and never commit.
        const frozen = kafka.producer({ transactionalId: `${topic}-0`, maxInFlightRequests: 1, idempotent: true });
        await frozen.connect();
        const open = await frozen.transaction();
        await open.send({
          topic,
          messages: [{
            key: "0",
            partition: 0,
            value: encodeChangelogValue({ totals: { totalPurchases: 999, amountSpent: 999 }, shardOffset: 9 }),
          }],
        });
        // A new owner fences both the frozen writer and the previous one, whose next write is refused.
        const previous = log;
        log = await storage.open(0);
        await assert.rejects(previous.write([["0", { totalPurchases: 555, amountSpent: 555 }]], 9), ShardFencedError);
        await previous.close().catch(() => {});
        await frozen.disconnect();
      }
      await log.close();
      // The cleaner has run once a restore reads far fewer records than were written.
      await eventually(
        "the cleaner compacted the changelog",
        async () => {
          const again = await storage.open(0);
          await again.close();
          return restoredRecords < writes / 4;
        },
        120_000,
        () => `a restore still reads ${restoredRecords} records of ${writes} written`,
        2000,
      );
      const restored = await storage.open(0);
      assert.deepEqual(new Map(restored.restored?.entities), expected);
      await restored.close();
    } finally {
      await storage.close();
    }
  });
});

Deno.test("restores of many shards at once through one reader each read their whole partition", async () => {
  await withTopic("changelog-concurrent-reads", async (topic) => {
    const partitions = 16;
    const kafka = testKafka();
    await createTopic(topic, partitions);
    // Uneven partitions, several fetches' worth in the largest, so that reads overlap at every stage.
    const sizes = Array.from({ length: partitions }, (_, p) => 200 + 700 * p);
    const producer = kafka.producer();
    await producer.connect();
    try {
      const value = "v".repeat(400);
      for (let p = 0; p < partitions; p++) {
        for (let sent = 0; sent < sizes[p]; sent += 1000) {
          const count = Math.min(1000, sizes[p] - sent);
          await producer.send({
            topic,
            messages: Array.from({ length: count }, (_, i) => ({ partition: p, key: String(sent + i), value })),
          });
        }
      }
    } finally {
      await producer.disconnect();
    }
    const reader = new PartitionReader({ brokers: BROKERS, clientId: "usershard-test" }, 64 * 1024);
    try {
      const keys = sizes.map(() => new Set<string>());
      const counts = await Promise.all(
        sizes.map((_, p) => reader.readAll(topic, p, 0, (record) => keys[p].add(String(record.key)))),
      );
      assert.deepEqual(counts, sizes, "records read per partition");
      assert.deepEqual(keys.map((k) => k.size), sizes, "each record once");
    } finally {
      await reader.close();
    }
  });
});
