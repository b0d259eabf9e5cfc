/**
 * Consumer lag: how many records of each partition this node consumes the
 * group has not committed yet, read from Kafka itself (log end offsets and
 * the group's committed offsets, through kafkajs admin) when asked, so that
 * a scrape sees it as it is rather than as the consumer last heard it.
 *
 * @module
 */
import type { Admin } from "kafkajs";
import { getLogger } from "@logtape/logtape";
import { errorText } from "../cluster/error_text.ts";
import { within } from "../cluster/remoting/errors.ts";

const log = getLogger(["usershard", "kafka"]);

/** How long one reading may take before the lag counts as unknown: a scrape must not wait on a slow broker. */
export const LAG_TIMEOUT_MS = 1000;

/** A partition's log start and end offsets, as kafkajs's `fetchTopicOffsets` gives them. */
export interface PartitionOffsets {
  readonly partition: number;
  readonly low: string;
  readonly high: string;
}

/** A partition's committed offset, as kafkajs's `fetchOffsets` gives it (`"-1"` when none). */
export interface CommittedOffset {
  readonly partition: number;
  readonly offset: string;
}

/**
 * The lag of each of `partitions`: log end − committed offset. Nothing
 * committed, or an offset retention has deleted past, counts from the log
 * start, where the group starts consuming. A partition Kafka did not list
 * is left out.
 *
 * @example
 * ```ts
 * const ends = [{ partition: 0, low: "0", high: "10" }, { partition: 1, low: "4", high: "9" }];
 * lagOf(ends, [{ partition: 0, offset: "7" }, { partition: 1, offset: "-1" }], [0, 1]); // Map { 0 => 3, 1 => 5 }
 * ```
 */
export function lagOf(
  ends: readonly PartitionOffsets[],
  committed: readonly CommittedOffset[],
  partitions: readonly number[],
): Map<number, number> {
  const lag = new Map<number, number>();
  for (const partition of partitions) {
    const end = ends.find((e) => e.partition === partition);
    if (!end) continue;
    const offset = Number(committed.find((c) => c.partition === partition)?.offset ?? -1);
    lag.set(partition, Math.max(0, Number(end.high) - Math.max(offset, Number(end.low))));
  }
  return lag;
}

/** How a {@linkcode ConsumerLag} reads. */
export interface ConsumerLagOptions {
  readonly admin: Admin;
  readonly group: string;
  readonly topic: string;
  /** The partitions to read the lag of: this node's, as they are when asked. */
  readonly partitions: () => readonly number[];
  readonly timeoutMs?: number;
}

/** Reads the lag of this node's partitions on demand. */
export class ConsumerLag {
  readonly #o: ConsumerLagOptions;
  #reading: Promise<Map<number, number>> | undefined;
  #failing = false;

  constructor(options: ConsumerLagOptions) {
    this.#o = options;
  }

  /**
   * The lag by partition (empty when this node consumes none), or
   * `undefined` when Kafka did not answer within the timeout. Callers at
   * the same time share one reading, so scrapes never pile requests up on a
   * slow broker.
   */
  async read(): Promise<ReadonlyMap<number, number> | undefined> {
    this.#reading ??= this.#fetch().finally(() => this.#reading = undefined);
    try {
      const lag = await within(this.#reading, this.#o.timeoutMs ?? LAG_TIMEOUT_MS, "reading the lag");
      this.#failing = false;
      return lag;
    } catch (error) {
      // Once per streak: a scrape every few seconds must not fill the log with the same line.
      if (!this.#failing) {
        log.warn("could not read the consumer lag of group {group}: {error}", {
          group: this.#o.group,
          error: errorText(error),
        });
      }
      this.#failing = true;
      return undefined;
    }
  }

  async #fetch(): Promise<Map<number, number>> {
    const { admin, group, topic } = this.#o;
    const partitions = this.#o.partitions();
    if (partitions.length === 0) return new Map();
    const [ends, committed] = await Promise.all([
      admin.fetchTopicOffsets(topic),
      admin.fetchOffsets({ groupId: group, topics: [topic] }),
    ]);
    return lagOf(ends, committed.find((c) => c.topic === topic)?.partitions ?? [], partitions);
  }
}
