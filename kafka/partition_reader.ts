/**
 * Reads one partition from its start to its last stable offset, committed
 * records only (`read_committed`), without joining a consumer group: a
 * group per restore would cost a join (3 s of
 * `group.initial.rebalance.delay.ms` on a default broker) and leave a group
 * behind. The client's fetch goes straight to the partition's leader.
 *
 * @module
 */
import { Consumer, FetchIsolationLevels } from "@platformatic/kafka";
import { clientOptions, type KafkaSettings } from "./client.ts";
import { committedRecords, type ReadRecord } from "./fetched_records.ts";

/** A record as read back. */
export type StoredRecord = Pick<ReadRecord, "key" | "value">;

const MAX_BYTES = 32 * 1024 * 1024;
/** Answers in a row that move the reader on by nothing, below the end, before the read fails. */
const MAX_EMPTY_ANSWERS = 20;

/** Reads whole partitions for restores; one connection pool per node. */
export class PartitionReader {
  readonly #settings: KafkaSettings;
  readonly #maxBytes: number;
  #consumer: Consumer | undefined;
  /**
   * The fetch in flight: fetches go one at a time. The client keeps one
   * incremental fetch session per broker (KIP-227), and two fetches at once
   * on it (restores of several shards) corrupt it: the broker refuses the
   * session, or answers for another request's partitions.
   */
  #fetching: Promise<unknown> = Promise.resolve();

  /** `maxBytes`: the most one fetch answer holds (tests make it small, to read in many fetches). */
  constructor(settings: KafkaSettings, maxBytes = MAX_BYTES) {
    this.#settings = settings;
    this.#maxBytes = maxBytes;
  }

  #client(): Consumer {
    this.#consumer ??= new Consumer({
      ...clientOptions(this.#settings),
      // Never joined: fetches need no group, but the client is a group's consumer by its type.
      groupId: `${this.#settings.clientId}-restore`,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      maxWaitTime: 0,
      minBytes: 1,
      maxBytes: this.#maxBytes,
      autocommit: false,
    });
    return this.#consumer;
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
    const consumer = this.#client();
    try {
      let offset = from;
      let records = 0;
      let empty = 0;
      while (true) {
        const metadata = await consumer.metadata({ topics: [topic] });
        const described = metadata.topics.get(topic);
        const leader = described?.partitions[partition]?.leader;
        if (!described || leader === undefined || leader < 0) throw new Error(`${topic}/${partition} has no leader`);
        const request = {
          node: leader,
          topics: [{
            topicId: described.id,
            partitions: [{
              partition,
              fetchOffset: BigInt(offset),
              partitionMaxBytes: this.#maxBytes,
              currentLeaderEpoch: -1,
              lastFetchedEpoch: -1,
            }],
          }],
        };
        const fetched = this.#fetching.then(() => consumer.fetch(request));
        this.#fetching = fetched.catch(() => {});
        const response = await fetched;
        const answer = response.responses.flatMap((t) => t.partitions).find((p) => p.partitionIndex === partition);
        if (!answer) {
          // An incremental fetch session leaves out a partition with nothing new since the last answer.
          if (++empty > MAX_EMPTY_ANSWERS) throw new Error(`no answer for ${topic}/${partition} at ${offset}`);
          continue;
        }
        const read = committedRecords(answer, offset);
        for (const record of read.records) each(record);
        records += read.records.length;
        const end = Number(answer.lastStableOffset);
        if (read.next === offset && offset < end && ++empty > MAX_EMPTY_ANSWERS) {
          throw new Error(`${topic}/${partition} gives nothing at ${offset}, below its last stable offset ${end}`);
        }
        if (read.next > offset) empty = 0;
        offset = read.next;
        if (offset >= end) return records;
      }
    } catch (error) {
      this.#consumer = undefined;
      await consumer.close(true).catch(() => {});
      throw error;
    }
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    const consumer = this.#consumer;
    this.#consumer = undefined;
    await consumer?.close(true).catch(() => {});
  }
}
