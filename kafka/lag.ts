/**
 * Consumer lag: how many records of each partition this node consumes the
 * group has not committed yet, read from Kafka itself (log start and end
 * offsets and the group's committed offsets, through {@linkcode OffsetsReader})
 * when asked, so that a scrape sees it as it is rather than as the consumer
 * last heard it.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { errorText } from "../cluster/error_text.ts";
import { within } from "../cluster/remoting/errors.ts";
import type { OffsetsReader } from "./offsets.ts";

const log = getLogger(["usershard", "kafka"]);

/** How long one reading may take before the lag counts as unknown: a scrape must not wait on a slow broker. */
export const LAG_TIMEOUT_MS = 1000;

/**
 * The lag of each of `partitions`: log end − committed offset. Nothing
 * committed, or an offset retention has deleted past, counts from the log
 * start, where the group starts consuming. A partition Kafka did not list
 * is left out.
 *
 * @example
 * ```ts
 * const bounds = new Map([[0, { start: 0, end: 10 }], [1, { start: 4, end: 9 }]]);
 * lagOf(bounds, new Map([[0, 7]]), [0, 1]); // Map { 0 => 3, 1 => 5 }
 * ```
 */
export function lagOf(
  bounds: ReadonlyMap<number, { readonly start: number; readonly end: number }>,
  committed: ReadonlyMap<number, number>,
  partitions: readonly number[],
): Map<number, number> {
  const lag = new Map<number, number>();
  for (const partition of partitions) {
    const bound = bounds.get(partition);
    if (!bound) continue;
    const offset = committed.get(partition) ?? -1;
    lag.set(partition, Math.max(0, bound.end - Math.max(offset, bound.start)));
  }
  return lag;
}

/** How a {@linkcode ConsumerLag} reads. */
export interface ConsumerLagOptions {
  /** Where the offsets come from. */
  readonly offsets: Pick<OffsetsReader, "bounds" | "committed">;
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
    const { offsets, group, topic } = this.#o;
    const partitions = this.#o.partitions();
    if (partitions.length === 0) return new Map();
    const [bounds, committed] = await Promise.all([
      offsets.bounds(topic, partitions),
      offsets.committed(group, topic),
    ]);
    return lagOf(bounds, committed, partitions);
  }
}
