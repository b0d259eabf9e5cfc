/**
 * Where a hosted shard keeps its state: the seam between the shard region and
 * a durable store (the Kafka changelog, `kafka/changelog.ts`) or none at all
 * (`--state memory`). See ARCHITECTURE.md, "Durable state".
 *
 * @module
 */
import type { UserTotals } from "./entity.ts";
import type { ShardSnapshot } from "./shard.ts";

/** One shard's store while this node hosts it. */
export interface ShardLog {
  /** The shard's state as stored when it was opened; `undefined` when nothing was stored. */
  readonly restored: ShardSnapshot | undefined;
  /**
   * Stores the totals of `changed` users as of `lastOffset`, all or nothing.
   * Rejects with {@linkcode ShardFencedError} once another owner has opened
   * the shard, and with another error when the store could not say; either
   * way nothing of this write counts, and the in-memory copy must be dropped.
   */
  write(changed: readonly (readonly [userId: string, totals: UserTotals])[], lastOffset: number): Promise<void>;
  /** Gives the shard up; no write comes after. */
  close(): Promise<void>;
}

/** How a node keeps shard state. */
export interface ShardStorage {
  /**
   * Whether state outlives the node. A durable store moves shards by itself:
   * the new home opens the shard and restores it, so no snapshot travels.
   */
  readonly durable: boolean;
  /**
   * Takes the shard over: fences every earlier owner, so that none of its
   * writes can land after this resolves, then reads back what is stored.
   * Rejects with {@linkcode StateRefusedError} when what is stored cannot be
   * trusted, and with another error when the store could not be read (tried
   * again later).
   */
  open(shard: number): Promise<ShardLog>;
  /** Closes what the storage holds for all shards. */
  close(): Promise<void>;
}

/**
 * What the store holds for a shard cannot be trusted (it counts another
 * incarnation of the input, say): no node may host the shard from it, and the
 * node stops with this one line, which says how to proceed.
 */
export class StateRefusedError extends Error {
  override name = "StateRefusedError";
}

/** Another node has opened the shard since this one did; this copy may no longer write. */
export class ShardFencedError extends Error {
  override name = "ShardFencedError";
}

/**
 * No storage: state lives in memory only and moves as a snapshot on handoff.
 * A crash or a stop of every node loses it. For comparison in benchmarks.
 *
 * @example
 * ```ts
 * const log = await MEMORY_STORAGE.open(3);
 * log.restored; // undefined
 * ```
 */
export const MEMORY_STORAGE: ShardStorage = {
  durable: false,
  open: () => Promise.resolve({ restored: undefined, write: () => Promise.resolve(), close: () => Promise.resolve() }),
  close: () => Promise.resolve(),
};
