/**
 * The shard region of one node: it hosts this node's shards, and routes work
 * for any shard to wherever that shard lives — here without a network hop,
 * elsewhere over remoting. While a shard's home is unknown or moving, callers
 * wait (bounded): the coordinator answers "where is shard N?" only once the
 * shard runs somewhere, and a home that answers "not here" sends the caller
 * back to the coordinator.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import {
  ApplyEventsSchema,
  EventsAppliedSchema,
  GetShardHomeSchema,
  GetUserSchema,
  NotHereSchema,
  RegisterRegionSchema,
  ShardStartedSchema,
  ShardStoppedSchema,
  UserTotalsSchema,
} from "../../proto/gen/cluster_pb.ts";
import { WAITER_TTL_MS } from "./coordinator.ts";
import { NO_PURCHASES, type PurchaseEvent, type UserTotals } from "./entity.ts";
import { HostedShard } from "./hosted_shard.ts";
import { errorText } from "../error_text.ts";
import { nodeFromProto, type NodeId, sameNode } from "../remoting/node.ts";
import { RemotingError, within } from "../remoting/errors.ts";
import type { Body, Inbound, Remoting } from "../remoting/remoting.ts";
import type { ShardSnapshot } from "./shard.ts";
import type { ShardStorage } from "./shard_storage.ts";
import { eventsFromProto, eventsToProto, snapshotFromProto, snapshotToProto } from "./sharding_codec.ts";

const log = getLogger(["usershard", "sharding"]);

/**
 * Most requests that may wait at once for a shard whose home is unknown or
 * moving; past it, new ones fail at once instead of piling up in memory.
 */
export const MAX_WAITING = 10_000;

/** How long a region keeps the state of a shard it handed off, in case the handoff was cut short. */
export const HANDED_OFF_TTL_MS = 120_000;

/** Most events in one forwarded message: a batch for a remote shard goes in pieces this size. */
export const MAX_EVENTS_PER_MESSAGE = 2000;

/** The message kinds a region answers. */
export const REGION_MESSAGES = ["applyEvents", "getUser", "stopShard", "startShard"] as const;

/** A shard could not be reached in time. */
export class ShardUnavailableError extends Error {
  override name = "ShardUnavailableError";
}

/** What applying a batch of events achieved. */
export interface Delivery {
  readonly lastOffset: number;
  /** Whether the shard was hosted on this node (no network hop). */
  readonly local: boolean;
}

/** How a region is set up. */
export interface RegionOptions {
  readonly self: NodeId;
  readonly shardCount: number;
  readonly remoting: Remoting;
  /** The node the coordinator runs on (the oldest member), when known. */
  readonly coordinator: () => NodeId | undefined;
  /** How long an ask may take before it fails (10 s by default, `--ask-timeout`). */
  readonly askTimeoutMs: number;
  /** The shard of a user (the producer's partitioner, so shard == partition). */
  readonly shardOf: (userId: string) => number;
  /** Where hosted shards keep their state. */
  readonly storage: ShardStorage;
}

/** This node's shard region. */
export class ShardRegion {
  readonly #o: RegionOptions;
  readonly #shards = new Map<number, HostedShard>();
  /** Shards stopped here lately, with the state handed over when the storage is not durable. */
  readonly #handedOff = new Map<number, { snapshot: ShardSnapshot | undefined; at: number }>();
  readonly #homes = new Map<number, NodeId>();
  readonly #resolving = new Map<number, Promise<NodeId>>();
  #waiting = 0;
  /** The coordinator instance that knows this region: its node and epoch. */
  #registeredWith: { readonly node: NodeId; readonly epoch: bigint } | undefined;
  #registering = false;
  #closed = false;
  readonly #stopping = new Map<number, Promise<ShardSnapshot | undefined>>();

  constructor(options: RegionOptions) {
    this.#o = options;
  }

  /** Number of shards (= partitions of the topic). */
  get shardCount(): number {
    return this.#o.shardCount;
  }

  /** Whether the current coordinator knows this region. */
  get isRegistered(): boolean {
    const coordinator = this.#o.coordinator();
    return coordinator !== undefined && this.#registeredWith !== undefined &&
      sameNode(this.#registeredWith.node, coordinator);
  }

  /**
   * Heard of coordinator epoch `epoch` on `from`. A newer instance than the
   * one this region registered with (the coordinator moved away and back, and
   * starts empty) must be told what is hosted here: registration starts over.
   */
  #heardEpoch(from: NodeId, epoch: bigint): void {
    const registered = this.#registeredWith;
    if (registered && sameNode(registered.node, from) && epoch > registered.epoch) {
      log.info("the coordinator on {coordinator} restarted (epoch {epoch}); registering again", {
        coordinator: from.address,
        epoch: String(epoch),
      });
      this.#registeredWith = undefined;
    }
  }

  /** The shards hosted here with their entity counts, by shard id. */
  hostedShards(): { shardId: number; numEntities: number }[] {
    return [...this.#shards.values()]
      .map((s) => ({ shardId: s.id, numEntities: s.numEntities }))
      .sort((a, b) => a.shardId - b.shardId);
  }

  /** The state of a shard hosted here, `undefined` when it is not (or is still restoring). */
  shardState(shard: number): ShardSnapshot | undefined {
    return this.#shards.get(shard)?.snapshot();
  }

  /**
   * Resolves `true` once the coordinator reports a home for every shard this
   * region handed off lately (it answers only when the shard runs there), so
   * the state is surely out of this node; `false` if that takes past `deadline`.
   */
  async confirmHandoffs(deadline: number): Promise<boolean> {
    for (const shard of this.#recentHandoffs().keys()) {
      while (true) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) return false;
        try {
          this.#homes.delete(shard);
          const home = await this.#resolve(shard, remaining);
          if (!sameNode(home, this.#o.self)) break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }
    return true;
  }

  /** Shards handed off lately, with their state when it travels with them. */
  #recentHandoffs(): Map<number, ShardSnapshot | undefined> {
    const now = Date.now();
    for (const [id, entry] of this.#handedOff) if (now - entry.at > HANDED_OFF_TTL_MS) this.#handedOff.delete(id);
    return new Map([...this.#handedOff].map(([id, entry]) => [id, entry.snapshot]));
  }

  /** How many shards are hosted here. */
  get hostedCount(): number {
    return this.#shards.size;
  }

  /**
   * Registers with the current coordinator if it does not know this region
   * yet. Resolves with an error message when the coordinator refuses (a
   * different shard count): the node cannot work in this cluster.
   */
  async register(): Promise<string | undefined> {
    const coordinator = this.#o.coordinator();
    if (!coordinator || this.isRegistered || this.#registering) return undefined;
    this.#registering = true;
    try {
      const reply = await this.#o.remoting.ask(coordinator, {
        case: "registerRegion",
        value: create(RegisterRegionSchema, {
          shardCount: this.#o.shardCount,
          shards: [...this.#shards.keys()],
          handedOff: [...this.#recentHandoffs().values()].filter((s) => s !== undefined).map(snapshotToProto),
        }),
      }, this.#o.askTimeoutMs);
      if (!sameNode(reply.from, coordinator)) return undefined;
      if (reply.body.case === "regionRegistered") {
        this.#registeredWith = { node: coordinator, epoch: reply.body.value.epoch };
        log.info("shard region registered with the coordinator on {coordinator} ({shards} shards here)", {
          coordinator: coordinator.address,
          shards: this.#shards.size,
        });
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (/shards \(partitions of its topic\)/.test(message)) return message;
      log.debug("registering with {coordinator} failed: {message}; retrying", {
        coordinator: coordinator.address,
        message,
      });
    } finally {
      this.#registering = false;
    }
    return undefined;
  }

  /**
   * Applies one partition's events (in offset order) in the shard of that
   * partition, wherever it lives; resolves once the shard has applied them.
   */
  applyEvents(shard: number, events: readonly PurchaseEvent[]): Promise<Delivery> {
    return this.#route<Delivery>(shard, Date.now() + this.#o.askTimeoutMs, {
      local: async (s, deadline) => ({ lastOffset: (await s.apply(events, deadline)).lastOffset, local: true }),
      remote: async (home, timeoutMs) => {
        const deadline = Date.now() + timeoutMs;
        let lastOffset = -1;
        // In pieces, so that no frame nears the size limit; a home that answers "not here"
        // part way has the caller find the new home, which skips what was already applied.
        for (let from = 0; from < events.length; from += MAX_EVENTS_PER_MESSAGE) {
          const piece = events.slice(from, from + MAX_EVENTS_PER_MESSAGE);
          // To the incarnation the coordinator named: a node restarted at that address must not
          // acknowledge events for a shard it does not have (its copy would lose the conflict).
          const reply = await this.#o.remoting.ask(home, {
            case: "applyEvents",
            value: create(ApplyEventsSchema, { shard, events: eventsToProto(piece) }),
          }, Math.max(1, deadline - Date.now()));
          if (reply.body.case !== "eventsApplied") return undefined;
          lastOffset = Number(reply.body.value.lastOffset);
        }
        return { lastOffset, local: false };
      },
    });
  }

  /** A user's totals from the one live copy of the user, wherever it is. */
  userTotals(userId: string, timeoutMs: number = this.#o.askTimeoutMs): Promise<UserTotals> {
    const shard = this.#o.shardOf(userId);
    return this.#route<UserTotals>(shard, Date.now() + timeoutMs, {
      local: async (s) => (await s.get(userId)) ?? NO_PURCHASES,
      remote: async (home, remaining) => {
        const reply = await this.#o.remoting.ask(home, {
          case: "getUser",
          value: create(GetUserSchema, { userId, shard }),
        }, remaining);
        return reply.body.case === "userTotals"
          ? {
            totalPurchases: Number(reply.body.value.totalPurchases),
            amountSpent: Number(reply.body.value.amountSpent),
          }
          : undefined;
      },
    });
  }

  async #route<T>(shard: number, deadline: number, how: Routes<T>): Promise<T> {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.#o.shardCount) {
      throw new RangeError(`shard ${shard} is outside 0..${this.#o.shardCount - 1}`);
    }
    const hosted = this.#shards.get(shard);
    if (hosted?.isReady) return how.local(hosted, deadline);
    if (this.#waiting >= MAX_WAITING) {
      throw new ShardUnavailableError(`${MAX_WAITING} requests already wait for shard homes; try again shortly`);
    }
    this.#waiting++;
    try {
      return await this.#routeWaiting(shard, deadline, how);
    } finally {
      this.#waiting--;
    }
  }

  async #routeWaiting<T>(shard: number, deadline: number, how: Routes<T>): Promise<T> {
    let pause = 25;
    let last = "no home known";
    while (true) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new ShardUnavailableError(`shard ${shard} could not be reached in time (${last})`);
      }
      const hosted = this.#shards.get(shard);
      if (hosted) {
        try {
          return await within(how.local(hosted, deadline), remaining, `restoring shard ${shard}`);
        } catch (error) {
          // Restoring past the deadline, or stopped or broken meanwhile: ask where it is now.
          last = errorText(error);
          if (!(error instanceof RemotingError) && this.#shards.get(shard) === hosted) throw error;
          continue;
        }
      }
      try {
        // The lookup may be shared with an earlier caller whose deadline is later than this one's.
        const home = this.#homes.get(shard) ??
          await within(this.#resolve(shard, remaining), remaining, `finding the home of shard ${shard}`);
        if (!sameNode(home, this.#o.self)) {
          const result = await how.remote(home, Math.max(1, deadline - Date.now()));
          if (result !== undefined) return result;
          last = `${home.address} no longer hosts it`;
        } else {
          last = "it is starting here";
        }
      } catch (error) {
        last = error instanceof Error ? error.message : String(error);
        if (!(error instanceof RemotingError)) throw error;
      }
      this.#homes.delete(shard);
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, deadline - Date.now()))));
      pause = Math.min(pause * 2, 500);
    }
  }

  #resolve(shard: number, timeoutMs: number): Promise<NodeId> {
    const pending = this.#resolving.get(shard);
    if (pending) return pending;
    const coordinator = this.#o.coordinator();
    if (!coordinator) return Promise.reject(new RemotingError("no coordinator yet (this node is not in a cluster)"));
    // The coordinator forgets a request after WAITER_TTL_MS; waiting longer would only wait for nothing.
    const resolving = this.#o.remoting.ask(coordinator, {
      case: "getShardHome",
      value: create(GetShardHomeSchema, { shard }),
    }, Math.min(timeoutMs, WAITER_TTL_MS)).then((reply) => {
      if (reply.body.case === "registerFirst") {
        this.#heardEpoch(reply.from, reply.body.value.epoch);
        void this.register();
        throw new RemotingError(`the coordinator on ${reply.from.address} does not know this region yet`);
      }
      if (reply.body.case !== "shardHome") throw new RemotingError(`unexpected answer ${reply.body.case}`);
      this.#heardEpoch(reply.from, reply.body.value.epoch);
      const home = nodeFromProto(reply.body.value.node);
      this.#homes.set(shard, home);
      return home;
    }).finally(() => this.#resolving.delete(shard));
    this.#resolving.set(shard, resolving);
    return resolving;
  }

  /** Answers the region's messages from other nodes (and from the coordinator). */
  handle(message: Inbound): Body | Promise<Body> {
    const { body } = message;
    if (body.case === "stopShard" || body.case === "startShard") this.#checkAuthority(message.from, body.value.epoch);
    switch (body.case) {
      case "applyEvents": {
        const id = body.value.shard;
        const shard = this.#shards.get(id);
        if (!shard) return notHere(id);
        // A batch that waits here longer than any sender waits for it is refused rather than queued.
        return shard.apply(eventsFromProto(body.value.events), Date.now() + this.#o.askTimeoutMs).then(
          (result): Body => ({
            case: "eventsApplied",
            value: create(EventsAppliedSchema, { lastOffset: BigInt(result.lastOffset), applied: result.applied }),
          }),
          // Stopped or broken while the batch waited: the sender finds the shard's home again.
          () => notHere(id),
        );
      }
      case "getUser": {
        const { shard: id, userId } = body.value;
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
      case "stopShard":
        return this.#stop(body.value.shard);
      case "startShard": {
        const id = body.value.shard;
        if (id >= this.#o.shardCount) throw new RangeError(`shard ${id} is outside 0..${this.#o.shardCount - 1}`);
        // Opening fences the shard's owner: a region that is closing must not take one.
        if (this.#closed) throw new Error(`this node is stopping; shard ${id} cannot start here`);
        this.#handedOff.delete(id);
        // A repeated start (its first answer was lost) must not replace newer state.
        if (!this.#shards.has(id)) {
          const snapshot = body.value.snapshot ? snapshotFromProto(body.value.snapshot) : undefined;
          this.#host(id, snapshot);
          log.debug("shard {shard} starting here ({how})", {
            shard: id,
            how: this.#o.storage.durable
              ? "restoring from its changelog"
              : snapshot
              ? `${snapshot.entities.length} users, offset ${snapshot.lastOffset}`
              : "empty",
          });
        }
        this.#homes.set(id, this.#o.self);
        return { case: "shardStarted", value: create(ShardStartedSchema) };
      }
      default:
        throw new Error(`a shard region does not handle ${body.case}`);
    }
  }

  /**
   * Commands move shards, so they are taken only from the coordinator this
   * region registered with: its node and its epoch. A deposed coordinator's
   * late command must not move shards behind the new one's back, and a new
   * instance must first learn what is hosted here.
   */
  #checkAuthority(from: NodeId, epoch: bigint): void {
    const coordinator = this.#o.coordinator();
    if (!coordinator || !sameNode(from, coordinator)) {
      throw new Error(`${from.address} is not the shard coordinator this node knows`);
    }
    this.#heardEpoch(from, epoch);
    const registered = this.#registeredWith;
    if (!registered || !sameNode(registered.node, from) || registered.epoch !== epoch) {
      throw new Error(
        `this region is not registered with coordinator epoch ${epoch} on ${from.address}` +
          (registered ? ` (it registered with epoch ${registered.epoch})` : ""),
      );
    }
  }

  #host(id: number, snapshot?: ShardSnapshot): void {
    const hosted: HostedShard = new HostedShard(id, this.#o.storage, (error) => this.#broken(hosted, error), snapshot);
    this.#shards.set(id, hosted);
  }

  /**
   * Stops a shard for handoff. The write in flight ends first; the state goes
   * in the reply only when the storage is not durable (the new home restores
   * it otherwise). A repeated stop (the first reply was lost) gets the same
   * answer, for as long as the coordinator still asks: expiring it would
   * start the shard empty.
   */
  async #stop(id: number): Promise<Body> {
    const hosted = this.#shards.get(id);
    this.#homes.delete(id);
    if (hosted) {
      this.#shards.delete(id);
      const closing = hosted.close();
      this.#stopping.set(id, closing);
      try {
        const snapshot = await closing;
        this.#handedOff.set(id, { snapshot, at: Date.now() });
        log.debug("shard {shard} stopped here for handoff ({how})", {
          shard: id,
          how: snapshot ? `${snapshot.entities.length} users, offset ${snapshot.lastOffset}` : "its state is stored",
        });
      } finally {
        this.#stopping.delete(id);
      }
    }
    await this.#stopping.get(id);
    const kept = this.#recentHandoffs();
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

  /**
   * A write of `hosted` failed: its memory is ahead of its store, so the copy
   * goes. If the coordinator still places the shard here, it is opened again,
   * which restores what the store holds. That holds for a fenced write too:
   * Kafka also fences a transaction it timed out itself, and the coordinator,
   * not the error, says who owns the shard. Reopening without asking could
   * fence the shard's rightful owner in turn.
   */
  #broken(hosted: HostedShard, error: unknown): void {
    const id = hosted.id;
    if (this.#shards.get(id) !== hosted) return;
    this.#shards.delete(id);
    this.#homes.delete(id);
    void hosted.close();
    log.warn(
      "shard {shard}: a changelog write failed ({error}); its copy here is dropped, and it is reopened if the " +
        "coordinator still places it here",
      { shard: id, error: errorText(error) },
    );
    void this.#reclaim(id);
  }

  async #reclaim(id: number): Promise<void> {
    for (let pause = 250; !this.#closed && !this.#shards.has(id); pause = Math.min(2 * pause, 5000)) {
      try {
        this.#homes.delete(id);
        const home = await this.#resolve(id, this.#o.askTimeoutMs);
        if (this.#closed || this.#shards.has(id)) return;
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

/** How {@linkcode ShardRegion}'s routing reaches a shard: here, or at its home. */
interface Routes<T> {
  readonly local: (shard: HostedShard, deadline: number) => Promise<T>;
  readonly remote: (home: NodeId, timeoutMs: number) => Promise<T | undefined>;
}

function notHere(shard: number): Body {
  return { case: "notHere", value: create(NotHereSchema, { shard }) };
}
