import assert from "node:assert/strict";
import { type Admin, Partitioners } from "kafkajs";
import { Consumer } from "@platformatic/kafka";
import type { PurchaseEvent } from "../cluster/sharding/entity.ts";
import { ConsumerPipeline, type EventSink } from "../kafka/consumer.ts";
import { clientOptions } from "../kafka/client.ts";
import { watchMembership } from "../kafka/membership_watch.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { purchaseMessage } from "../kafka/producer.ts";
import { eventually } from "./support/cluster.ts";
import {
  BROKERS,
  createTopic,
  knownPurchases,
  producePurchases,
  testKafka,
  uniqueName,
  withTopic,
} from "./support/kafka.ts";

/** The group's committed offset of each partition of `topic`; -1 where it has none. */
async function committedOffsets(admin: Admin, group: string, topic: string): Promise<Map<number, number>> {
  const [{ partitions }] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
  return new Map(partitions.map((p) => [p.partition, Number(p.offset)]));
}

/** The end offset (next offset to be written) of each partition of `topic`. */
async function endOffsets(admin: Admin, topic: string): Promise<Map<number, number>> {
  return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, Number(p.high)]));
}

/** How often a fake sink applied each offset, per shard. */
class AppliedOffsets {
  readonly #byShard = new Map<number, Map<number, number>>();

  record(shard: number, events: readonly PurchaseEvent[]): { lastOffset: number; local: boolean } {
    const offsets = this.#byShard.get(shard) ?? new Map<number, number>();
    this.#byShard.set(shard, offsets);
    for (const e of events) offsets.set(e.offset, (offsets.get(e.offset) ?? 0) + 1);
    return { lastOffset: events.at(-1)!.offset, local: true };
  }

  /** Whether offsets `0..end-1` of the shard were each applied exactly once. */
  exactlyOnceUpTo(shard: number, end: number): boolean {
    const offsets = this.#byShard.get(shard) ?? new Map<number, number>();
    return offsets.size === end && [...offsets].every(([offset, n]) => offset < end && n === 1);
  }

  distinct(shard: number): number {
    return this.#byShard.get(shard)?.size ?? 0;
  }
}

Deno.test("a shard that refuses events for a while: the consumer keeps its place in the group and delivers each event once", () =>
  withTopic("consumer-retry", async (topic) => {
    const kafka = testKafka("usershard-127.0.0.1-1");
    const purchases = knownPurchases(200, 20);
    await createTopic(topic, 2);
    await producePurchases(kafka, topic, purchases);
    const expected = [0, 1].map((p) => purchases.filter((e) => partitionFor(e.userId, 2) === p).length);

    // Long enough for many refusals, each a second apart, and longer than a session timeout.
    const refuseUntil = Date.now() + 12_000;
    const applied = [new Map<number, number>(), new Map<number, number>()];
    let refusals = 0;
    let otherDoneAt = Infinity;
    let joins = 0;
    const takenOver: [number, number][] = [];
    const group = uniqueName("consumer-retry-group");
    const pipeline = new ConsumerPipeline({
      kafka: { brokers: BROKERS, clientId: "usershard-127.0.0.1-1" },
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
        consumedFrom: (shard, offset) => void takenOver.push([shard, offset]),
      },
      onAssignment: () => joins++,
      partitionCount: () => Promise.resolve(2),
      hostedShards: () => 2,
    });
    const admin = kafka.admin();
    await admin.connect();
    await pipeline.start();
    try {
      const whileRefused = new Set<number>();
      let samples = 0;
      await eventually("partition 0's commits sampled while its shard refuses", async () => {
        const offset = (await committedOffsets(admin, group, topic)).get(0)!;
        if (Date.now() < refuseUntil) {
          whileRefused.add(offset);
          samples++;
        }
        return samples >= 5 && Date.now() >= refuseUntil - 2000;
      }, 20_000);
      assert.deepEqual([...whileRefused], [-1], "nothing of partition 0 committed while its shard refused");
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
    assert.deepEqual(takenOver.sort(), [[0, 0], [1, 0]], "each partition taken over once, where the group had it");
    assert.ok(otherDoneAt < refuseUntil, "partition 1 went on while shard 0 refused");
    for (const p of [0, 1]) {
      assert.equal(applied[p].size, expected[p], `partition ${p}: every event applied`);
      assert.ok([...applied[p].values()].every((n) => n === 1), `partition ${p}: no event applied twice`);
    }
  }));

Deno.test("a delivery that hangs does not hold up a rebalance: a node that joins the group gets its partitions", () =>
  withTopic("consumer-rebalance", async (topic) => {
    await createTopic(topic, 4);
    await producePurchases(testKafka(), topic, knownPurchases(200, 40));
    const stuck = 0;
    // Held until the test ends: past the 30 s rebalance timeout that a held-up group would wait for node 1.
    const held = Promise.withResolvers<void>();
    let stuckDeliveries = 0;
    const applied = new AppliedOffsets();
    const sink: EventSink = {
      async applyEvents(shard, events) {
        if (shard === stuck) {
          stuckDeliveries++;
          await held.promise;
        }
        return applied.record(shard, events);
      },
    };
    const group = uniqueName("consumer-rebalance-group");
    const assigned: number[][] = [[], []];
    const pipelines = [0, 1].map((i) =>
      new ConsumerPipeline({
        kafka: { brokers: BROKERS, clientId: `usershard-127.0.0.1-${i + 1}` },
        topic,
        group,
        partitions: 4,
        sink,
        onAssignment: (partitions) => assigned[i] = [...partitions],
        partitionCount: () => Promise.resolve(4),
        hostedShards: () => 4,
      })
    );
    let secondStarted: Promise<void> | undefined;
    await pipelines[0].start();
    try {
      await eventually("node 1 waits for shard 0", () => Promise.resolve(stuckDeliveries > 0));
      secondStarted = pipelines[1].start();
      await eventually(
        "node 2 gets partitions while shard 0 still holds node 1's delivery",
        () => Promise.resolve(assigned[1].length > 0),
        15_000,
        () => `node 1: [${assigned[0]}], node 2: [${assigned[1]}]`,
      );
      await eventually(
        "the two nodes share the 4 partitions",
        () => Promise.resolve(new Set([...assigned[0], ...assigned[1]]).size === 4 && assigned[0].length === 2),
        15_000,
        () => `node 1: [${assigned[0]}], node 2: [${assigned[1]}]`,
      );
    } finally {
      held.resolve();
      await secondStarted;
      await Promise.all(pipelines.map((p) => p.stop()));
    }
  }));

Deno.test("deliveries that hang in ten of twelve partitions: the other two are delivered and committed, the ten once their shards answer", () =>
  withTopic("consumer-stuck", async (topic) => {
    const kafka = testKafka("usershard-127.0.0.1-1");
    const partitions = 12;
    await createTopic(topic, partitions);
    await producePurchases(kafka, topic, knownPurchases(600, 120, 1));
    // The last two of the first fetch's batches: behind more held partitions than there are slots.
    const free = new Set([10, 11]);
    const held = Promise.withResolvers<void>();
    let heldDeliveries = 0;
    const applied = new AppliedOffsets();
    const group = uniqueName("consumer-stuck-group");
    const pipeline = new ConsumerPipeline({
      kafka: { brokers: BROKERS, clientId: "usershard-127.0.0.1-1" },
      topic,
      group,
      partitions,
      sink: {
        async applyEvents(shard, events) {
          if (!free.has(shard)) {
            heldDeliveries++;
            await held.promise;
          }
          return applied.record(shard, events);
        },
      },
      onAssignment: () => {},
      partitionCount: () => Promise.resolve(partitions),
      hostedShards: () => partitions,
    });
    const admin = kafka.admin();
    await admin.connect();
    await pipeline.start();
    try {
      await eventually("deliveries held", () => Promise.resolve(heldDeliveries > 0));
      // Only a later fetch brings these: the free partitions must go on past the first one.
      await producePurchases(kafka, topic, knownPurchases(600, 120, 2));
      const ends = await endOffsets(admin, topic);
      for (const p of free) assert.ok(ends.get(p)! > 0, `partition ${p} has events`);
      const heldCommits = new Set<number>();
      await eventually(
        "partitions 10 and 11 delivered and committed",
        async () => {
          const committed = await committedOffsets(admin, group, topic);
          for (let p = 0; p < partitions; p++) if (!free.has(p)) heldCommits.add(committed.get(p)!);
          return [...free].every((p) => committed.get(p) === ends.get(p) && applied.exactlyOnceUpTo(p, ends.get(p)!));
        },
        20_000,
        () => `applied ${[...free].map((p) => `${p}: ${applied.distinct(p)}/${ends.get(p)}`).join(", ")}`,
      );
      assert.deepEqual([...heldCommits], [-1], "nothing committed in a partition whose shard has not answered");
      assert.equal(heldDeliveries, 10, "a held partition waits paused, without redeliveries");

      held.resolve();
      await eventually("every partition delivered and committed", async () => {
        const committed = await committedOffsets(admin, group, topic);
        return [...ends].every(([p, end]) => committed.get(p) === end);
      }, 20_000);
      for (const [p, end] of ends) assert.ok(applied.exactlyOnceUpTo(p, end), `partition ${p}: each event once`);
      assert.equal(pipeline.stats.events, [...ends.values()].reduce((a, b) => a + b, 0), "events counted once");
    } finally {
      held.resolve();
      await pipeline.stop();
      await admin.disconnect();
    }
  }));

Deno.test("a misplaced record while Kafka cannot say the partition count: neither skipped nor committed past until it can", () =>
  withTopic("consumer-count", async (topic) => {
    const kafka = testKafka("usershard-127.0.0.1-1");
    await createTopic(topic, 2);
    const users = Array.from({ length: 20 }, (_, i) => String(i));
    const inZero = users.filter((u) => partitionFor(u, 2) === 0);
    const stray = users.find((u) => partitionFor(u, 2) === 1)!;
    const purchase = (userId: string) => ({ userId, product: "rope", quantity: 1, price: 100 });
    // Written to partition 0 by hand, as a producer with another partitioner would.
    const producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
    });
    await producer.connect();
    await producer.send({
      topic,
      messages: [...inZero.slice(0, 3), stray, ...inZero.slice(3)].map((u) => ({
        ...purchaseMessage(purchase(u)),
        partition: 0,
      })),
    });
    await producer.disconnect();
    const strayOffset = 3;
    const end = 1 + inZero.length;

    let countKnown = false;
    let asked = 0;
    const applied = new AppliedOffsets();
    const group = uniqueName("consumer-count-group");
    const pipeline = new ConsumerPipeline({
      kafka: { brokers: BROKERS, clientId: "usershard-127.0.0.1-1" },
      topic,
      group,
      partitions: 2,
      sink: { applyEvents: (shard, events) => Promise.resolve(applied.record(shard, events)) },
      onAssignment: () => {},
      partitionCount: () => {
        asked++;
        return Promise.resolve(countKnown ? 2 : undefined);
      },
      hostedShards: () => 2,
    });
    const admin = kafka.admin();
    await admin.connect();
    await pipeline.start();
    try {
      const seen = new Set<number>();
      await eventually("the count asked again and again", async () => {
        seen.add((await committedOffsets(admin, group, topic)).get(0)!);
        return asked >= 3 || pipeline.stats.malformed > 0;
      }, 20_000);
      assert.equal(pipeline.stats.malformed, 0, "not skipped as malformed while the count is unknown");
      assert.ok([...seen].every((offset) => offset <= strayOffset), `not committed past it: ${[...seen]}`);

      countKnown = true;
      await eventually(
        "partition 0 committed",
        async () => (await committedOffsets(admin, group, topic)).get(0) === end,
      );
      assert.equal(pipeline.stats.malformed, 1, "skipped as malformed once the count is known");
      assert.equal(applied.distinct(0), end - 1, "every other record of partition 0 applied");
    } finally {
      await pipeline.stop();
      await admin.disconnect();
    }
  }));

Deno.test("a client whose own rejoin failed is out of its group without a word; the membership watch has it join again", () =>
  withTopic("consumer-out", async (topic) => {
    await createTopic(topic, 2);
    const client = new Consumer({
      ...clientOptions({ brokers: BROKERS, clientId: "usershard-test" }),
      groupId: uniqueName("consumer-out-group"),
      sessionTimeout: 10_000,
      rebalanceTimeout: 10_000,
      heartbeatInterval: 500,
    });
    let joins = 0;
    let errors = 0;
    client.on("consumer:group:join", () => joins++);
    client.on("error", () => errors++);
    let rejoins = 0;
    let outWhenWatched = false;
    const stopWatch = watchMembership(client, {
      afterMs: 2000,
      everyMs: 200,
      act: (action) => {
        assert.equal(action, "rejoin", "a join first");
        rejoins++;
        outWhenWatched = !client.isActive();
        client.joinGroup({}).catch(() => {});
      },
    });
    try {
      client.topics.track(topic);
      await client.joinGroup({});
      assert.ok(client.isActive(), "a member after its first join");
      // The client's own rejoin after a commit met a rebalance is this call; the broker refuses it here as a
      // frozen broker timed it out in CI.
      await assert.rejects(client.joinGroup({ sessionTimeout: 3_600_000, rebalanceTimeout: 3_600_000 }));
      assert.equal(client.isActive(), false, "out of the group once its join failed");
      await eventually("the watch has the client join again", () => rejoins > 0, 20_000);
      assert.ok(outWhenWatched, "the client was still out 2 s later: nobody else rejoins it");
      assert.equal(errors, 0, "the client reported nothing");
      await eventually("the client is a member again", () => client.isActive() && joins === 2, 20_000);
    } finally {
      stopWatch();
      await client.close(true);
    }
  }));
