/**
 * The committed records in one partition's answer to a `read_committed`
 * fetch, as Kafka's own consumer reads them: records of aborted
 * transactions and transaction markers are dropped, and the answer's end
 * is the offset after its last batch, so a partition moves on past markers
 * and emptied batches too.
 *
 * @platformatic/kafka drops an aborted transaction's records only when its
 * abort marker is in the same answer; this follows the broker's list of
 * aborted transactions instead, which covers a transaction cut off by the
 * answer's size as well.
 *
 * @module
 */
import type { Buffer } from "node:buffer";
import type { fetchV17 } from "@platformatic/kafka";

/** One partition's part of a fetch's answer. */
export type FetchedPartition = fetchV17.FetchResponsePartition;

const TRANSACTIONAL = 0x10;
const CONTROL = 0x20;

/** A committed record as read. */
export interface ReadRecord {
  readonly offset: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
}

/** What an answer held for the reader: its committed records from `from` on, and where to read next. */
export interface ReadBatch {
  readonly records: ReadRecord[];
  /** The offset after the answer's last batch; `from` when it held nothing. */
  readonly next: number;
}

/**
 * The committed records of `answer` at or after `from`, in offset order.
 *
 * @example
 * ```ts
 * declare const answer: FetchedPartition; // a partition's part of a fetch's answer
 * const { records, next } = committedRecords(answer, 40); // records from offset 40 on; next: where to read on
 * ```
 */
export function committedRecords(answer: FetchedPartition, from: number): ReadBatch {
  const aborted = [...(answer.abortedTransactions ?? [])].sort((a, b) => Number(a.firstOffset - b.firstOffset));
  const abortedProducers = new Set<bigint>();
  const records: ReadRecord[] = [];
  let next = from;
  for (const batch of answer.records ?? []) {
    const first = Number(batch.firstOffset);
    const last = first + batch.lastOffsetDelta;
    while (aborted.length > 0 && aborted[0].firstOffset <= BigInt(last)) {
      abortedProducers.add(aborted.shift()!.producerId);
    }
    next = Math.max(next, last + 1);
    if (batch.attributes & CONTROL) {
      // A marker ends its producer's transaction, committed or aborted: its later records are live again.
      abortedProducers.delete(batch.producerId);
      continue;
    }
    if (batch.attributes & TRANSACTIONAL && abortedProducers.has(batch.producerId)) continue;
    for (const record of batch.records) {
      const offset = first + record.offsetDelta;
      if (offset >= from) records.push({ offset, key: record.key, value: record.value });
    }
  }
  return { records, next };
}
