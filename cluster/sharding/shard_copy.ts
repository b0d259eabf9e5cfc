/**
 * This node's live copy of a shard while it hosts it: the entities, the store that keeps them
 * (see `shard_storage.ts`), and the rule that ties the two together. Batches
 * apply one at a time, and a batch counts (its caller is answered) only once
 * the store holds it. A write that fails leaves memory ahead of the store, so
 * the copy is marked broken and must be dropped: the store, read again, is
 * the truth.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { PurchaseEvent, UserTotals } from "./entity.ts";
import { errorText } from "../error_text.ts";
import { type ApplyResult, Shard, type ShardSnapshot } from "./shard.ts";
import { type ShardLog, type ShardStorage, StateRefusedError } from "./shard_storage.ts";

const log = getLogger(["usershard", "sharding"]);

/** The first pause between attempts to open a shard's store; it doubles up to {@linkcode OPEN_RETRY_MAX_MS}. */
const OPEN_RETRY_MS = 250;
const OPEN_RETRY_MAX_MS = 5000;

/** What a shard's copy tells its host. */
export interface ShardCopyHooks {
  /** A write failed: the copy is broken and must be dropped (told once). */
  broken(error: unknown): void;
  /** The store refused to restore the shard (its state cannot be trusted): the node must stop. */
  refused(error: StateRefusedError): void;
}

/** The shard was stopped here (handed off, or the node is closing). */
export class ShardClosedError extends Error {
  override name = "ShardClosedError";
}

/** The copy of one shard on this node. */
export class ShardCopy {
  readonly id: number;
  readonly #storage: ShardStorage;
  readonly #hooks: ShardCopyHooks;
  #shard: Shard | undefined;
  #log: ShardLog | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  #closed = false;
  #broken = false;
  /** The users of the batch whose write is under way, with their totals before it. */
  #uncommitted: Map<string, UserTotals | undefined> | undefined;
  /** Settles once the state is restored and the shard takes events and queries. */
  readonly ready: Promise<Shard>;

  /**
   * Opens the shard in `storage` (retrying until it succeeds, is refused, or
   * the shard is closed); `snapshot` is the state handed over by the previous
   * home, used when the storage has none.
   */
  constructor(id: number, storage: ShardStorage, hooks: ShardCopyHooks, snapshot?: ShardSnapshot) {
    this.id = id;
    this.#storage = storage;
    this.#hooks = hooks;
    this.ready = this.#open(snapshot);
    this.ready.catch(() => {});
  }

  async #open(snapshot: ShardSnapshot | undefined): Promise<Shard> {
    for (let pause = OPEN_RETRY_MS;; pause = Math.min(2 * pause, OPEN_RETRY_MAX_MS)) {
      if (this.#closed) throw new ShardClosedError(`shard ${this.id} was stopped here while it was opening`);
      try {
        const opened = await this.#storage.open(this.id);
        if (this.#closed) {
          await opened.close().catch(() => {});
          continue;
        }
        this.#log = opened;
        this.#shard = new Shard(this.id, opened.restored ?? snapshot);
        return this.#shard;
      } catch (error) {
        if (this.#closed) continue;
        if (error instanceof StateRefusedError) {
          this.#hooks.refused(error);
          throw error;
        }
        log.warn("shard {shard}: could not open its stored state ({error}); trying again in {ms} ms", {
          shard: this.id,
          error: errorText(error),
          ms: pause,
        });
        await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }

  /** Whether the state is restored. */
  get isReady(): boolean {
    return this.#shard !== undefined;
  }

  /** The last offset of the partition applied here; -1 while restoring. */
  get lastOffset(): number {
    return this.#shard?.lastOffset ?? -1;
  }

  /** Users with totals here; 0 while restoring. */
  get numEntities(): number {
    return this.#shard?.numEntities ?? 0;
  }

  /**
   * Applies a batch of the shard's partition, in offset order, and resolves
   * once the store holds it. Rejects when the shard is closed, when its turn
   * comes after `deadline` (ms since the epoch), or when the write failed (the
   * copy is then broken, and `onBroken` was told).
   */
  apply(events: readonly PurchaseEvent[], deadline = Infinity): Promise<ApplyResult> {
    const run = this.#chain.then(async () => {
      const shard = await this.ready;
      if (this.#closed || this.#broken) throw new ShardClosedError(`shard ${this.id} no longer runs here`);
      // A caller that gave up (a slow restore, say) will send the batch again; applying this copy
      // would count nothing twice, but piles up work behind the shard.
      if (Date.now() > deadline) throw new ShardClosedError(`the batch for shard ${this.id} waited past its deadline`);
      const changed = this.#storage.durable ? new Map<string, UserTotals | undefined>() : undefined;
      const result = shard.apply(events, changed);
      if (changed && changed.size > 0) {
        // Until the transaction commits, queries see these users as they were: it may yet fail.
        this.#uncommitted = changed;
        try {
          await this.#log!.write(
            [...changed.keys()].map((user) => [user, shard.get(user)!] as const),
            result.lastOffset,
          );
          this.#uncommitted = undefined;
        } catch (error) {
          this.#broken = true;
          this.#hooks.broken(error);
          throw error;
        }
      }
      return result;
    });
    this.#chain = run.catch(() => {});
    return run;
  }

  /**
   * A user's totals once the state is restored, as committed: a batch whose
   * write is still under way does not show yet (read-committed, as Kafka
   * Streams' interactive queries under exactly-once).
   */
  async get(userId: string): Promise<UserTotals | undefined> {
    const shard = await this.ready;
    const uncommitted = this.#uncommitted;
    return uncommitted?.has(userId) ? uncommitted.get(userId) : shard.get(userId);
  }

  /** The whole state, `undefined` while restoring or once broken. */
  snapshot(): ShardSnapshot | undefined {
    return this.#broken ? undefined : this.#shard?.snapshot();
  }

  /**
   * Stops the shard here: waits for the write in flight, then gives the
   * store up. Resolves with the state to hand over: `undefined` when the store
   * is durable (the next home restores from it), or when there is none worth
   * handing (still restoring, or broken).
   */
  async close(): Promise<ShardSnapshot | undefined> {
    this.#closed = true;
    // An open still under way would fence whoever opens the shard next, so it must end first.
    await this.ready.catch(() => {});
    await this.#chain;
    const opened = this.#log;
    this.#log = undefined;
    await opened?.close().catch(() => {});
    return this.#storage.durable ? undefined : this.snapshot();
  }
}
