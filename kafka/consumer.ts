/**
 * The consumer pipeline of a processor node. One event's path:
 * Kafka record → {@linkcode decodePurchase} → shard id (= partition) →
 * `sink.applyEvents` (the shard region: local shard, or its home over TCP) →
 * the shard applies, writes its changelog and acknowledges → offset committed,
 * once per fetched batch. Nothing is committed before the shard has applied
 * and stored it (invariant 2 of ARCHITECTURE.md), partitions run in parallel,
 * and inside a partition events keep their order.
 *
 * @module
 */
import { type Consumer, type EachBatchPayload, type Kafka, PartitionAssigners } from "kafkajs";
import { getLogger } from "@logtape/logtape";
import type { PurchaseEvent } from "../cluster/sharding/entity.ts";
import { partitionForBytes } from "./partitioner.ts";
import { decodePurchase } from "./purchase.ts";
import { stickyAssigner } from "./sticky_assignor.ts";

const log = getLogger(["usershard", "consumer"]);

const HEARTBEAT_WHILE_WAITING_MS = 1000;
const RETRY_DELIVERY_AFTER_MS = 1000;

/** Events per second for the summary: whole numbers, but a slow trickle is not shown as 0. */
function ratePerSecond(events: number, ms: number): string {
  const rate = events / (ms / 1000);
  return rate >= 10 ? String(Math.round(rate)) : rate.toFixed(1);
}

/**
 * `work`, heartbeating meanwhile: kafkajs heartbeats only when asked, and a
 * shard that is moving (or Kafka itself) can take longer than the session
 * timeout to answer; the group must not evict us for it.
 */
async function whileWaiting<T>(heartbeat: () => Promise<void>, work: Promise<T>): Promise<T> {
  const beat = setInterval(() => heartbeat().catch(() => {}), HEARTBEAT_WHILE_WAITING_MS);
  try {
    return await work;
  } finally {
    clearInterval(beat);
  }
}

/** Where decoded events go: the shard region. */
export interface EventSink {
  /** Applies events of one partition in the shard of that partition; resolves once applied. */
  applyEvents(shard: number, events: readonly PurchaseEvent[]): Promise<{ lastOffset: number; local: boolean }>;
}

/** How a pipeline is set up. */
export interface PipelineOptions {
  readonly kafka: Kafka;
  readonly topic: string;
  readonly group: string;
  /** Partitions of the topic (= shards). */
  readonly partitions: number;
  readonly sink: EventSink;
  /** Called with this node's partitions after every rebalance of the group. */
  readonly onAssignment: (partitions: readonly number[]) => void;
  /**
   * The topic's partition count as Kafka has it now. Asked when a record sits
   * in a partition its user does not hash to, to tell a stray record from a
   * topic that has grown.
   */
  readonly partitionCount: () => Promise<number | undefined>;
  /** Shards hosted on this node, for the periodic summary. */
  readonly hostedShards: () => number;
  /** Partitions processed at the same time. */
  readonly concurrency?: number;
  readonly summaryEveryMs?: number;
}

/** Running counts of what the pipeline did. */
export interface PipelineStats {
  events: number;
  local: number;
  malformed: number;
}

/** Consumes the topic in the group and feeds the shard region. */
export class ConsumerPipeline {
  readonly #o: PipelineOptions;
  readonly #consumer: Consumer;
  readonly stats: PipelineStats = { events: 0, local: 0, malformed: 0 };
  #assigned: number[] = [];
  #summaryTimer: ReturnType<typeof setInterval> | undefined;
  #lastSummary = { at: Date.now(), events: 0, local: 0, malformed: 0 };
  readonly #fatal = Promise.withResolvers<string>();
  #failed = false;
  #resizeCheck: Promise<boolean | undefined> | undefined;

  constructor(options: PipelineOptions) {
    this.#o = options;
    this.#consumer = options.kafka.consumer({
      groupId: options.group,
      sessionTimeout: 10_000,
      rebalanceTimeout: 30_000,
      heartbeatInterval: 1000,
      maxWaitTimeInMs: 250,
      allowAutoTopicCreation: false,
      // New partitions are seen this soon (kafkajs's default is 5 minutes); see #topicResized.
      metadataMaxAge: 30_000,
      // Round-robin as well, so that a group still holding members that offer only that one
      // (nodes of an older build, during a rolling upgrade) agrees on it instead of refusing us.
      partitionAssigners: [stickyAssigner(() => ({ [options.topic]: this.#assigned })), PartitionAssigners.roundRobin],
    });
    this.#consumer.on(this.#consumer.events.GROUP_JOIN, ({ payload }) => {
      this.#assignment(payload.memberAssignment[options.topic] ?? []);
    });
    this.#consumer.on(this.#consumer.events.REBALANCING, () => {
      log.info("Kafka consumer group {group} is rebalancing", { group: options.group });
    });
    this.#consumer.on(this.#consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) {
        log.warn("Kafka consumer stopped on an error and restarts: {error}", { error: String(payload.error) });
      } else {
        this.#fail(`the Kafka consumer stopped for good: ${payload.error.message}`);
      }
    });
  }

  /** Settles with the reason when consuming cannot go on (the topic has grown, the consumer died). */
  get fatal(): Promise<string> {
    return this.#fatal.promise;
  }

  /** The partitions Kafka assigned to this node. */
  get assigned(): readonly number[] {
    return this.#assigned;
  }

  #assignment(partitions: readonly number[]): void {
    const now = [...partitions].sort((a, b) => a - b);
    const before = new Set(this.#assigned);
    const added = now.filter((p) => !before.has(p));
    const removed = this.#assigned.filter((p) => !now.includes(p));
    this.#assigned = now;
    if (added.length > 0) {
      log.info("partitions {added} assigned to this node ({count} in all); updating shard allocation", {
        added: `[${added.join(",")}]`,
        count: now.length,
      });
    }
    if (removed.length > 0) {
      log.info("partitions {removed} revoked from this node ({count} left)", {
        removed: `[${removed.join(",")}]`,
        count: now.length,
      });
    }
    this.#o.onAssignment(now);
  }

  /** Joins the group and starts consuming from the earliest offsets not yet committed. */
  async start(): Promise<void> {
    await this.#consumer.connect();
    await this.#consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
    await this.#consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.#o.concurrency ?? 8,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    const every = this.#o.summaryEveryMs ?? 10_000;
    this.#summaryTimer = setInterval(() => this.#summary(), every);
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, isRunning, isStale, pause } = payload;
    const { topic, partition } = batch;
    // Returning without resolving has kafkajs fetch the rest again from the last resolved offset;
    // pausing the partition meanwhile keeps that from being at once, and lets the others go on.
    const retryLater = () => {
      const resume = pause();
      if (!this.#failed) setTimeout(resume, RETRY_DELIVERY_AFTER_MS);
    };
    if (this.#failed) return retryLater();
    if (partition >= this.#o.partitions) {
      // Only a grown topic has such a partition; nothing in it may be committed under the old count.
      await whileWaiting(heartbeat, this.#topicResized());
      return retryLater();
    }
    const events: PurchaseEvent[] = [];
    let lastOffset = -1;
    for (const message of batch.messages) {
      const offset = Number(message.offset);
      const decoded = decodePurchase(message.key, message.value);
      if (!decoded.ok) {
        this.#malformed(topic, partition, offset, decoded.reason);
      } else {
        const { userId, product, quantity, price } = decoded.purchase;
        // The key is the user id's UTF-8 (decodePurchase checked), so hash it as it is.
        const shard = partitionForBytes(message.key!, this.#o.partitions);
        if (shard !== partition) {
          // Nothing past this record may be committed before the resize check says it is a stray.
          const resized = await whileWaiting(heartbeat, this.#topicResized());
          if (resized !== false) return retryLater();
          this.#malformed(topic, partition, offset, `user ${userId} belongs in partition ${shard}, not ${partition}`);
        } else {
          events.push({ offset, userId, product, quantity, price });
        }
      }
      lastOffset = offset;
    }
    if (lastOffset < 0 || !isRunning() || isStale()) return;
    if (events.length > 0) {
      try {
        // The whole batch in one delivery: one changelog transaction and one commit for it.
        const delivery = await whileWaiting(heartbeat, this.#o.sink.applyEvents(partition, events));
        this.stats.events += events.length;
        if (delivery.local) this.stats.local += events.length;
      } catch (error) {
        log.warn(
          "could not deliver {count} events of {topic}/{partition} to shard {partition}: {error}; " +
            "they stay uncommitted and are fetched again in {ms} ms",
          {
            count: events.length,
            topic,
            partition,
            error: error instanceof Error ? error.message : String(error),
            ms: RETRY_DELIVERY_AFTER_MS,
          },
        );
        // Throwing would make kafkajs restart the whole consumer, which leaves and rejoins
        // the group: a rebalance of every node for one unreachable shard.
        return retryLater();
      }
    }
    resolveOffset(String(lastOffset));
    await commitOffsetsIfNecessary({
      topics: [{ topic, partitions: [{ partition, offset: String(lastOffset + 1) }] }],
    });
    await heartbeat();
  }

  /**
   * Whether the topic now has another partition count than the shards (then
   * users have moved between partitions, and skipping their records as
   * misplaced would lose them); `undefined` when Kafka could not say. Every
   * answer is asked afresh (partitions running at once share one question):
   * a remembered "no" could let a resize that just happened skip events.
   */
  #topicResized(): Promise<boolean | undefined> {
    this.#resizeCheck ??= this.#o.partitionCount().then((count) => {
      if (count === undefined || count === this.#o.partitions) return false;
      this.#fail(
        `topic ${this.#o.topic} has ${count} partitions now, not ${this.#o.partitions}: users have moved ` +
          "between partitions, so this node stops rather than skip their events; restart every node",
      );
      return true;
    }, (error) => {
      log.warn("could not read the partition count of {topic}: {error}", {
        topic: this.#o.topic,
        error: String(error),
      });
      return undefined;
    }).finally(() => this.#resizeCheck = undefined);
    return this.#resizeCheck;
  }

  #fail(reason: string): void {
    this.#failed = true;
    this.#fatal.resolve(reason);
  }

  #malformed(topic: string, partition: number, offset: number, reason: string): void {
    this.stats.malformed++;
    log.warn("skipping malformed record {topic}/{partition}@{offset}: {reason}", { topic, partition, offset, reason });
  }

  #summary(): void {
    const now = Date.now();
    const last = this.#lastSummary;
    const events = this.stats.events - last.events;
    const malformed = this.stats.malformed - last.malformed;
    if (events === 0 && malformed === 0) return;
    const local = this.stats.local - last.local;
    log.info(
      "processed {events} events in {seconds} s ({rate}/s), {local}% on this node, {shards} shards hosted, " +
        "{partitions} partitions consumed{malformed}",
      {
        events,
        seconds: Math.round((now - last.at) / 1000),
        rate: ratePerSecond(events, now - last.at),
        local: events > 0 ? Math.round((100 * local) / events) : 100,
        shards: this.#o.hostedShards(),
        partitions: this.#assigned.length,
        malformed: malformed > 0 ? `, ${malformed} malformed records skipped` : "",
      },
    );
    this.#lastSummary = { at: now, ...this.stats };
  }

  /** Stops consuming (after the batches in hand) and leaves the group. */
  async stop(): Promise<void> {
    clearInterval(this.#summaryTimer);
    this.#summary();
    await this.#consumer.disconnect();
  }
}
