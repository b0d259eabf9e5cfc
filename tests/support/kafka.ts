/**
 * Test access to the real broker that `deno task kafka` started: its address,
 * fresh topic names per test, and reading a topic back.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Kafka } from "kafkajs";
import { ensureTopic } from "../../kafka/admin.ts";
import { createKafka } from "../../kafka/client.ts";
import { createPurchaseProducer, purchaseMessage } from "../../kafka/producer.ts";
import type { Purchase } from "../../kafka/purchase.ts";

/** The brokers the test run uses (`KAFKA_BROKERS`, default `localhost:9092`). */
export const BROKERS: readonly string[] = (Deno.env.get("KAFKA_BROKERS") ?? "localhost:9092").split(",");

/** A Kafka client for test code. */
export function testKafka(clientId = "usershard-test"): Kafka {
  return createKafka({ brokers: BROKERS, clientId });
}

/** A topic or group name no other test (or earlier run) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${crypto.randomUUID().slice(0, 8)}`;
}

/**
 * Runs `run` with a fresh topic name, then deletes every topic whose name
 * starts with it: a broker that keeps every test's partitions takes minutes
 * to start after a few hundred runs.
 */
export async function withTopic<T>(prefix: string, run: (topic: string) => Promise<T>): Promise<T> {
  const topic = uniqueName(prefix);
  try {
    return await run(topic);
  } finally {
    await deleteTopics(topic);
  }
}

/** Deletes every topic whose name starts with `prefix`; a failure is printed, not thrown. */
export async function deleteTopics(prefix: string): Promise<void> {
  const admin = testKafka("usershard-test-cleanup").admin();
  try {
    await admin.connect();
    let topics = (await admin.listTopics()).filter((name) => name.startsWith(prefix));
    if (!topics.includes(prefix)) {
      // A topic created a moment ago may not be listed yet (a test that failed right after creating it).
      await new Promise((resolve) => setTimeout(resolve, 500));
      topics = (await admin.listTopics()).filter((name) => name.startsWith(prefix));
    }
    if (topics.length > 0) await admin.deleteTopics({ topics });
  } catch (error) {
    // Cleanup must not hide the test's own outcome; a leftover topic is only a cost.
    console.error(`could not delete the test topics ${prefix}*: ${error}`);
  } finally {
    await admin.disconnect();
  }
}

/** One record as read back from the topic. */
export interface ReadRecord {
  readonly partition: number;
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/**
 * Reads every record of `topic` up to its current end offsets, from all
 * partitions. A record delivered twice (a consumer-group rejoin while the
 * broker's offsets topic is still being created, say) is kept once.
 */
export async function readTopic(kafka: Kafka, topic: string, timeoutMs = 30_000): Promise<ReadRecord[]> {
  // A broker just back (restarted, thawed, a new leader elected) refuses for a moment: read again, bounded.
  const deadline = Date.now() + timeoutMs;
  while (true) {
    try {
      return await readTopicOnce(kafka, topic, Math.max(1000, deadline - Date.now()));
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

async function readTopicOnce(kafka: Kafka, topic: string, timeoutMs: number): Promise<ReadRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic).finally(() => admin.disconnect());
  const expected = ends.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
  const records = new Map<string, ReadRecord>();
  if (expected > 0) {
    const consumer = kafka.consumer({ groupId: `reader-${crypto.randomUUID()}` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const done = Promise.withResolvers<void>();
    const timer = setTimeout(
      () => done.reject(new Error(`read ${records.size} of ${expected} records of ${topic} in ${timeoutMs} ms`)),
      timeoutMs,
    );
    await consumer.run({
      eachMessage: ({ partition, message }) => {
        records.set(`${partition}:${message.offset}`, {
          partition,
          offset: message.offset,
          key: message.key,
          value: message.value,
        });
        if (records.size >= expected) done.resolve();
        return Promise.resolve();
      },
    });
    try {
      await done.promise;
    } finally {
      clearTimeout(timer);
      await consumer.disconnect();
    }
  }
  return [...records.values()].sort((a, b) => a.partition - b.partition || Number(a.offset) - Number(b.offset));
}

/** Creates `topic` with `partitions` partitions, the way the commands do, and waits until it is ready. */
export async function createTopic(kafka: Kafka, topic: string, partitions: number): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const info = await ensureTopic(admin, topic, partitions);
    if (!info.created) throw new Error(`topic ${topic} existed already`);
  } finally {
    await admin.disconnect();
  }
}

/** Users' expected totals, computed from the purchases a test produced. */
export function expectedTotals(
  purchases: readonly Purchase[],
): Map<string, { totalPurchases: number; amountSpent: number }> {
  const totals = new Map<string, { totalPurchases: number; amountSpent: number }>();
  for (const p of purchases) {
    const t = totals.get(p.userId) ?? { totalPurchases: 0, amountSpent: 0 };
    totals.set(p.userId, { totalPurchases: t.totalPurchases + 1, amountSpent: t.amountSpent + p.quantity * p.price });
  }
  return totals;
}

/**
 * `count` purchases spread over users `0..users-1` (every user at least once
 * when count ≥ users), with a fixed pseudo-random sequence per `seed`.
 */
export function knownPurchases(count: number, users: number, seed = 1): Purchase[] {
  let state = seed;
  const next = () => (state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32;
  return Array.from({ length: count }, (_, i) => ({
    userId: String(i < users ? i : Math.floor(next() * users)),
    product: "rope",
    quantity: 1 + Math.floor(next() * 5),
    price: Math.floor(next() * 10_000),
  }));
}

/** Sends purchases with the project's producer (keyed, partitioned by user). */
export async function producePurchases(kafka: Kafka, topic: string, purchases: readonly Purchase[]): Promise<void> {
  const producer = createPurchaseProducer(kafka);
  await producer.connect();
  try {
    for (let i = 0; i < purchases.length; i += 1000) {
      await producer.send({ topic, messages: purchases.slice(i, i + 1000).map(purchaseMessage) });
    }
  } finally {
    await producer.disconnect();
  }
}
