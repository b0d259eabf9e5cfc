/**
 * The consumer pipeline of a processor node. One event's path:
 * Kafka record → {@linkcode decodePurchase} → shard id (= partition) →
 * `sink.applyEvents` (the shard region: local shard, or its home over TCP) →
 * the shard applies, writes its changelog and acknowledges → offset
 * committed. Nothing is committed before the shard has applied and stored it
 * (invariant 2 of ARCHITECTURE.md), partitions run in parallel, and inside a
 * partition events keep their order.
 *
 * What to fetch, deliver and commit, and when, is decided by
 * {@linkcode ConsumerProgress}, a state machine with no I/O; this module
 * carries its actions out with @platformatic/kafka and feeds the answers
 * back. The client heartbeats and rejoins a rebalancing group on its own,
 * so a shard that is slow to answer (moving, or its node unreachable) holds
 * up its own partition only, and never the group. A refused delivery, or a
 * misplaced record while the topic's partition count is unknown, has its
 * partition fetched again a second later from what was acknowledged.
 *
 * @module
 */
import { Consumer, FetchIsolationLevels } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";
import type { PurchaseEvent } from "../cluster/sharding/entity.ts";
import { partitionForBytes } from "./partitioner.ts";
import { decodePurchase, type MalformedKind } from "./purchase.ts";
import { encodeOwnership, STICKY_ASSIGNOR, stickyPartitionsAssigner } from "./sticky_assignor.ts";
import { ConsumerProgress, type Delivery, type FetchAt, type Locate } from "./consumer_progress.ts";
import { committedRecords, type FetchedPartition } from "./fetched_records.ts";
import { FetchedBatches } from "./fetched_batches.ts";
import { clientOptions, type KafkaSettings } from "./client.ts";
import {
  AUTHORIZATION_FAILURES,
  kafkaPrincipal,
  notAuthorized,
  type Permission,
  refusal,
  RefusalLog,
} from "./authorization.ts";
import { errorText } from "../cluster/error_text.ts";
import { DEFAULT_KAFKA_TIMINGS, type KafkaTimings } from "../cluster/timings.ts";
import { watchMembership } from "./membership_watch.ts";

const log = getLogger(["usershard", "consumer"]);

/** How long a fetch waits on the broker for records to arrive. */
const FETCH_MAX_WAIT_MS = 250;
/**
 * Bytes per fetch answer, and per partition in it. An answer is decoded and
 * applied in one go, holding up every query of the node meanwhile: with
 * 32 MiB answers a node left its `/stats` unanswered for 1.5 to 4.8 s while
 * it drained, with 8 MiB about 1 s, at the same events/s.
 */
const FETCH_MAX_BYTES = 8 * 1024 * 1024;
const FETCH_PARTITION_MAX_BYTES = 256 * 1024;
/** A delivery slower than this is logged when it ends: its partition waited that long. */
const SLOW_DELIVERY_MS = 1000;
/** How long to wait before joining the group again after the client gave up rejoining. */
const REJOIN_AFTER_MS = 1000;
/** How long stopping waits for deliveries in hand, to commit what they applied. */
const STOP_DRAIN_MS = 3000;
/** How long stopping waits for Kafka to take the leave, and then for the client to close. */
const CLOSE_MS = 5000;

/** Resolves with `promise`, or after `ms` whatever it does (its failure is the caller's to log). */
async function waitAtMost(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([promise.catch(() => {}), new Promise((resolve) => timer = setTimeout(resolve, ms))]);
  clearTimeout(timer);
}

/** Kafka's error code for a fetch below a partition's log start or past its end. */
const OFFSET_OUT_OF_RANGE = 1;

/** Events per second for the summary: whole numbers, but a slow trickle is not shown as 0. */
function ratePerSecond(events: number, ms: number): string {
  const rate = events / (ms / 1000);
  return rate >= 10 ? String(Math.round(rate)) : rate.toFixed(1);
}

/** Why a resize check gave no count, for a log line. */
const UNKNOWN_COUNT = "Kafka could not say the partition count of";

/** Where decoded events go: the shard region. */
export interface EventSink {
  /** Applies events of one partition in the shard of that partition; resolves once applied. */
  applyEvents(shard: number, events: readonly PurchaseEvent[]): Promise<{ lastOffset: number; local: boolean }>;
  /** This node took partition `shard` over and reads it from `offset`, which the group committed. */
  consumedFrom?(shard: number, offset: number): void;
}

/** How a pipeline is set up. */
export interface PipelineOptions {
  /** How to reach Kafka; the consumer's client id is this node's (`nodeClientId`). */
  readonly kafka: KafkaSettings;
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
  /** The client of the current run: a new one for each start. */
  #consumer: Consumer | undefined;
  #progress = new ConsumerProgress();
  /** Fetched records by partition and by the offset their batch starts at, until delivered. */
  readonly #fetched = new FetchedBatches();
  readonly stats: PipelineStats = { events: 0, local: 0, malformed: 0 };
  #assigned: readonly number[] = [];
  /** Partitions taken over and not located yet. */
  readonly #gained = new Set<number>();
  #summaryTimer: ReturnType<typeof setInterval> | undefined;
  #wakeTimer: ReturnType<typeof setTimeout> | undefined;
  #stopWatch: (() => void) | undefined;
  /** Whether the owner wants the pipeline running: between start() and stop(). */
  #wanted = false;
  #replacing = false;
  /** Joins of ours under way, and since when the oldest of them has waited. */
  #joining = 0;
  #joiningSince = 0;
  /** Counts the owner's starts and stops: a replacement under way gives way to them. */
  #owner = 0;
  #lastSummary = { at: Date.now(), events: 0, local: 0, malformed: 0 };
  readonly #fatal = Promise.withResolvers<string>();
  #failed = false;
  #running = false;
  #resizeCheck: Promise<boolean | undefined> | undefined;
  /** Work in hand (deliveries, fetches, commits), for stopping. */
  readonly #inHand = new Set<Promise<unknown>>();
  readonly #refusals = new RefusalLog();
  /** Who this node is to Kafka's ACLs, and the permissions its requests need. */
  readonly #principal: string;
  readonly #readGroup: Permission;
  readonly #readTopic: Permission;
  /** The requests a refusal is logged for, by name. */
  readonly #requests: {
    readonly join: string;
    readonly commit: string;
    readonly locate: string;
    readonly fetch: string;
  };

  constructor(options: PipelineOptions) {
    this.#o = options;
    const { topic, group } = options;
    this.#principal = kafkaPrincipal(options.kafka.security);
    this.#readGroup = { operation: "Read", resource: "Group", name: group };
    this.#readTopic = { operation: "Read", resource: "Topic", name: topic };
    this.#requests = {
      join: `joining group ${group}`,
      commit: `committing offsets of ${group}`,
      locate: `reading where ${topic} starts for ${group}`,
      fetch: `reading ${topic}`,
    };
  }

  /** Settles with the reason when consuming cannot go on (the topic has grown). */
  get fatal(): Promise<string> {
    return this.#fatal.promise;
  }

  /** The partitions Kafka assigned to this node. */
  get assigned(): readonly number[] {
    return this.#assigned;
  }

  /** Joins the group and consumes from the offsets it committed (the earliest where none); after {@linkcode stop}, joins again. */
  async start(): Promise<void> {
    this.#wanted = true;
    this.#owner++;
    await this.#open();
  }

  /** A new client, in the group, consuming; one still open is closed first. */
  async #open(): Promise<void> {
    if (this.#consumer) await this.#halt();
    const o = this.#o;
    const timings = o.timings ?? DEFAULT_KAFKA_TIMINGS;
    this.#progress = new ConsumerProgress();
    this.#fetched.clear();
    const consumer = this.#consumer = new Consumer({
      ...clientOptions(o.kafka),
      groupId: o.group,
      sessionTimeout: timings.sessionTimeoutMs,
      rebalanceTimeout: timings.rebalanceTimeoutMs,
      heartbeatInterval: timings.heartbeatIntervalMs,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: FETCH_MAX_WAIT_MS,
      minBytes: 1,
      maxBytes: FETCH_MAX_BYTES,
      autocommit: false,
      // New partitions are seen this soon; see #topicResized.
      metadataMaxAge: 30_000,
      // Here rather than in joinGroup: the client rejoins on its own when a commit meets a
      // rebalance, with these options, and would offer its default assignor instead.
      protocols: [{ name: STICKY_ASSIGNOR, version: 1 }],
      // Asked again at each rejoin: what this node consumes now is what it claims.
      protocolsMetadata: () => encodeOwnership({ [o.topic]: this.#assigned }),
      partitionAssigner: stickyPartitionsAssigner,
    });
    consumer.on("consumer:group:join", ({ assignments }) => {
      if (this.#consumer !== consumer) return;
      this.#assignment(assignments?.find((a) => a.topic === o.topic)?.partitions ?? []);
    });
    consumer.on("consumer:group:rebalance", () => {
      log.info("Kafka consumer group {group} is rebalancing", { group: o.group });
    });
    // The client emits an error when a rejoin failed for good (a broker down longer than its
    // retries): join again a little later, as long as this run lasts.
    consumer.on("error", (error: unknown) => {
      if (this.#consumer !== consumer || !this.#running) return;
      if (!this.#refused(this.#requests.join, error, [this.#readGroup, this.#readTopic])) {
        log.warn("the Kafka consumer could not rejoin group {group} ({error}); trying again in {ms} ms", {
          group: o.group,
          error: errorText(error),
          ms: REJOIN_AFTER_MS,
        });
      }
      setTimeout(() => {
        if (this.#consumer === consumer && this.#running) {
          this.#join(consumer).catch((e) => consumer.emit("error", e));
        }
      }, REJOIN_AFTER_MS);
    });
    consumer.topics.track(o.topic);
    this.#running = true;
    await this.#join(consumer);
    // Halted while it joined (stopped, or replaced): the client is closed, and whoever halted it goes on.
    if (this.#consumer !== consumer) return;
    // A join longer than a session is one the client gave up without a word (see membership_watch.ts).
    this.#stopWatch = watchMembership(consumer, {
      afterMs: timings.sessionTimeoutMs,
      everyMs: timings.heartbeatIntervalMs,
      act: (action) => {
        if (this.#consumer !== consumer || !this.#running) return;
        if (action === "replace") {
          // A join of ours waiting less than a rebalance may take is a rebalance taking its time, not a wedged
          // client; one waiting longer is as good as failed.
          const joining = this.#joining > 0 && performance.now() - this.#joiningSince < timings.rebalanceTimeoutMs;
          if (!joining) void this.#replaceClient();
          return;
        }
        log.warn("the Kafka consumer has been out of group {group} for {ms} ms and is not rejoining; joining again", {
          group: o.group,
          ms: timings.sessionTimeoutMs,
        });
        this.#join(consumer).catch((e) => consumer.emit("error", e));
      },
    });
    const every = o.summaryEveryMs ?? 10_000;
    this.#summaryTimer = setInterval(() => this.#summary(), every);
    this.#pump();
  }

  async #join(consumer: Consumer): Promise<void> {
    if (this.#joining++ === 0) this.#joiningSince = performance.now();
    try {
      await consumer.joinGroup({});
    } catch (error) {
      throw notAuthorized(error, [this.#readGroup, this.#readTopic], this.#principal) ?? error;
    } finally {
      this.#joining--;
    }
    this.#allowed(this.#requests.join);
  }

  /**
   * When Kafka refused `what` by ACL: logs it (once while it lasts) and
   * returns true; the caller retries as it does after any failure, so a node
   * that loses a permission goes on where it stopped once it has it again.
   */
  #refused(what: string, error: unknown, needs: readonly Permission[]): boolean {
    const refused = notAuthorized(error, needs, this.#principal);
    if (!refused) return false;
    if (this.#refusals.refused(what, refused.message, Date.now())) {
      log.warn("{what}: {refusal}; trying again until it is allowed, and nothing is lost meanwhile", {
        what,
        refusal: refused.message,
      });
    }
    return true;
  }

  #allowed(what: string): void {
    if (this.#refusals.allowed(what)) log.info("{what}: Kafka allows it again", { what });
  }

  #assignment(partitions: readonly number[]): void {
    const now = [...partitions].sort((a, b) => a - b);
    const before = new Set(this.#assigned);
    const added = now.filter((p) => !before.has(p));
    const removed = this.#assigned.filter((p) => !now.includes(p));
    this.#assigned = now;
    for (const partition of added) this.#gained.add(partition);
    for (const partition of removed) this.#gained.delete(partition);
    this.#progress.assign(now);
    for (const partition of removed) this.#fetched.drop(partition);
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
    this.#pump();
  }

  /** Carries out what the progress says to do now; every answer calls it again. */
  #pump(): void {
    const consumer = this.#consumer;
    if (!consumer || !this.#running || this.#failed) return;
    const progress = this.#progress;
    const ready = progress.ready(Date.now());
    if (ready.locate.length > 0) this.#track(this.#locate(consumer, progress, ready.locate));
    if (ready.fetch.length > 0) this.#track(this.#fetch(consumer, progress, ready.fetch));
    for (const delivery of ready.deliver) this.#track(this.#deliver(progress, delivery));
    if (ready.commit.length > 0) {
      const offsets = ready.commit;
      this.#track(
        consumer.commit({
          offsets: offsets.map(({ partition, offset }) => ({
            topic: this.#o.topic,
            partition,
            offset: BigInt(offset),
            leaderEpoch: -1,
          })),
        }).then(() => {
          this.#allowed(this.#requests.commit);
          progress.committed(offsets);
        }, (error) => {
          progress.commitFailed(Date.now());
          if (this.#refused(this.#requests.commit, error, [this.#readGroup])) return;
          log.warn("committing offsets of {group} failed ({error}); trying again in a second", {
            group: this.#o.group,
            error: errorText(error),
          });
        }),
      );
    }
    clearTimeout(this.#wakeTimer);
    const wake = progress.nextWake();
    if (wake !== undefined) this.#wakeTimer = setTimeout(() => this.#pump(), Math.max(0, wake - Date.now()));
  }

  /** Runs `work`, then pumps again: each answer may make something ready. */
  #track(work: Promise<void>): void {
    const tracked = work.catch((error) => log.error("consumer step failed: {error}", { error: errorText(error) }))
      .finally(() => {
        this.#inHand.delete(tracked);
        this.#pump();
      });
    this.#inHand.add(tracked);
  }

  /** Where new partitions start: the group's committed offset, or the log start where it has none. */
  async #locate(consumer: Consumer, progress: ConsumerProgress, partitions: readonly Locate[]): Promise<void> {
    const topic = this.#o.topic;
    try {
      const ids = partitions.map((p) => p.partition);
      const committed = (await consumer.listCommittedOffsets({ topics: [{ topic, partitions: ids }] })).get(topic);
      const unset = ids.filter((p) => (committed?.[p] ?? -1n) < 0n);
      const earliest = unset.length > 0
        ? (await consumer.listOffsets({ topics: [topic], partitions: { [topic]: unset }, timestamp: -2n })).get(topic)
        : undefined;
      for (const { partition, run } of partitions) {
        const at = (committed?.[partition] ?? -1n) >= 0n ? committed![partition] : earliest?.[partition];
        if (at === undefined) {
          progress.locateFailed(partition, run, Date.now());
          continue;
        }
        // Only a partition taken over (one kept through a rebalance was consumed here all along), and only
        // for this client's current run of it: an older run's answer may name an older offset.
        const current = progress.located(partition, run, Number(at)) && progress === this.#progress;
        if (current && this.#gained.delete(partition)) this.#o.sink.consumedFrom?.(partition, Number(at));
      }
    } catch (error) {
      for (const { partition, run } of partitions) progress.locateFailed(partition, run, Date.now());
      const needs = [{ ...this.#readGroup, operation: "Describe" as const }, {
        ...this.#readTopic,
        operation: "Describe" as const,
      }];
      if (this.#refused(this.#requests.locate, error, needs)) return;
      log.warn("could not read where partitions {partitions} of {topic} start ({error}); trying again in a second", {
        partitions: `[${partitions.map((p) => p.partition).join(",")}]`,
        topic,
        error: errorText(error),
      });
    }
  }

  /** One fetch request per partition leader, all at once; the progress hears every partition's answer. */
  async #fetch(consumer: Consumer, progress: ConsumerProgress, wanted: readonly FetchAt[]): Promise<void> {
    const topic = this.#o.topic;
    try {
      const metadata = await consumer.metadata({ topics: [topic] });
      const described = metadata.topics.get(topic);
      if (!described) throw new Error(`Kafka does not list topic ${topic}`);
      const byLeader = new Map<number, FetchAt[]>();
      for (const at of wanted) {
        const leader = described.partitions[at.partition]?.leader ?? -1;
        byLeader.set(leader, [...(byLeader.get(leader) ?? []), at]);
      }
      await Promise.all([...byLeader].map(async ([leader, ats]) => {
        if (leader < 0) {
          for (const at of ats) progress.fetchFailed(at.partition, at.run, Date.now());
          return;
        }
        const answers = await this.#fetchFrom(consumer, leader, described.id, ats);
        for (const at of ats) {
          if (answers) this.#fetchedFrom(progress, at, answers.get(at.partition));
          else progress.fetchFailed(at.partition, at.run, Date.now());
        }
      }));
    } catch (error) {
      for (const at of wanted) progress.fetchFailed(at.partition, at.run, Date.now());
      if (this.#refused(this.#requests.fetch, error, [this.#readTopic])) return;
      log.warn("fetching {topic} failed ({error}); trying again in a second", { topic, error: errorText(error) });
    } finally {
      progress.fetchDone();
    }
  }

  /** The answers of one broker by partition; `undefined` when the whole request failed. */
  async #fetchFrom(
    consumer: Consumer,
    node: number,
    topicId: string,
    ats: readonly FetchAt[],
  ): Promise<Map<number, FetchedPartition> | undefined> {
    const request = {
      node,
      topics: [{
        topicId,
        partitions: ats.map((at) => ({
          partition: at.partition,
          fetchOffset: BigInt(at.offset),
          partitionMaxBytes: FETCH_PARTITION_MAX_BYTES,
          currentLeaderEpoch: -1,
          lastFetchedEpoch: -1,
        })),
      }],
    };
    let response;
    try {
      response = await consumer.fetch(request);
    } catch (error) {
      // A partition's error fails the request, but its answer still says which partition and why.
      response = (error as { response?: typeof response }).response;
      if (!response?.responses) {
        log.warn("fetching from broker {node} failed ({error}); trying again in a second", {
          node,
          error: errorText(error),
        });
        return undefined;
      }
    }
    return new Map(response.responses.flatMap((t) => t.partitions).map((p) => [p.partitionIndex, p]));
  }

  #fetchedFrom(progress: ConsumerProgress, at: FetchAt, answer: FetchedPartition | undefined): void {
    const { partition, run, offset } = at;
    // An incremental fetch session leaves out the partitions that have nothing new.
    if (!answer) return progress.fetched(partition, run, offset, offset, 0);
    if (answer.errorCode === OFFSET_OUT_OF_RANGE && Number(answer.logStartOffset) > offset) {
      // Deleted by retention before this group read them: nothing to deliver, and the group moves on.
      const start = Number(answer.logStartOffset);
      log.error("{topic}/{partition}: records {from} to {to} were deleted before this group processed them", {
        topic: this.#o.topic,
        partition,
        from: offset,
        to: start - 1,
      });
      this.#fetched.keep(partition, run, offset, []);
      return progress.fetched(partition, run, offset, start, 0);
    }
    const authorization = AUTHORIZATION_FAILURES[answer.errorCode];
    if (authorization !== undefined) {
      progress.fetchFailed(partition, run, Date.now());
      this.#refused(this.#requests.fetch, refusal(authorization, [this.#readTopic], this.#principal), [
        this.#readTopic,
      ]);
      return;
    }
    if (answer.errorCode !== 0) {
      log.warn("fetching {topic}/{partition} at {offset} failed with Kafka error {code}; trying again in a second", {
        topic: this.#o.topic,
        partition,
        offset,
        code: answer.errorCode,
      });
      return progress.fetchFailed(partition, run, Date.now());
    }
    this.#allowed(this.#requests.fetch);
    const { records, next } = committedRecords(answer, offset);
    if (next > offset) this.#fetched.keep(partition, run, offset, records);
    progress.fetched(partition, run, offset, next, records.length);
  }

  /** Decodes a fetched batch and has the sink apply it; the progress hears whether it did. */
  async #deliver(progress: ConsumerProgress, { partition, run, from, next }: Delivery): Promise<void> {
    const records = this.#fetched.take(partition, run, from, next);
    if (!records) return progress.refused(partition, run, from, Date.now());
    const refuse = (why: string) => {
      log.warn("{topic}/{partition} is read again from {offset} in a second, nothing past it committed: {why}", {
        topic: this.#o.topic,
        partition,
        offset: from,
        why,
      });
      this.#fetched.drop(partition);
      progress.refused(partition, run, from, Date.now());
    };
    const topic = this.#o.topic;
    if (partition >= this.#o.partitions) {
      // Only a grown topic has such a partition; nothing in it may be committed under the old count.
      const resized = await this.#topicResized();
      if (resized) return progress.refused(partition, run, from, Date.now());
      return refuse(
        `only a resized topic has partition ${partition} (the shards are ${this.#o.partitions}), ` +
          (resized === undefined ? `and ${UNKNOWN_COUNT} ${topic}` : "yet Kafka says the count is unchanged"),
      );
    }
    const events: PurchaseEvent[] = [];
    // Asked once per batch: even a dropped debug line costs a closure and a level check per record.
    const debug = log.isEnabledFor("debug");
    for (const record of records) {
      const decoded = decodePurchase(record.key, record.value);
      if (!decoded.ok) {
        this.#malformed(partition, record.offset, decoded.reason, decoded.kind);
        continue;
      }
      const { userId, product, quantity, price } = decoded.purchase;
      // The key is the user id's UTF-8 (decodePurchase checked), so hash it as it is.
      const shard = partitionForBytes(record.key!, this.#o.partitions);
      if (shard !== partition) {
        // Nothing past this record may be committed before the resize check says it is a stray.
        const resized = await this.#topicResized();
        if (resized === undefined) {
          return refuse(
            `user ${userId} at offset ${record.offset} belongs in partition ${shard}, and ${UNKNOWN_COUNT} ${topic}, ` +
              "so a misplaced record cannot be told from a resized topic",
          );
        }
        if (resized) return progress.refused(partition, run, from, Date.now());
        this.#malformed(
          partition,
          record.offset,
          `user ${userId} belongs in partition ${shard}, not ${partition}`,
          "wrong_partition",
        );
        continue;
      }
      // The product matters to no total: it is in this line only, at debug level only.
      if (debug) {
        log.debug("Forwarding message for entity {userId} to shard {shard}: {product}", { userId, shard, product });
      }
      events.push({ offset: record.offset, userId, quantity, price });
    }
    if (events.length > 0) {
      const since = Date.now();
      try {
        // The whole batch in one delivery: one changelog transaction for it.
        const { local } = await this.#o.sink.applyEvents(partition, events);
        this.#delivered(events.length, local);
      } catch (error) {
        return refuse(`could not deliver ${events.length} events to shard ${partition}: ${errorText(error)}`);
      }
      const took = Date.now() - since;
      if (took >= SLOW_DELIVERY_MS) {
        log.info(
          "shard {partition} acknowledged {count} events after {ms} ms (moving, or its node slow to answer); " +
            "the other partitions of this node went on meanwhile",
          { partition, count: events.length, ms: took },
        );
      }
    }
    progress.delivered(partition, run, from);
  }

  #delivered(events: number, local: boolean): void {
    this.stats.events += events;
    if (local) this.stats.local += events;
    this.#o.observer?.applied(events, local);
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

  #malformed(partition: number, offset: number, reason: string, kind: MalformedKind): void {
    this.stats.malformed++;
    this.#o.observer?.malformed(kind);
    log.warn("skipping malformed record {topic}/{partition}@{offset}: {reason}", {
      topic: this.#o.topic,
      partition,
      offset,
      reason,
    });
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
   * Stops consuming and leaves the group: deliveries in hand get a few
   * seconds to end so that what they applied is committed; what they have
   * not applied by then stays uncommitted, for the next owner.
   */
  async stop(): Promise<void> {
    this.#wanted = false;
    this.#owner++;
    await this.#halt();
  }

  /**
   * Replaces a client that a join of ours did not bring back into its group
   * (`membership_watch.ts`). Nothing is lost: what was not committed is
   * fetched again by the new client, and a shard skips what it applied.
   */
  async #replaceClient(): Promise<void> {
    if (this.#replacing) return;
    this.#replacing = true;
    const group = this.#o.group;
    // The owner's own stop or start (the minority rule's, say) wins over a replacement under way.
    const owner = this.#owner;
    const mine = () => this.#wanted && this.#owner === owner;
    try {
      log.warn("the Kafka consumer is still out of group {group} after joining again: it is replaced by a new client", {
        group,
      });
      await this.#halt();
      while (mine()) {
        try {
          await this.#open();
          return;
        } catch (error) {
          if (!mine()) return;
          log.warn("the new Kafka client could not join group {group} ({error}); trying again in {ms} ms", {
            group,
            error: errorText(error),
            ms: REJOIN_AFTER_MS,
          });
          await this.#halt();
          await new Promise((resolve) => setTimeout(resolve, REJOIN_AFTER_MS));
        }
      }
    } finally {
      this.#replacing = false;
    }
  }

  /** Stops consuming and closes the client, leaving the group if Kafka answers in time. */
  async #halt(): Promise<void> {
    clearInterval(this.#summaryTimer);
    clearTimeout(this.#wakeTimer);
    this.#stopWatch?.();
    this.#summary();
    const consumer = this.#consumer;
    if (!consumer) return;
    const drained = this.#drain(consumer);
    await Promise.race([drained, new Promise((resolve) => setTimeout(resolve, STOP_DRAIN_MS).unref?.())]);
    this.#running = false;
    this.#consumer = undefined;
    // Bounded: a client that cannot reach Kafka is closed all the same, and the group evicts it after a session.
    await waitAtMost(
      new Promise<void>((resolve) =>
        consumer.leaveGroup(true, (error) => {
          if (error) {
            log.debug("leaving group {group} failed: {error}", { group: this.#o.group, error: errorText(error) });
          }
          resolve();
        })
      ),
      CLOSE_MS,
    );
    await waitAtMost(consumer.close(true), CLOSE_MS);
    // Out of the group, this node consumes nothing: what it is given when it joins again is taken over
    // (unless a new client has joined meanwhile: what it was given is its own).
    if (this.#consumer === undefined) {
      this.#assigned = [];
      this.#gained.clear();
    }
  }

  /** Resolves once nothing is at the sink and what it acknowledged is committed. */
  async #drain(consumer: Consumer): Promise<void> {
    this.#progress.stopFetching();
    while (this.#consumer === consumer && (this.#inHand.size > 0 || this.#progress.uncommitted)) {
      await Promise.race([...this.#inHand, new Promise((resolve) => setTimeout(resolve, 50))]);
    }
  }
}
