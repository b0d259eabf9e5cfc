/**
 * The load generator behind `usershard produce`: random purchases by users
 * `0..users-1`, sent at a steady rate (or as fast as the broker takes them),
 * partitioned by {@linkcode partitionFor} so each user's events share a
 * partition.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { clientOptions, type KafkaSettings } from "./client.ts";
import { Producer } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";
import { sleep } from "../cluster/sleep.ts";
import { partitionFor } from "./partitioner.ts";
import { encodePurchase, type Purchase } from "./purchase.ts";

const log = getLogger(["usershard", "producer"]);

/** The products of the Akka sample's producer. */
export const PRODUCTS: readonly string[] = ["cat t-shirt", "akka t-shirt", "skis", "climbing shoes", "rope"];

/** Prices are drawn from `0..MAX_PRICE - 1` pence, as in the sample. */
export const MAX_PRICE = 10_000;

/** Rates up to this many events/s log one line per event; faster ones log progress. */
export const PER_EVENT_LOG_MAX_RATE = 10;

/** What to produce. */
export interface ProduceOptions {
  /** Users are `"0"` .. `String(users - 1)`. */
  readonly users: number;
  /** Events per second; 0 means as fast as possible. */
  readonly rate: number;
  /** Stop after this many events; unbounded when absent. */
  readonly count?: number;
  /** Seconds between progress lines at high rates. */
  readonly progressEverySeconds?: number;
  /** Where the purchases' randomness comes from; the same source sends the same events. */
  readonly random?: () => number;
}

/** What {@linkcode produce} sent (acknowledged by the broker) and how fast. */
export interface ProduceSummary {
  readonly sent: number;
  readonly seconds: number;
}

/**
 * A random purchase in the sample's ranges.
 *
 * @example
 * ```ts
 * randomPurchase(200); // { userId: "42", product: "skis", quantity: 3, price: 2080 }
 * ```
 */
export function randomPurchase(users: number, random: () => number = Math.random): Purchase {
  return {
    userId: String(Math.floor(random() * users)),
    product: PRODUCTS[Math.floor(random() * PRODUCTS.length)],
    quantity: 1 + Math.floor(random() * 5),
    price: Math.floor(random() * MAX_PRICE),
  };
}

/** A purchase's record: its key, the user id, decides its partition. */
export interface PurchaseRecord {
  key: Buffer;
  value: Buffer;
}

/** The record for a purchase: keyed by user id. */
export function purchaseMessage(purchase: Purchase): PurchaseRecord {
  // Kafka clients size records with Buffer methods; a bare Uint8Array is mis-encoded.
  const bytes = encodePurchase(purchase);
  return { key: Buffer.from(purchase.userId), value: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) };
}

const MAX_BATCH = 2000;

/** How long a send rides out a broker's loss (a new leader elected, the broker back) before it fails. */
export const SEND_RETRY_MS = 60_000;
const SEND_RETRY_DELAY_MS = 500;

/**
 * Sends purchases to one topic so that each is in it exactly once when the
 * send resolves: idempotent (a retry is recognised by its sequence number,
 * never written twice), acknowledged by every in-sync replica, and retried
 * for {@linkcode SEND_RETRY_MS} through a broker's loss and a leader's
 * election. Each partition's events go in a request of their own, to that
 * partition's leader, so a retry after a failover finds each partition's
 * new leader.
 */
export class PurchaseSender {
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #partitions: number;

  constructor(kafka: KafkaSettings, topic: string, partitions: number) {
    this.#topic = topic;
    this.#partitions = partitions;
    this.#producer = new Producer({
      ...clientOptions(kafka),
      idempotent: true,
      acks: -1,
      retries: Math.ceil(SEND_RETRY_MS / SEND_RETRY_DELAY_MS),
      retryDelay: SEND_RETRY_DELAY_MS,
      autocreateTopics: false,
    });
  }

  /**
   * Sends `purchases`; resolves once every one is acknowledged. Rejects with
   * {@linkcode SendFailed} when some could not be sent, once every
   * partition's request has settled, saying how many were acknowledged.
   */
  async send(purchases: readonly Purchase[]): Promise<void> {
    const byPartition = new Map<number, Purchase[]>();
    for (const purchase of purchases) {
      const partition = partitionFor(purchase.userId, this.#partitions);
      const list = byPartition.get(partition) ?? [];
      list.push(purchase);
      byPartition.set(partition, list);
    }
    const results = await Promise.allSettled([...byPartition].map(async ([partition, list]) => {
      await this.#producer.send({
        messages: list.map((purchase) => ({ topic: this.#topic, partition, ...purchaseMessage(purchase) })),
      });
      return list.length;
    }));
    const failure = results.find((result) => result.status === "rejected");
    if (failure) {
      const acknowledged = results.reduce((n, result) => n + (result.status === "fulfilled" ? result.value : 0), 0);
      throw new SendFailed(acknowledged, failure.reason);
    }
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    await this.#producer.close();
  }
}

/** Some of a batch's partitions failed for good; the others' `acknowledged` events are in the topic. */
export class SendFailed extends Error {
  override name = "SendFailed";
  constructor(readonly acknowledged: number, override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/** A send failed for good; `sent` events were acknowledged, before it or beside it. */
export class ProduceFailed extends Error {
  override name = "ProduceFailed";
  constructor(readonly sent: number, override readonly cause: unknown) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

/**
 * Sends random purchases until `count` is reached or `signal` aborts; on abort
 * it still waits for the batch already handed to the broker, so every event
 * counted in the summary is in the topic. Batches go one at a time: the
 * idempotent producer keeps per-partition sequence numbers that concurrent
 * sends to one partition would interleave.
 */
export async function produce(
  producer: { send(purchases: readonly Purchase[]): Promise<unknown> },
  options: ProduceOptions,
  signal: AbortSignal,
): Promise<ProduceSummary> {
  const { users, rate, count = Infinity } = options;
  const perEvent = rate > 0 && rate <= PER_EVENT_LOG_MAX_RATE;
  const progressEvery = (options.progressEverySeconds ?? 5) * 1000;
  const started = performance.now();
  let sent = 0;
  let lastProgress = started;
  let sentAtLastProgress = 0;

  while (!signal.aborted && sent < count) {
    const due = rate > 0 ? Math.floor(((performance.now() - started) * rate) / 1000) + 1 : Infinity;
    const size = Math.min(due - sent, MAX_BATCH, count - sent);
    if (size <= 0) {
      await sleep(started + (sent * 1000) / rate - performance.now(), signal);
      continue;
    }
    const purchases = Array.from({ length: size }, () => randomPurchase(users, options.random));
    if (perEvent) { for (const p of purchases) log.info("Sending message to user {userId}", { userId: p.userId }); }
    try {
      await producer.send(purchases);
    } catch (error) {
      if (error instanceof SendFailed) throw new ProduceFailed(sent + error.acknowledged, error.cause);
      throw new ProduceFailed(sent, error);
    }
    sent += size;
    const now = performance.now();
    if (!perEvent && now - lastProgress >= progressEvery) {
      const recentRate = (sent - sentAtLastProgress) / ((now - lastProgress) / 1000);
      log.info("sent {sent} events ({rate} events/s)", { sent, rate: Math.round(recentRate) });
      lastProgress = now;
      sentAtLastProgress = sent;
    }
  }
  return { sent, seconds: (performance.now() - started) / 1000 };
}
