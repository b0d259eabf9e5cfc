/**
 * What Kafka knows of topics and groups that restores and start-up checks
 * need: a topic's id (a topic deleted and created again has a new one), a
 * partition's log start and log end, and a group's committed offsets.
 *
 * @module
 */
import { Admin } from "@platformatic/kafka";
import { clientOptions, errorChain, type KafkaSettings } from "./client.ts";

/** How long {@linkcode OffsetsReader.topicId} waits for the brokers to agree whether a topic exists. */
const TOPIC_AGREEMENT_MS = 15_000;

/** Kafka's ListOffsets timestamps for the first and the next offset of a partition. */
const EARLIEST = -2n;
const LATEST = -1n;

/** Reads offsets and topic ids through one admin connection. */
export class OffsetsReader {
  readonly #admin: Admin;

  constructor(settings: KafkaSettings) {
    this.#admin = new Admin({ ...clientOptions(settings), retries: 3, timeout: 10_000 });
  }

  /**
   * The id Kafka gave `topic`, or `undefined` when there is no such topic.
   * On a cluster the broker that lists a topic may not know it yet, or no
   * longer (it is being created or deleted): that is asked again until the
   * two agree, for {@linkcode TOPIC_AGREEMENT_MS} at most.
   */
  async topicId(topic: string): Promise<string | undefined> {
    const deadline = Date.now() + TOPIC_AGREEMENT_MS;
    while (true) {
      if (!(await this.#admin.listTopics()).includes(topic)) return undefined;
      try {
        const metadata = await this.#admin.metadata({ topics: [topic], forceUpdate: true });
        return metadata.topics.get(topic)?.id;
      } catch (error) {
        const unknown = errorChain(error).some((e) => e.message.startsWith("Unknown topic "));
        if (!unknown || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  }

  /** Every partition's log start (the first offset still held) and log end (the next offset to be written). */
  async bounds(topic: string, partitions: readonly number[]): Promise<Map<number, { start: number; end: number }>> {
    const ask = (timestamp: bigint) =>
      this.#admin.listOffsets({
        topics: [{ name: topic, partitions: partitions.map((partitionIndex) => ({ partitionIndex, timestamp })) }],
      });
    const [earliest, latest] = await Promise.all([ask(EARLIEST), ask(LATEST)]);
    const ends = new Map(latest[0]?.partitions.map((p) => [p.partitionIndex, Number(p.offset)]));
    return new Map(
      earliest[0]?.partitions.map((
        p,
      ) => [p.partitionIndex, { start: Number(p.offset), end: ends.get(p.partitionIndex) ?? 0 }]),
    );
  }

  /** The offsets `group` committed for the partitions of `topic` (partition → offset), none when it has none. */
  async committed(group: string, topic: string): Promise<Map<number, number>> {
    const [answer] = await this.#admin.listConsumerGroupOffsets({ groups: [group] });
    const offsets = new Map<number, number>();
    for (const t of answer?.topics ?? []) {
      if (t.name !== topic) continue;
      for (const p of t.partitions) {
        if (p.committedOffset >= 0n) offsets.set(p.partitionIndex, Number(p.committedOffset));
      }
    }
    return offsets;
  }

  /** Closes the connection. */
  async close(): Promise<void> {
    await this.#admin.close();
  }
}
