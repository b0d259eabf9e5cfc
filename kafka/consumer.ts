/**
 * The consumer pipeline of a processor node. One event's path:
 * Kafka record → {@linkcode decodePurchase} → shard id (= partition) →
 * `sink.applyEvents` (the shard region: local shard, or its home over TCP) →
 * the shard applies, writes its changelog and acknowledges → offset committed,
 * once per fetched batch. Nothing is committed before the shard has applied
 * and stored it (invariant 2 of ARCHITECTURE.md), partitions run in parallel,
 * and inside a partition events keep their order.
 *
 * A batch never holds kafkajs up for long: kafkajs fetches again only once
 * every batch of the last fetch is done, and rejoins a rebalancing group only
 * once they return. So a delivery that takes longer than
 * `RELEASE_SLOT_AFTER_MS` (a shard moving), or that is in hand when
 * a heartbeat says the group is rebalancing, goes on in the background with
 * its partition paused and its batch uncommitted; when it settles the
 * partition resumes, is fetched again, and what the sink acknowledged
 * meanwhile is committed without being delivered twice. A refused delivery,
 * or a misplaced record while the topic's partition count is unknown,
 * pauses its partition for `RETRY_DELIVERY_AFTER_MS` and fetches
 * the batch again.
 *
 * @module
 */
import { type Consumer, type EachBatchPayload, type Kafka, PartitionAssigners } from "kafkajs";
import { getLogger } from "@logtape/logtape";
import type { PurchaseEvent } from "../cluster/sharding/entity.ts";
import { partitionForBytes } from "./partitioner.ts";
import { decodePurchase, type MalformedKind } from "./purchase.ts";
import { stickyAssigner } from "./sticky_assignor.ts";
import { waitBounded, type Waited } from "./bounded_wait.ts";
import { errorText } from "../cluster/error_text.ts";
import { DEFAULT_KAFKA_TIMINGS, type KafkaTimings } from "../cluster/timings.ts";

const log = getLogger(["usershard", "consumer"]);

/** How often to ask kafkajs for a heartbeat while waiting; it sends one only once its own interval has passed. */
const HEARTBEAT_WHILE_WAITING_MS = 250;

/** How long a refused delivery's partition stays paused before its batch is fetched again. */
const RETRY_DELIVERY_AFTER_MS = 1000;

/**
 * How long a batch may keep its kafkajs worker waiting for the sink. Waiting
 * longer would hold up every other partition of the node (kafkajs fetches
 * again only when all batches of a fetch are done, and it has only
 * `concurrency` workers). Deliveries take milliseconds unless the shard is
 * moving or its node is unreachable, so only those take the slower way round
 * (pause, finish in the background, fetch again).
 */
const RELEASE_SLOT_AFTER_MS = 1000;

/** Why a resize check gave no count, for a log line. */
function unknownCount(check: Waited<unknown>, topic: string): string {
  return `Kafka ${check.kind === "slow" ? "is slow to say" : "could not say"} the partition count of ${topic}`;
}

/** Events per second for the summary: whole numbers, but a slow trickle is not shown as 0. */
function ratePerSecond(events: number, ms: number): string {
  const rate = events / (ms / 1000);
  return rate >= 10 ? String(Math.round(rate)) : rate.toFixed(1);
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
  /** Hears of every delivery and every skipped record (the node's metrics). */
  readonly observer?: PipelineObserver;
  /** The group's session, rebalance and heartbeat timings (ARCHITECTURE.md, "Timing"). */
  readonly timings?: KafkaTimings;
  /** Partitions processed at the same time. */
  readonly concurrency?: number;
  readonly summaryEveryMs?: number;
}

/** What a pipeline reports as it goes. */
export interface PipelineObserver {
  /** `events` acknowledged by their shard, which is hosted on this node when `local`. */
  applied(events: number, local: boolean): void;
  /** One record skipped as malformed. */
  malformed(kind: MalformedKind): void;
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
  /** The kafkajs consumer of the current run: a new one for each start, since one that left cannot join again. */
  #consumer: Consumer | undefined;
  readonly stats: PipelineStats = { events: 0, local: 0, malformed: 0 };
  #assigned: number[] = [];
  #summaryTimer: ReturnType<typeof setInterval> | undefined;
  #lastSummary = { at: Date.now(), events: 0, local: 0, malformed: 0 };
  readonly #fatal = Promise.withResolvers<string>();
  #failed = false;
  #resizeCheck: Promise<boolean | undefined> | undefined;
  /** Partitions whose last delivery goes on after its batch returned; each stays paused until it settles. */
  readonly #background = new Set<number>();
  /**
   * By partition, the last offset that a background delivery had the sink
   * acknowledge (with every record before it), until it is committed: the
   * batch fetched again commits up to it without delivering it twice.
   */
  readonly #acknowledged = new Map<number, number>();

  constructor(options: PipelineOptions) {
    this.#o = options;
  }

  #newConsumer(): Consumer {
    const options = this.#o;
    const timings = options.timings ?? DEFAULT_KAFKA_TIMINGS;
    const consumer = options.kafka.consumer({
      groupId: options.group,
      sessionTimeout: timings.sessionTimeoutMs,
      rebalanceTimeout: timings.rebalanceTimeoutMs,
      heartbeatInterval: timings.heartbeatIntervalMs,
      maxWaitTimeInMs: 250,
      allowAutoTopicCreation: false,
      // New partitions are seen this soon (kafkajs's default is 5 minutes); see #topicResized.
      metadataMaxAge: 30_000,
      // Round-robin as well, so that a group still holding members that offer only that one
      // (nodes of an older build, during a rolling upgrade) agrees on it instead of refusing us.
      partitionAssigners: [stickyAssigner(() => ({ [options.topic]: this.#assigned })), PartitionAssigners.roundRobin],
    });
    consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
      this.#assignment(payload.memberAssignment[options.topic] ?? []);
    });
    consumer.on(consumer.events.REBALANCING, () => {
      log.info("Kafka consumer group {group} is rebalancing", { group: options.group });
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (payload.restart) {
        log.warn("Kafka consumer stopped on an error and restarts: {error}", { error: String(payload.error) });
      } else {
        this.#fail(`the Kafka consumer stopped for good: ${payload.error.message}`);
      }
    });
    return consumer;
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

  /**
   * Joins the group and starts consuming from the earliest offsets not yet
   * committed; after {@linkcode stop}, joins again.
   */
  async start(): Promise<void> {
    const consumer = this.#consumer = this.#newConsumer();
    await consumer.connect();
    await consumer.subscribe({ topic: this.#o.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.#o.concurrency ?? 8,
      eachBatch: (payload) => this.#eachBatch(payload),
    });
    const every = this.#o.summaryEveryMs ?? 10_000;
    this.#summaryTimer = setInterval(() => this.#summary(), every);
  }

  async #eachBatch(payload: EachBatchPayload): Promise<void> {
    const { batch, heartbeat, isRunning, isStale, pause } = payload;
    const { topic, partition } = batch;
    // Returning without resolving has kafkajs fetch the rest again from the last resolved offset;
    // pausing the partition meanwhile keeps that from being at once, and lets the others go on.
    const retryLater = (why?: string) => {
      if (why !== undefined) {
        log.warn("{topic}/{partition} paused for {ms} ms, its batch uncommitted: {why}", {
          topic,
          partition,
          ms: RETRY_DELIVERY_AFTER_MS,
          why,
        });
      }
      pause();
      if (!this.#failed) setTimeout(() => this.#resume(topic, partition), RETRY_DELIVERY_AFTER_MS);
    };
    // kafkajs heartbeats only when asked, and the sink (or Kafka itself) can take longer than the
    // session timeout to answer; the group must not evict us for it.
    const wait = <T>(work: Promise<T>): Promise<Waited<T>> =>
      waitBounded(work, {
        heartbeat,
        heartbeatEveryMs: HEARTBEAT_WHILE_WAITING_MS,
        giveUpAfterMs: RELEASE_SLOT_AFTER_MS,
      });
    if (this.#failed) return retryLater();
    if (this.#background.has(partition)) {
      // A second delivery to the shard could overtake the one still going on (its pause should keep
      // the partition from being fetched meanwhile); that one's end resumes it.
      pause();
      return;
    }
    if (partition >= this.#o.partitions) {
      // Only a grown topic has such a partition; nothing in it may be committed under the old count.
      const resized = await wait(this.#topicResized());
      if (resized.kind === "rejoin") throw this.#rejoin(topic, partition, resized.error);
      if (resized.kind === "settled" && resized.value) return retryLater();
      return retryLater(
        `only a resized topic has partition ${partition} (the shards are ${this.#o.partitions}), ` +
          `and ${unknownCount(resized, topic)}`,
      );
    }
    const acknowledged = this.#acknowledged.get(partition) ?? -1;
    let messages = batch.messages;
    if (messages.length > 0 && Number(messages[0].offset) <= acknowledged) {
      // Committed before the rest is delivered: a shard slow enough that every delivery ends in the
      // background still has its partition move on.
      messages = messages.filter((message) => Number(message.offset) > acknowledged);
      await this.#commit(payload, Math.min(acknowledged, Number(batch.messages.at(-1)!.offset)));
    }
    const events: PurchaseEvent[] = [];
    let lastOffset = -1;
    for (const message of messages) {
      const offset = Number(message.offset);
      const decoded = decodePurchase(message.key, message.value);
      if (!decoded.ok) {
        this.#malformed(topic, partition, offset, decoded.reason, decoded.kind);
      } else {
        const { userId, product, quantity, price } = decoded.purchase;
        // The key is the user id's UTF-8 (decodePurchase checked), so hash it as it is.
        const shard = partitionForBytes(message.key!, this.#o.partitions);
        if (shard !== partition) {
          // Nothing past this record may be committed before the resize check says it is a stray.
          const resized = await wait(this.#topicResized());
          if (resized.kind === "rejoin") throw this.#rejoin(topic, partition, resized.error);
          if (resized.kind !== "settled" || resized.value === undefined) {
            return retryLater(
              `user ${userId} at offset ${offset} belongs in partition ${shard}, and ${
                unknownCount(resized, topic)
              }, ` +
                "so a misplaced record cannot be told from a resized topic",
            );
          }
          if (resized.value) return retryLater();
          const reason = `user ${userId} belongs in partition ${shard}, not ${partition}`;
          this.#malformed(topic, partition, offset, reason, "wrong_partition");
        } else {
          // The product matters to no total: it is in this line only, built only at debug level.
          log.debug(
            "Forwarding message for entity {userId} to shard {shard}: {product}",
            () => ({ userId, shard, product }),
          );
          events.push({ offset, userId, quantity, price });
        }
      }
      lastOffset = offset;
    }
    if (lastOffset < 0 || !isRunning() || isStale()) return;
    if (events.length > 0) {
      // The whole batch in one delivery: one changelog transaction and one commit for it.
      const delivery = this.#o.sink.applyEvents(partition, events);
      const delivered = await wait(delivery);
      if (delivered.kind === "failed") {
        // Throwing would make kafkajs restart the whole consumer, which leaves and rejoins
        // the group: a rebalance of every node for one unreachable shard.
        return retryLater(
          `could not deliver ${events.length} events to shard ${partition}: ${errorText(delivered.error)}`,
        );
      }
      if (delivered.kind !== "settled") {
        pause();
        this.#inBackground(topic, partition, delivery, events.length, lastOffset);
        if (delivered.kind === "rejoin") throw this.#rejoin(topic, partition, delivered.error);
        log.info(
          "{topic}/{partition} paused: shard {partition} has not acknowledged {count} events in {ms} ms " +
            "(moving, or its node unreachable); the delivery goes on, and the partition is fetched again " +
            "once it ends, so that the other partitions of this node go on meanwhile",
          { topic, partition, count: events.length, ms: RELEASE_SLOT_AFTER_MS },
        );
        return;
      }
      this.#delivered(events.length, delivered.value.local);
    }
    await this.#commit(payload, lastOffset);
    await heartbeat();
  }

  /** Resolves and commits `partition` up to `lastOffset`, which the sink has applied or that were skipped. */
  async #commit(
    { batch, resolveOffset, commitOffsetsIfNecessary }: EachBatchPayload,
    lastOffset: number,
  ): Promise<void> {
    const { topic, partition } = batch;
    resolveOffset(String(lastOffset));
    await commitOffsetsIfNecessary({
      topics: [{ topic, partitions: [{ partition, offset: String(lastOffset + 1) }] }],
    });
    if ((this.#acknowledged.get(partition) ?? Infinity) <= lastOffset) this.#acknowledged.delete(partition);
  }

  #delivered(events: number, local: boolean): void {
    this.stats.events += events;
    if (local) this.stats.local += events;
    this.#o.observer?.applied(events, local);
  }

  /**
   * Lets a delivery finish after its batch returned: what it applied is
   * remembered for the batch fetched again, and the partition is resumed
   * once it settles, whichever way.
   */
  #inBackground(
    topic: string,
    partition: number,
    delivery: Promise<{ local: boolean }>,
    events: number,
    lastOffset: number,
  ): void {
    const since = Date.now();
    this.#background.add(partition);
    delivery.then(({ local }) => {
      this.#delivered(events, local);
      this.#acknowledged.set(partition, Math.max(lastOffset, this.#acknowledged.get(partition) ?? -1));
      log.info("shard {partition} acknowledged {count} events after {ms} ms; fetching {topic}/{partition} again", {
        topic,
        partition,
        count: events,
        ms: Date.now() - since,
      });
    }, (error) => {
      log.warn(
        "shard {partition} failed {count} events after {ms} ms ({error}); they stay uncommitted, " +
          "and {topic}/{partition} is fetched again",
        { topic, partition, count: events, ms: Date.now() - since, error: errorText(error) },
      );
    }).finally(() => {
      this.#background.delete(partition);
      if (!this.#failed) this.#resume(topic, partition);
    });
  }

  /**
   * Resumes a paused partition on the consumer as it is now. Not through the
   * `resume` that `pause()` returned: that belongs to the run it came from,
   * and kafkajs restarts its run with fresh internals after a retriable
   * error, which would leave the partition paused for good.
   */
  #resume(topic: string, partition: number): void {
    try {
      this.#consumer?.resume([{ topic, partitions: [partition] }]);
    } catch (error) {
      // Not running (stopping, or restarting): a new run starts with nothing paused.
      log.debug("could not resume {topic}/{partition}: {error}", { topic, partition, error: errorText(error) });
    }
  }

  /** The error to throw from `eachBatch` for kafkajs to rejoin the group at once. */
  #rejoin(topic: string, partition: number, error: unknown): unknown {
    log.info(
      "the group {group} is rebalancing ({error}): {topic}/{partition} stops waiting for its shard and stays " +
        "uncommitted, so that this node rejoins at once instead of holding up the group",
      { group: this.#o.group, error: errorText(error), topic, partition },
    );
    return error;
  }

  /**
   * Whether the topic now has another partition count than the shards (then
   * users have moved between partitions, and skipping their records as
   * misplaced would lose them); `undefined` when Kafka could not say (the
   * check failed, or Kafka does not list the topic). Every
   * answer is asked afresh (partitions running at once share one question):
   * a remembered "no" could let a resize that just happened skip events.
   */
  #topicResized(): Promise<boolean | undefined> {
    this.#resizeCheck ??= this.#o.partitionCount().then((count) => {
      if (count === undefined) return undefined;
      if (count === this.#o.partitions) return false;
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

  #malformed(topic: string, partition: number, offset: number, reason: string, kind: MalformedKind): void {
    this.stats.malformed++;
    this.#o.observer?.malformed(kind);
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

  /**
   * Stops consuming (after the batches in hand) and leaves the group.
   * Deliveries going on in the background are not waited for: nothing of
   * theirs is committed.
   */
  async stop(): Promise<void> {
    clearInterval(this.#summaryTimer);
    this.#summary();
    const consumer = this.#consumer;
    this.#consumer = undefined;
    await consumer?.disconnect();
  }
}
