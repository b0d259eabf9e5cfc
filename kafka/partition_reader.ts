/**
 * Reads one partition from its start to its last stable offset, committed
 * records only (`read_committed`), without joining a consumer group.
 *
 * kafkajs reads only through consumer groups, and a group per restore would
 * cost a join (3 s of `group.initial.rebalance.delay.ms` on a default broker)
 * and leave a group behind. So this module uses two kafkajs internals, pinned
 * with kafkajs in `deno.json`: the client's own cluster factory (same brokers,
 * retries and logger) and its `Batch`, which drops aborted transactions and
 * control records exactly as its consumer does. Nothing else depends on them.
 *
 * @module
 */
import { createRequire } from "node:module";
import type { Buffer } from "node:buffer";
import type { Kafka } from "kafkajs";

const require = createRequire(import.meta.url);

/** A record as read back. */
export interface StoredRecord {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

// The shapes of the kafkajs internals used here; kafkajs has no types for them.
interface FetchedPartition {
  readonly partition: number;
  readonly lastStableOffset: string;
}
interface InternalBroker {
  fetch(request: unknown): Promise<{ responses: { partitions: FetchedPartition[] }[] }>;
}
interface InternalCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  findTopicPartitionMetadata(topic: string): { partitionId: number; leader: number }[];
  findBroker(query: { nodeId: string }): Promise<InternalBroker>;
}
interface InternalBatch {
  readonly messages: (StoredRecord & { offset: string })[];
  readonly messagesWithinOffset: { offset: string }[];
}
type BatchConstructor = new (topic: string, fetchedOffset: string, data: FetchedPartition) => InternalBatch;

const Batch = require("kafkajs/src/consumer/batch.js") as BatchConstructor;

const READ_COMMITTED = 1;
const MAX_BYTES = 32 * 1024 * 1024;

/** Reads whole partitions for restores; one connection pool per node. */
export class PartitionReader {
  readonly #kafka: Kafka;
  #cluster: Promise<InternalCluster> | undefined;

  constructor(kafka: Kafka) {
    this.#kafka = kafka;
  }

  #connected(): Promise<InternalCluster> {
    this.#cluster ??= (async () => {
      const factory = Object.getOwnPropertySymbols(this.#kafka)
        .find((symbol) => symbol.description === "private:Kafka:createCluster");
      if (!factory) throw new Error("this kafkajs build has no cluster factory; see kafka/partition_reader.ts");
      const create = (this.#kafka as unknown as Record<symbol, (options: object) => InternalCluster>)[factory];
      const cluster = create({ isolationLevel: READ_COMMITTED, allowAutoTopicCreation: false });
      await cluster.connect();
      return cluster;
    })();
    return this.#cluster;
  }

  /**
   * Calls `each` with every committed record of `topic`/`partition` in offset
   * order, from `from` (the partition's log start) up to the last stable
   * offset, and resolves with their number. A failure drops the connections,
   * so the next read starts afresh (after a broker restart, say).
   */
  async readAll(
    topic: string,
    partition: number,
    from: number,
    each: (record: StoredRecord) => void,
  ): Promise<number> {
    try {
      const cluster = await this.#connected();
      // Metadata is fetched when the topic is new to this pool; a stale leader fails the fetch,
      // which drops the pool, so the next read asks afresh.
      await cluster.addTargetTopic(topic);
      const leader = cluster.findTopicPartitionMetadata(topic).find((p) => p.partitionId === partition)?.leader;
      if (leader === undefined || leader < 0) throw new Error(`${topic}/${partition} has no leader`);
      const broker = await cluster.findBroker({ nodeId: String(leader) });
      let offset = from;
      let records = 0;
      while (true) {
        const response = await broker.fetch({
          replicaId: -1,
          isolationLevel: READ_COMMITTED,
          maxWaitTime: 0,
          minBytes: 1,
          maxBytes: MAX_BYTES,
          topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes: MAX_BYTES }] }],
        });
        const data = response.responses[0]?.partitions[0];
        if (!data) throw new Error(`no answer for ${topic}/${partition}`);
        const batch = new Batch(topic, String(offset), data);
        for (const record of batch.messages) {
          each(record);
          records++;
        }
        const seen = batch.messagesWithinOffset;
        const end = Number(data.lastStableOffset);
        // Nothing at or past the offset, below the end: the broker sent only batches the cleaner
        // emptied (kafkajs keeps no batch headers to skip them by), so step past one offset.
        // Jumping to the end could skip the segments after them.
        offset = seen.length > 0 ? Number(seen[seen.length - 1].offset) + 1 : offset + 1;
        if (offset >= end) return records;
      }
    } catch (error) {
      const cluster = this.#cluster;
      this.#cluster = undefined;
      await cluster?.then((c) => c.disconnect()).catch(() => {});
      throw error;
    }
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    const cluster = this.#cluster;
    this.#cluster = undefined;
    await cluster?.then((c) => c.disconnect()).catch(() => {});
  }
}
