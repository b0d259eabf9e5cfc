/**
 * The records a consumer has fetched and not yet delivered, by partition
 * and by the run of that partition they were fetched in (`consumer_progress.ts`).
 * A batch of an earlier run (fetched before a refusal or a revocation
 * restarted its partition) is never handed out with a later run's: mixed
 * in, its higher offsets would make the shard skip the lower ones of the
 * batch fetched again, and those events would be committed unapplied.
 *
 * @module
 */
import type { ReadRecord } from "./fetched_records.ts";

/** Fetched records awaiting delivery. */
export class FetchedBatches {
  readonly #byPartition = new Map<number, { run: number; batches: Map<number, ReadRecord[]> }>();

  /** Keeps the records of `partition` fetched from `from` in run `run`; a newer run drops what an older one kept. */
  keep(partition: number, run: number, from: number, records: ReadRecord[]): void {
    let kept = this.#byPartition.get(partition);
    if (kept === undefined || kept.run < run) this.#byPartition.set(partition, kept = { run, batches: new Map() });
    if (kept.run !== run) return;
    kept.batches.set(from, records);
  }

  /**
   * Takes the records of `partition`'s run `run` from `from` up to `next`,
   * in offset order and each offset once; `undefined` when the batch that
   * starts at `from` is not here (dropped with its run).
   */
  take(partition: number, run: number, from: number, next: number): ReadRecord[] | undefined {
    const kept = this.#byPartition.get(partition);
    if (kept === undefined || kept.run !== run || !kept.batches.has(from)) return undefined;
    const starts = [...kept.batches.keys()].filter((start) => start >= from && start < next).sort((a, b) => a - b);
    const records: ReadRecord[] = [];
    let last = from - 1;
    for (const start of starts) {
      for (const record of kept.batches.get(start)!) {
        if (record.offset > last && record.offset < next) {
          records.push(record);
          last = record.offset;
        }
      }
      kept.batches.delete(start);
    }
    return records;
  }

  /** Drops everything kept for `partition` (revoked, or its batch refused). */
  drop(partition: number): void {
    this.#byPartition.delete(partition);
  }

  /** Drops everything. */
  clear(): void {
    this.#byPartition.clear();
  }
}
