/**
 * Durable shard state in Kafka, as Kafka Streams keeps it: a compacted
 * changelog topic co-partitioned with the input (changelog partition = shard
 * id), key = user id, value = the user's totals and the offset of the input
 * partition up to which the shard had applied events when it was written.
 *
 * Each hosted shard writes through a transactional producer whose id belongs
 * to the shard (`<changelog>-<shard>`), one transaction per applied batch, and
 * the input offsets are committed only after it. Opening a shard calls
 * `InitProducerId` with that id: Kafka aborts the previous owner's open
 * transaction and refuses every later write of it, so a frozen, cut-off or
 * downed node cannot change the state once the new owner reads it back
 * (`read_committed`). Why this is exact under every interleaving is in
 * ARCHITECTURE.md, "Durable state".
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Admin, ConfigResourceTypes, Producer } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";
import type { UserTotals } from "../cluster/sharding/entity.ts";
import type { ShardSnapshot } from "../cluster/sharding/shard.ts";
import {
  ShardFencedError,
  type ShardLog,
  type ShardStorage,
  StateRefusedError,
} from "../cluster/sharding/shard_storage.ts";
import { within } from "../cluster/remoting/errors.ts";
import { DEFAULT_KAFKA_TIMINGS } from "../cluster/timings.ts";
import { defaultReplicationFactor, ensureTopic, partitionCount } from "./admin.ts";
import { asking, kafkaPrincipal, notAuthorized, type Permission } from "./authorization.ts";
import { decodeMarker, encodeMarker, type InputMarker, judgeRestore, MARKER_KEY } from "./input_binding.ts";
import type { OffsetsReader } from "./offsets.ts";
import { PartitionReader } from "./partition_reader.ts";
import { clientOptions } from "./client.ts";
import { TransactionalProducer } from "./transactional_producer.ts";
import type { KafkaSecurity } from "./security.ts";
import { kafkaErrorCode } from "./error_codes.ts";

const log = getLogger(["usershard", "changelog"]);

/** The changelog topic of a consumer group: `<group>-changelog`. */
export function changelogTopicFor(group: string): string {
  return `${group}-changelog`;
}

const VALUE_VERSION = 1;
const VALUE_BYTES = 25;

/** Bytes of changelog records per produce request, well under a broker's default 1 MiB batch limit. */
const MAX_SEND_BYTES = 512 * 1024;
/** A record's size beyond its key (at most 3 bytes a UTF-16 unit): the value and the record's framing. */
const RECORD_OVERHEAD_BYTES = VALUE_BYTES + 20;
const TWO_32 = 2 ** 32;

/** A changelog record's value: the user's totals as of `shardOffset` of the input partition. */
export interface ChangelogValue {
  readonly totals: UserTotals;
  readonly shardOffset: number;
}

/**
 * Encodes a changelog value: a version byte, then total purchases, amount
 * spent and the shard's offset as big-endian int64 (25 bytes).
 *
 * @example
 * ```ts
 * const value = encodeChangelogValue({ totals: { totalPurchases: 2, amountSpent: 3096 }, shardOffset: 41 });
 * decodeChangelogValue(value); // { totals: { totalPurchases: 2, amountSpent: 3096 }, shardOffset: 41 }
 * ```
 */
export function encodeChangelogValue(value: ChangelogValue): Buffer {
  const bytes = Buffer.allocUnsafe(VALUE_BYTES);
  bytes[0] = VALUE_VERSION;
  writeInt64(bytes, 1, value.totals.totalPurchases);
  writeInt64(bytes, 9, value.totals.amountSpent);
  writeInt64(bytes, 17, value.shardOffset);
  return bytes;
}

/** Decodes a changelog value; `undefined` for anything this version did not write. */
export function decodeChangelogValue(bytes: Uint8Array): ChangelogValue | undefined {
  if (bytes.length !== VALUE_BYTES || bytes[0] !== VALUE_VERSION) return undefined;
  return {
    totals: { totalPurchases: readInt64(bytes, 1), amountSpent: readInt64(bytes, 9) },
    shardOffset: readInt64(bytes, 17),
  };
}

// Totals stay below 2^53 (entity.ts refuses more), so two 32-bit halves carry them exactly.
function writeInt64(bytes: Buffer, at: number, n: number): void {
  bytes.writeInt32BE(Math.floor(n / TWO_32), at);
  bytes.writeUInt32BE(n >>> 0, at + 4);
}

function readInt64(bytes: Uint8Array, at: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, 8);
  return view.getInt32(0) * TWO_32 + view.getUint32(4);
}

/** The changelog topic cannot hold these shards. */
export class ChangelogLayoutError extends Error {
  override name = "ChangelogLayoutError";
}

/**
 * The `min.insync.replicas` a changelog of `replicas` copies gets: a
 * transaction commits only once two copies hold it (one with a single copy),
 * so losing one broker loses no committed state.
 */
export function changelogMinInSync(replicas: number): number {
  return Math.min(replicas, 2);
}

/**
 * Creates the changelog topic (compacted, one partition per shard, with
 * `replicationFactor` copies or the brokers' default, and the
 * `min.insync.replicas` exactly-once needs) unless it exists; an existing one
 * with another partition count cannot hold these shards, and is refused with
 * one line.
 */
export async function ensureChangelog(
  admin: Admin,
  topic: string,
  shards: number,
  replicationFactor?: number,
): Promise<void> {
  const replicas = replicationFactor ?? await brokersReplicationFactor(admin, topic);
  const info = await ensureTopic(admin, topic, shards, {
    requested: false,
    replicationFactor: replicas ?? -1,
    config: {
      "cleanup.policy": "compact",
      ...(replicas === undefined ? {} : { "min.insync.replicas": String(changelogMinInSync(replicas)) }),
    },
  });
  if (info.created) {
    log.info(
      "created changelog topic {topic} with {shards} partitions (compacted, {replicas} replicas, min.insync.replicas " +
        "{minIsr})",
      {
        topic,
        shards,
        replicas: replicas ?? "the brokers' default of",
        minIsr: replicas === undefined ? "the brokers' default" : changelogMinInSync(replicas),
      },
    );
  }
  if (info.partitions !== shards) {
    throw new ChangelogLayoutError(
      `changelog topic ${topic} has ${info.partitions} partitions but there are ${shards} shards: it belongs to ` +
        "another topic layout; give this topic another --group",
    );
  }
  const [described] = await asking(
    { operation: "DescribeConfigs", resource: "Topic", name: topic },
    () =>
      admin.describeConfigs({
        resources: [{
          resourceType: ConfigResourceTypes.TOPIC,
          resourceName: topic,
          configurationKeys: ["cleanup.policy"],
        }],
      }),
  );
  const policy = described?.configs.find((c) => c.name === "cleanup.policy")?.value;
  // Retention would delete users whose totals did not change for a while.
  if (typeof policy === "string" && policy !== "compact") {
    throw new ChangelogLayoutError(
      `changelog topic ${topic} has cleanup.policy=${policy}, which deletes state; it must be compact ` +
        `(kafka-configs --alter --entity-type topics --entity-name ${topic} --add-config cleanup.policy=compact)`,
    );
  }
}

/**
 * The brokers' `default.replication.factor`, read only when the changelog is
 * to be made; `undefined` when the topic exists, or when this principal may
 * not read the brokers' configuration (a managed Kafka seldom lets it): the
 * topic then gets the brokers' defaults for replicas and `min.insync.replicas`.
 */
async function brokersReplicationFactor(admin: Admin, topic: string): Promise<number | undefined> {
  if (await partitionCount(admin, topic) !== undefined) return undefined;
  try {
    return await defaultReplicationFactor(admin);
  } catch (error) {
    if (!notAuthorized(error, [])) throw error;
    log.info(
      "this principal may not read the brokers' default.replication.factor (DescribeConfigs on the cluster): " +
        "{topic} gets the brokers' defaults for replicas and min.insync.replicas (--replication-factor chooses)",
      { topic },
    );
    return undefined;
  }
}

/**
 * Refuses to go on without a changelog when the group has already counted
 * part of its topic: creating it empty would start every user from zero at
 * the group's committed offsets. Says what was lost and whether the topic
 * still holds every event, so that a rebuild can count them all again.
 */
export async function refuseLostChangelog(
  offsets: OffsetsReader,
  changelog: string,
  input: { readonly topic: string; readonly group: string; readonly partitions: number },
): Promise<void> {
  if (await offsets.topicId(changelog) !== undefined) return;
  const counted = [...await offsets.committed(input.group, input.topic)].filter(([, offset]) => offset > 0);
  if (counted.length === 0) return;
  const partitions = Array.from({ length: input.partitions }, (_, p) => p);
  const trimmed = [...await offsets.bounds(input.topic, partitions)].filter(([, b]) => b.start > 0);
  const events = counted.reduce((n, [, offset]) => n + offset, 0);
  const retention = trimmed.length === 0
    ? `${input.topic} still holds every event (each partition starts at offset 0), so a rebuild counts them all again`
    : `${input.topic} no longer holds every event (${trimmed.length} partitions start past offset 0, partition ` +
      `${trimmed[0][0]} at ${trimmed[0][1].start}), so a rebuild counts only what is left`;
  throw new ChangelogLayoutError(
    `changelog topic ${changelog} is missing, but group ${input.group} has counted ${events} offsets of ` +
      `${input.topic} on ${counted.length} partitions: the totals counted so far are lost with it; ${retention}: ` +
      `usershard rebuild --topic ${input.topic} --group ${input.group} (with the nodes of the group stopped)`,
  );
}

/** One shard restored from its changelog partition. */
export interface ShardRestore {
  readonly shard: number;
  /** Users restored. */
  readonly entities: number;
  /** Records read to restore them (compaction keeps this near `entities`). */
  readonly records: number;
  /** From opening the shard (fencing included) to the state rebuilt. */
  readonly seconds: number;
}

/** Hears of every restore (the node's metrics). */
export interface RestoreObserver {
  restored(restore: ShardRestore): void;
}

/** How the changelog writers reach Kafka, and what the changelog counts. */
export interface ChangelogSettings {
  /** Offsets and topic ids, for the checks a restore makes before it trusts what it read. */
  readonly offsets: OffsetsReader;
  /** The input topic the shards count, and the consumer group that commits its offsets. */
  readonly input: { readonly topic: string; readonly group: string };
  /** Bootstrap brokers as `host:port`, for the writers and the restores. */
  readonly brokers: readonly string[];
  /** The client id Kafka's tools show for this node's writers and restores. */
  readonly clientId: string;
  /** TLS and SASL; absent for PLAINTEXT. */
  readonly security?: KafkaSecurity;
  readonly topic: string;
  /** How long Kafka lets a changelog transaction stay open (ARCHITECTURE.md, "Timing"). */
  readonly transactionTimeoutMs?: number;
  /** How long one write may take before it has failed (ARCHITECTURE.md, "Timing"). */
  readonly writeTimeoutMs?: number;
  readonly observer?: RestoreObserver;
}

/**
 * Shard state kept in the changelog topic. Restores read a whole partition
 * (`partition_reader.ts`); writes go through a transactional producer per
 * shard.
 */
export class KafkaShardStorage implements ShardStorage {
  readonly durable = true;
  readonly #settings: ChangelogSettings;
  readonly #reader: PartitionReader;

  constructor(settings: ChangelogSettings) {
    this.#settings = settings;
    this.#reader = new PartitionReader({
      brokers: settings.brokers,
      clientId: settings.clientId,
      security: settings.security,
    });
  }

  /**
   * Fences the shard's earlier writers, then restores it from its changelog
   * partition, once the partition is seen to count this incarnation of the
   * input (`input_binding.ts`); a partition never written gets its marker in
   * the first transaction.
   */
  async open(shard: number): Promise<ShardLog> {
    const { topic, brokers, clientId, security, input, offsets } = this.#settings;
    const principal = kafkaPrincipal(security);
    const writing = writePermissions(topic);
    const started = performance.now();
    const producer = new TransactionalProducer({
      ...clientOptions({ brokers, clientId: `${clientId}-shard-${shard}`, security }),
      transactionalId: `${topic}-${shard}`,
      idempotent: true,
      // "No producer yet": the client's default (0 and 0) makes the broker take this for an old
      // producer of the id, refuse it as fenced, and leave the real previous owner unfenced.
      producerId: -1n,
      producerEpoch: -1,
      // A transaction's first send is refused (CONCURRENT_TRANSACTIONS) until the broker has
      // finished the previous one, a matter of milliseconds: retry soon. How long a write may take
      // in all, retries included, is bounded by the write timeout (KafkaShardLog.write).
      retries: 12,
      retryDelay: (_client: unknown, _operation: string, attempt: number) => Math.min(10 * 2 ** attempt, 2000),
      // Also the transaction timeout: Kafka aborts a transaction left open this long (a new owner
      // aborts it at once), so it must outlast a write (cluster/timings.ts checks it does).
      timeout: this.#settings.transactionTimeoutMs ?? DEFAULT_KAFKA_TIMINGS.transactionTimeoutMs,
    });
    try {
      // The first transaction calls InitProducerId: from here on no earlier owner's write can commit.
      const first = await asking(writing, () => producer.beginTransaction(), principal);
      const fenced = performance.now();
      const [changelogBounds, inputBounds, topicId, committed] = await asking(
        [{ operation: "Describe", resource: "Group", name: input.group }],
        () =>
          Promise.all([
            offsets.bounds(topic, [shard]),
            offsets.bounds(input.topic, [shard]),
            offsets.topicId(input.topic),
            offsets.committed(input.group, input.topic),
          ]),
        principal,
      );
      if (topicId === undefined) throw new Error(`topic ${input.topic} does not exist (any more?)`);
      const logStart = changelogBounds.get(shard)?.start ?? 0;
      const entities = new Map<string, UserTotals>();
      let marker: InputMarker | undefined;
      let lastOffset = -1;
      const records = await asking(
        { operation: "Read", resource: "Topic", name: topic },
        () =>
          this.#reader.readAll(topic, shard, logStart, (record) => {
            if (record.key === null) return;
            const user = record.key.toString("utf8");
            if (user === MARKER_KEY) {
              if (record.value) marker = decodeMarker(record.value);
              return;
            }
            if (record.value === null) {
              entities.delete(user);
              return;
            }
            const value = decodeChangelogValue(record.value);
            // A value this version cannot read (a newer build's): restoring without it would lose the user.
            if (!value) throw new Error(`${topic}/${shard} holds a value for user ${user} this version cannot read`);
            entities.set(user, value.totals);
            if (value.shardOffset > lastOffset) lastOffset = value.shardOffset;
          }),
        principal,
      );
      const verdict = judgeRestore(
        { changelog: topic, partition: shard, logStart, marker, users: entities.size, lastOffset },
        {
          topic: input.topic,
          topicId,
          group: input.group,
          logEnd: inputBounds.get(shard)?.end ?? 0,
          committed: committed.get(shard) ?? -1,
        },
      );
      if (!verdict.trusted) throw new StateRefusedError(verdict.reason);
      let next: Transaction | undefined = first;
      if (verdict.writeMarker) {
        // Before any event of this partition is counted: from now on its offsets and this partition go together.
        await asking(writing, async () => {
          await first.send({
            messages: [{
              topic,
              partition: shard,
              key: Buffer.from(MARKER_KEY),
              value: encodeMarker({ topic: input.topic, topicId }),
            }],
          });
          await first.commit();
        }, principal);
        next = undefined;
      }
      log.info(
        "restored shard {shard} from {topic}: {entities} users up to offset {offset}, {records} records read in " +
          "{ms} ms ({fenceMs} ms to fence the previous owner)",
        {
          shard,
          topic,
          entities: entities.size,
          offset: lastOffset,
          records,
          ms: Math.round(performance.now() - started),
          fenceMs: Math.round(fenced - started),
        },
      );
      this.#settings.observer?.restored({
        shard,
        entities: entities.size,
        records,
        seconds: (performance.now() - started) / 1000,
      });
      const restored: ShardSnapshot | undefined = entities.size === 0 && lastOffset < 0
        ? undefined
        : { shard, lastOffset, entities: [...entities] };
      const writeTimeoutMs = this.#settings.writeTimeoutMs ?? DEFAULT_KAFKA_TIMINGS.changelogWriteTimeoutMs;
      return new KafkaShardLog(producer, topic, shard, next, writeTimeoutMs, restored, principal);
    } catch (error) {
      await producer.close(true).catch(() => {});
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.#reader.close();
  }
}

type Transaction = Awaited<ReturnType<Producer["beginTransaction"]>>;

class KafkaShardLog implements ShardLog {
  readonly restored: ShardSnapshot | undefined;
  readonly #producer: Producer;
  readonly #topic: string;
  readonly #shard: number;
  readonly #writeTimeoutMs: number;
  readonly #principal: string;
  #next: Transaction | undefined;

  constructor(
    producer: Producer,
    topic: string,
    shard: number,
    first: Transaction | undefined,
    writeTimeoutMs: number,
    restored: ShardSnapshot | undefined,
    principal: string,
  ) {
    this.#principal = principal;
    this.#producer = producer;
    this.#topic = topic;
    this.#shard = shard;
    this.#next = first;
    this.#writeTimeoutMs = writeTimeoutMs;
    this.restored = restored;
  }

  /**
   * Writes one batch in one transaction, or fails within the write timeout:
   * a broker that stopped answering must not hold the shard for the
   * client's minutes of retries. A write cut short may still commit (its
   * outcome is unknown), which the failure says: the copy is dropped and the
   * shard reopened, and the restore reads whatever Kafka did commit.
   */
  async write(changed: readonly (readonly [string, UserTotals])[], lastOffset: number): Promise<void> {
    await within(this.#write(changed, lastOffset), this.#writeTimeoutMs, `the changelog write of shard ${this.#shard}`);
  }

  async #write(changed: readonly (readonly [string, UserTotals])[], lastOffset: number): Promise<void> {
    try {
      const transaction = this.#next ?? await this.#producer.beginTransaction();
      this.#next = undefined;
      // A broker refuses a record batch past message.max.bytes (1 MiB by default), and a shard of
      // many users changes more than that in one batch: the transaction takes it in pieces.
      let from = 0;
      while (from < changed.length) {
        let to = from;
        for (let bytes = 0; to < changed.length && bytes < MAX_SEND_BYTES; to++) {
          bytes += changed[to][0].length * 3 + RECORD_OVERHEAD_BYTES;
        }
        await transaction.send({
          messages: changed.slice(from, to).map(([user, totals]) => ({
            topic: this.#topic,
            partition: this.#shard,
            key: Buffer.from(user),
            value: encodeChangelogValue({ totals, shardOffset: lastOffset }),
          })),
        });
        from = to;
      }
      await transaction.commit();
    } catch (error) {
      if (isFenced(error)) {
        throw new ShardFencedError(`shard ${this.#shard} was opened by another node; this copy may no longer write`);
      }
      throw notAuthorized(error, writePermissions(this.#topic), this.#principal) ?? error;
    }
  }

  async close(): Promise<void> {
    // A transaction is begun ahead of its first send, and one with nothing sent is nothing to Kafka:
    // aborting it would only be a request that a broker that is down can hold up.
    this.#next = undefined;
    await this.#producer.close(true);
  }
}

/** What a changelog write needs: to write the topic, under transactional ids that start with its name, idempotently. */
function writePermissions(topic: string): Permission[] {
  return [
    { operation: "Write", resource: "Topic", name: topic },
    { operation: "Write", resource: "TransactionalId", name: `${topic}-`, prefixed: true },
    { operation: "IdempotentWrite", resource: "Cluster", name: "kafka-cluster" },
  ];
}

/** Kafka's ways of saying that a newer producer holds the transactional id, wherever the client nests them. */
function isFenced(error: unknown): boolean {
  return kafkaErrorCode(error, (code) => code === "INVALID_PRODUCER_EPOCH" || code === "PRODUCER_FENCED") !== undefined;
}
