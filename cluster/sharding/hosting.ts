/**
 * The shards hosted on one node: starting and stopping them on the
 * coordinator's commands, serving other nodes' events and queries for them,
 * keeping the state of shards handed off lately (when the storage is not
 * durable), and reopening a shard whose write failed if the coordinator still
 * places it here.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import {
  EventsAppliedSchema,
  NotHereSchema,
  ShardStartedSchema,
  ShardStoppedSchema,
  UserTotalsSchema,
} from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";
import { type NodeId, sameNode } from "../remoting/node.ts";
import type { Body } from "../remoting/transport.ts";
import { NO_PURCHASES } from "./entity.ts";
import { ShardCopy } from "./shard_copy.ts";
import type { ShardSnapshot } from "./shard.ts";
import type { ShardStorage, StateRefusedError } from "./shard_storage.ts";
import { eventsFromProto, snapshotFromProto, snapshotToProto } from "./sharding_codec.ts";

const log = getLogger(["usershard", "sharding"]);

/** Hears of every shard that came or went on the coordinator's command (the node's metrics). */
export interface HostingObserver {
  /**
   * A shard moved `in` (from the start command until it was ready, its
   * restore included) or `out` (from the stop command until it stopped).
   */
  shardMoved(direction: "in" | "out", seconds: number): void;
}

/** What hosting needs of the coordinator client: the shard homes it knows, and asking afresh. */
export interface ShardHomes {
  /** Remembers `home` as where `shard` runs. */
  setHome(shard: number, home: NodeId): void;
  /** Forgets where `shard` runs, so the next lookup asks the coordinator. */
  forgetHome(shard: number): void;
  /** Asks the coordinator where `shard` runs (it answers once the shard runs somewhere). */
  resolve(shard: number, timeoutMs: number): Promise<NodeId>;
}

/** How a {@linkcode ShardHosting} is set up. */
export interface HostingOptions {
  readonly self: NodeId;
  readonly shardCount: number;
  readonly storage: ShardStorage;
  readonly coordinator: ShardHomes;
  /** A shard's stored state was refused: the node cannot go on. */
  readonly onRefused?: (error: StateRefusedError) => void;
  /** How long a forwarded batch may wait here for its shard. */
  readonly askTimeoutMs: number;
  /** How long the state of a shard handed off is kept, in case the handoff was cut short. */
  readonly handedOffTtlMs: number;
  readonly observer?: HostingObserver;
}

/** What one node hosts. */
export class ShardHosting {
  readonly #o: HostingOptions;
  readonly #shards = new Map<number, ShardCopy>();
  /** Shards stopped here lately, with the state handed over when the storage is not durable. */
  readonly #handedOff = new Map<number, { snapshot: ShardSnapshot | undefined; at: number }>();
  readonly #stopping = new Map<number, Promise<ShardSnapshot | undefined>>();
  /** Reopens under way, each until a stop of its shard calls it off. */
  readonly #reclaims = new Map<number, { cancelled: boolean }>();
  #closed = false;

  constructor(options: HostingOptions) {
    this.#o = options;
  }

  /** The hosted shard `id`, if any (it may still be restoring). */
  get(id: number): ShardCopy | undefined {
    return this.#shards.get(id);
  }

  /** How many shards are hosted here. */
  get count(): number {
    return this.#shards.size;
  }

  /** The ids of the shards hosted here. */
  ids(): number[] {
    return [...this.#shards.keys()];
  }

  /** The shards hosted here with their entity counts, by shard id. */
  list(): { shardId: number; numEntities: number }[] {
    return [...this.#shards.values()]
      .map((s) => ({ shardId: s.id, numEntities: s.numEntities }))
      .sort((a, b) => a.shardId - b.shardId);
  }

  /** Shards handed off lately, with their state when it travels with them. */
  recentHandoffs(): Map<number, ShardSnapshot | undefined> {
    const now = Date.now();
    for (const [id, entry] of this.#handedOff) {
      if (now - entry.at > this.#o.handedOffTtlMs) this.#handedOff.delete(id);
    }
    return new Map([...this.#handedOff].map(([id, entry]) => [id, entry.snapshot]));
  }

  /** Applies a batch forwarded by another node; "not here" when the shard is not (or no longer) hosted. */
  applyForwarded(id: number, events: Extract<Body, { case: "applyEvents" }>["value"]["events"]): Promise<Body> | Body {
    const shard = this.#shards.get(id);
    if (!shard) return notHere(id);
    // A batch that waits here longer than any sender waits for it is refused rather than queued.
    return shard.apply(eventsFromProto(events), Date.now() + this.#o.askTimeoutMs).then(
      (result): Body => ({
        case: "eventsApplied",
        value: create(EventsAppliedSchema, { lastOffset: BigInt(result.lastOffset), applied: result.applied }),
      }),
      // Stopped or broken while the batch waited: the sender finds the shard's home again.
      () => notHere(id),
    );
  }

  /** Answers another node's query for a user of shard `id`. */
  getForwarded(id: number, userId: string): Promise<Body> | Body {
    const shard = this.#shards.get(id);
    if (!shard) return notHere(id);
    return shard.get(userId).then(
      (found): Body => {
        const totals = found ?? NO_PURCHASES;
        return {
          case: "userTotals",
          value: create(UserTotalsSchema, {
            userId,
            totalPurchases: BigInt(totals.totalPurchases),
            amountSpent: BigInt(totals.amountSpent),
          }),
        };
      },
      () => notHere(id),
    );
  }

  /** The coordinator's start command (its authority already checked). A repeated start keeps the state it has. */
  start(id: number, snapshotProto: Extract<Body, { case: "startShard" }>["value"]["snapshot"]): Body {
    if (id >= this.#o.shardCount) throw new RangeError(`shard ${id} is outside 0..${this.#o.shardCount - 1}`);
    // Opening fences the shard's owner: a region that is closing must not take one.
    if (this.#closed) throw new Error(`this node is stopping; shard ${id} cannot start here`);
    this.#handedOff.delete(id);
    // A repeated start (its first answer was lost) must not replace newer state.
    if (!this.#shards.has(id)) {
      const snapshot = snapshotProto ? snapshotFromProto(snapshotProto) : undefined;
      const started = performance.now();
      this.#host(id, snapshot).ready.then(
        () => this.#o.observer?.shardMoved("in", (performance.now() - started) / 1000),
        () => {}, // Stopped before it was ready: it never arrived.
      );
      log.debug("shard {shard} starting here ({how})", {
        shard: id,
        how: this.#o.storage.durable
          ? "restoring from its changelog"
          : snapshot
          ? `${snapshot.entities.length} users, offset ${snapshot.lastOffset}`
          : "empty",
      });
    }
    this.#o.coordinator.setHome(id, this.#o.self);
    return { case: "shardStarted", value: create(ShardStartedSchema) };
  }

  /**
   * The coordinator's stop command, for a handoff. The write in flight ends
   * first; the state goes in the reply only when the storage is not durable
   * (the new home restores it otherwise). A repeated stop (the first reply was
   * lost) gets the same answer, for as long as the coordinator still asks:
   * expiring it would start the shard empty.
   */
  async stop(id: number): Promise<Body> {
    const hosted = this.#shards.get(id);
    this.#o.coordinator.forgetHome(id);
    // A stop wins over a reopen still waiting for the coordinator's answer, whatever that answer says:
    // it may have been given before this stop, and reopening after it would leave a stale copy here.
    const reclaim = this.#reclaims.get(id);
    if (reclaim) {
      reclaim.cancelled = true;
      log.info("shard {shard}: stopped here while its reopen waited; it is not reopened", { shard: id });
    }
    if (hosted) {
      const started = performance.now();
      this.#shards.delete(id);
      const closing = hosted.close();
      this.#stopping.set(id, closing);
      try {
        const snapshot = await closing;
        this.#handedOff.set(id, { snapshot, at: Date.now() });
        this.#o.observer?.shardMoved("out", (performance.now() - started) / 1000);
        log.debug("shard {shard} stopped here for handoff ({how})", {
          shard: id,
          how: snapshot ? `${snapshot.entities.length} users, offset ${snapshot.lastOffset}` : "its state is stored",
        });
      } finally {
        this.#stopping.delete(id);
      }
    }
    await this.#stopping.get(id);
    const kept = this.recentHandoffs();
    if (kept.has(id) && !hosted) this.#handedOff.set(id, { snapshot: kept.get(id), at: Date.now() });
    const snapshot = kept.get(id);
    return {
      case: "shardStopped",
      value: create(ShardStoppedSchema, {
        hosted: snapshot !== undefined,
        snapshot: snapshot && snapshotToProto(snapshot),
      }),
    };
  }

  #host(id: number, snapshot?: ShardSnapshot): ShardCopy {
    const hosted: ShardCopy = new ShardCopy(id, this.#o.storage, {
      broken: (error) => this.#broken(hosted, error),
      refused: (error) => this.#o.onRefused?.(error),
    }, snapshot);
    this.#shards.set(id, hosted);
    return hosted;
  }

  /**
   * A write of `hosted` failed: its memory is ahead of its store, so the copy
   * goes. If the coordinator still places the shard here, it is opened again,
   * which restores what the store holds. That holds for a fenced write too:
   * Kafka also fences a transaction it timed out itself, and the coordinator,
   * not the error, says who owns the shard. Reopening without asking could
   * fence the shard's rightful owner in turn.
   */
  #broken(hosted: ShardCopy, error: unknown): void {
    if (!this.#drop(hosted)) return;
    log.warn(
      "shard {shard}: a changelog write failed ({error}); its copy here is dropped, and it is reopened if the " +
        "coordinator still places it here",
      { shard: hosted.id, error: errorText(error) },
    );
    void this.#reclaim(hosted.id);
  }

  /**
   * This node's consumer took the shard's partition over and reads it from
   * `offset` on, as the group committed it. A copy here that has not applied
   * up to there was not the one that stored what the group committed:
   * another copy of the shard did, in the other half of a cluster that split
   * (gone since, or it would have given way), while this one sat here. Its
   * next write would be fenced, but until then it would answer queries from
   * behind the store, so it is dropped and reopened from the store. A gap the
   * consumer skipped (malformed records, transaction markers) costs a
   * restore, nothing more. Returns whether the copy was reopened.
   */
  reopenIfBehind(id: number, offset: number): boolean {
    const hosted = this.#shards.get(id);
    if (!hosted?.isReady || !this.#o.storage.durable || hosted.lastOffset >= offset - 1) return false;
    this.#drop(hosted);
    log.warn(
      "shard {shard}: this node consumes its partition from offset {offset} on, and its copy here has applied " +
        "up to {lastOffset} only: another copy stored the rest, so this one is reopened from the store",
      { shard: id, offset, lastOffset: hosted.lastOffset },
    );
    void this.#reclaim(id);
    return true;
  }

  /** Drops `hosted` if it is still this node's copy of its shard. */
  #drop(hosted: ShardCopy): boolean {
    const id = hosted.id;
    if (this.#shards.get(id) !== hosted) return false;
    this.#shards.delete(id);
    this.#o.coordinator.forgetHome(id);
    void hosted.close();
    return true;
  }

  async #reclaim(id: number): Promise<void> {
    const token = { cancelled: false };
    const earlier = this.#reclaims.get(id);
    if (earlier) earlier.cancelled = true;
    this.#reclaims.set(id, token);
    const over = () => token.cancelled || this.#closed || this.#shards.has(id);
    try {
      for (let pause = 250; !over(); pause = Math.min(2 * pause, 5000)) {
        try {
          this.#o.coordinator.forgetHome(id);
          const home = await this.#o.coordinator.resolve(id, this.#o.askTimeoutMs);
          if (over()) return;
          if (!sameNode(home, this.#o.self)) {
            log.info("shard {shard} lives on {home} now; not reopened here", { shard: id, home: home.address });
            return;
          }
          log.info("reopening shard {shard} here: the coordinator still places it on this node", { shard: id });
          this.#host(id);
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, pause));
        }
      }
    } finally {
      if (this.#reclaims.get(id) === token) this.#reclaims.delete(id);
    }
  }

  /** Stops every hosted shard (writes in flight end first) and the storage. */
  async close(): Promise<void> {
    this.#closed = true;
    const hosted = [...this.#shards.values()];
    this.#shards.clear();
    await Promise.all(hosted.map((shard) => shard.close()));
    await this.#o.storage.close();
  }
}

function notHere(shard: number): Body {
  return { case: "notHere", value: create(NotHereSchema, { shard }) };
}
