/**
 * Test access to the real broker that `deno task kafka` started: its address,
 * fresh topic names per test, and reading a topic back.
 *
 * Test code reads, writes and inspects Kafka through kafkajs, a client
 * independent of the program's (`@platformatic/kafka`), so that a fault of
 * the program's client cannot hide itself; {@linkcode testAdmin} is the
 * program's admin client, for the program's functions that take one.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import process from "node:process";
import type { Admin } from "@platformatic/kafka";
import { type ICustomPartitioner, Kafka, logLevel } from "kafkajs";
import { ensureTopic } from "../../kafka/admin.ts";
import { createAdmin } from "../../kafka/client.ts";
import { partitionFor } from "../../kafka/partitioner.ts";
import { purchaseMessage } from "../../kafka/producer.ts";
import type { Purchase } from "../../kafka/purchase.ts";

/** The brokers the test run uses (`KAFKA_BROKERS`, default `localhost:9092`). */
export const BROKERS: readonly string[] = (Deno.env.get("KAFKA_BROKERS") ?? "localhost:9092").split(",");

// kafkajs schedules timers with negative delays (harmless: they run at once), which the Node compatibility
// layer reports on stderr, in the middle of the tests' output; every other warning is reported as before.
const reportWarning = process.listeners("warning");
process.removeAllListeners("warning");
process.on("warning", (warning) => {
  if (warning.name !== "TimeoutNegativeWarning") { for (const report of reportWarning) report(warning); }
});

/** A kafkajs client whose requests give up after a few seconds of retries, and that logs nothing. */
export function kafkajsClient(brokers: readonly string[], clientId: string): Kafka {
  return new Kafka({
    clientId,
    brokers: [...brokers],
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 4 },
    logLevel: logLevel.NOTHING,
  });
}

/** A Kafka client for test code. */
export function testKafka(clientId = "usershard-test"): Kafka {
  return kafkajsClient(BROKERS, clientId);
}

/** The program's admin client on the test brokers; `close()` it when done. */
export function testAdmin(clientId = "usershard-test"): Admin {
  return createAdmin({ brokers: BROKERS, clientId });
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

/**
 * Creates `topic` with `partitions` partitions and the brokers' default
 * replicas, as the commands do, and waits until every partition has a leader.
 */
export async function createTopic(topic: string, partitions: number): Promise<void> {
  // Through the program's own ensureTopic, which waits for every broker to know the topic and its leaders: right
  // after a broker's restart, kafkajs's waitForLeaders fails on a broker that does not know the topic yet.
  const admin = testAdmin();
  try {
    const info = await ensureTopic(admin, topic, partitions);
    if (!info.created) throw new Error(`topic ${topic} existed already`);
  } finally {
    await admin.close();
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

/** Kafka's Java default partitioning of keyed records, by the project's own function. */
const byUser: ICustomPartitioner = () => ({ partitionMetadata, message }) => {
  if (message.key === null || message.key === undefined) throw new Error("purchases are keyed by user id");
  return partitionFor(String(message.key), partitionMetadata.length);
};

/**
 * Sends purchases as the project's producer does: keyed and partitioned by
 * user, every one once. Idempotent: kafkajs resends a whole request when one
 * of its partitions fails (a leader not elected yet), and without idempotence
 * the partitions that had succeeded would get their events twice.
 */
export async function producePurchases(kafka: Kafka, topic: string, purchases: readonly Purchase[]): Promise<void> {
  const producer = kafka.producer({
    createPartitioner: byUser,
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    for (let i = 0; i < purchases.length; i += 1000) {
      await producer.send({ topic, messages: purchases.slice(i, i + 1000).map(purchaseMessage) });
    }
  } finally {
    await producer.disconnect();
  }
}
