/**
 * The shard region of one node: it routes work for any shard to wherever
 * that shard lives: here (`hosting.ts`) without a network hop, elsewhere over
 * remoting, addressed to the incarnation the coordinator named. While a
 * shard's home is unknown or moving, callers wait (bounded): the coordinator
 * answers "where is shard N?" only once the shard runs somewhere
 * (`coordinator_client.ts`), and a home that answers "not here" sends the
 * caller back to the coordinator.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { ApplyEventsSchema, GetUserSchema } from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";
import { RemotingError, within } from "../remoting/errors.ts";
import { type NodeId, sameNode } from "../remoting/node.ts";
import type { Body, Inbound, Transport } from "../remoting/transport.ts";
import { DEFAULT_SHARDING_TIMINGS } from "../timings.ts";
import { CoordinatorClient } from "./coordinator_client.ts";
import { NO_PURCHASES, type PurchaseEvent, type UserTotals } from "./entity.ts";
import type { ShardCopy } from "./shard_copy.ts";
import { type HostingObserver, ShardHosting } from "./hosting.ts";
import type { ShardSnapshot } from "./shard.ts";
import type { ShardStorage, StateRefusedError } from "./shard_storage.ts";
import { eventsToProto } from "./sharding_codec.ts";

/**
 * Most requests that may wait at once for a shard whose home is unknown or
 * moving; past it, new ones fail at once instead of piling up in memory.
 */
export const MAX_WAITING = 10_000;

/** Most events in one forwarded message: a batch for a remote shard goes in pieces this size. */
export const MAX_EVENTS_PER_MESSAGE = 2000;

/** The message kinds a region answers. */
export const REGION_MESSAGES = ["applyEvents", "getUser", "stopShard", "startShard", "registerFirst"] as const;

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
  readonly remoting: Transport;
  /** The node the coordinator runs on (the oldest member), when known. */
  readonly coordinator: () => NodeId | undefined;
  /** How long an ask may take before it fails (10 s by default, `--ask-timeout`). */
  readonly askTimeoutMs: number;
  /** The shard of a user (the producer's partitioner, so shard == partition). */
  readonly shardOf: (userId: string) => number;
  /** Where hosted shards keep their state. */
  readonly storage: ShardStorage;
  /** How long the coordinator remembers a request for a home (ARCHITECTURE.md, "Timing"). */
  readonly waiterTtlMs?: number;
  /** How long the state of a shard handed off is kept, in case the handoff was cut short. */
  readonly handedOffTtlMs?: number;
  /** Hears of shards moving in and out. */
  readonly observer?: HostingObserver;
  /** A shard's stored state was refused: the node cannot go on. */
  readonly onRefused?: (error: StateRefusedError) => void;
}

/** This node's shard region. */
export class ShardRegion {
  readonly #o: RegionOptions;
  readonly #coordinator: CoordinatorClient;
  readonly #hosting: ShardHosting;
  #waiting = 0;

  constructor(options: RegionOptions) {
    this.#o = options;
    this.#coordinator = new CoordinatorClient({
      remoting: options.remoting,
      coordinator: options.coordinator,
      shardCount: options.shardCount,
      durableState: options.storage.durable,
      askTimeoutMs: options.askTimeoutMs,
      waiterTtlMs: options.waiterTtlMs ?? DEFAULT_SHARDING_TIMINGS.waiterTtlMs,
      claims: () => ({
        shards: this.#hosting.ids(),
        handedOff: [...this.#hosting.recentHandoffs().values()].filter((s) => s !== undefined),
      }),
    });
    this.#hosting = new ShardHosting({
      self: options.self,
      shardCount: options.shardCount,
      storage: options.storage,
      coordinator: this.#coordinator,
      askTimeoutMs: options.askTimeoutMs,
      handedOffTtlMs: options.handedOffTtlMs ?? DEFAULT_SHARDING_TIMINGS.handedOffTtlMs,
      observer: options.observer,
      onRefused: options.onRefused,
    });
  }

  /** Number of shards (= partitions of the topic). */
  get shardCount(): number {
    return this.#o.shardCount;
  }

  /** Whether the current coordinator knows this region. */
  get isRegistered(): boolean {
    return this.#coordinator.isRegistered;
  }

  /**
   * Registers with the current coordinator if it does not know this region
   * yet. Resolves with an error message when the coordinator refuses (a
   * different shard count): the node cannot work in this cluster.
   */
  register(): Promise<string | undefined> {
    return this.#coordinator.register();
  }

  /** The shards hosted here with their entity counts, by shard id. */
  hostedShards(): { shardId: number; numEntities: number }[] {
    return this.#hosting.list();
  }

  /** The state of a shard hosted here, `undefined` when it is not (or is still restoring). */
  shardState(shard: number): ShardSnapshot | undefined {
    return this.#hosting.get(shard)?.snapshot();
  }

  /** How many shards are hosted here. */
  get hostedCount(): number {
    return this.#hosting.count;
  }

  /**
   * This node's consumer has taken partition `shard` over and reads it from
   * `offset`, the group's committed offset: a copy here that is behind it is
   * reopened from the store (`ShardHosting.reopenIfBehind` says why).
   */
  consumedFrom(shard: number, offset: number): boolean {
    return this.#hosting.reopenIfBehind(shard, offset);
  }

  /** Whether `shard` is hosted here (ready or still restoring). */
  hosts(shard: number): boolean {
    return this.#hosting.get(shard) !== undefined;
  }

  /**
   * Resolves `true` once the coordinator reports a home for every shard this
   * region handed off lately (it answers only when the shard runs there), so
   * the state is surely out of this node; `false` if that takes past `deadline`.
   */
  async confirmHandoffs(deadline: number): Promise<boolean> {
    for (const shard of this.#hosting.recentHandoffs().keys()) {
      while (true) {
        const remaining = deadline - Date.now();
        if (remaining <= 0) return false;
        try {
          this.#coordinator.forgetHome(shard);
          const home = await this.#coordinator.resolve(shard, remaining);
          if (!sameNode(home, this.#o.self)) break;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }
    }
    return true;
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

  /** The shard that holds `userId`. */
  shardOf(userId: string): number {
    return this.#o.shardOf(userId);
  }

  /**
   * A user's totals from the one live copy of the user, wherever it is;
   * `shard` when the caller has computed it already.
   */
  userTotals(
    userId: string,
    timeoutMs: number = this.#o.askTimeoutMs,
    shard: number = this.#o.shardOf(userId),
  ): Promise<UserTotals> {
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
    const hosted = this.#hosting.get(shard);
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
      const hosted = this.#hosting.get(shard);
      if (hosted) {
        try {
          return await within(how.local(hosted, deadline), remaining, `restoring shard ${shard}`);
        } catch (error) {
          // Restoring past the deadline, or stopped or broken meanwhile: ask where it is now.
          last = errorText(error);
          if (!(error instanceof RemotingError) && this.#hosting.get(shard) === hosted) throw error;
          continue;
        }
      }
      try {
        // The lookup may be shared with an earlier caller whose deadline is later than this one's.
        const home = this.#coordinator.knownHome(shard) ??
          await within(this.#coordinator.resolve(shard, remaining), remaining, `finding the home of shard ${shard}`);
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
      this.#coordinator.forgetHome(shard);
      await new Promise((resolve) => setTimeout(resolve, Math.min(pause, Math.max(0, deadline - Date.now()))));
      pause = Math.min(pause * 2, 500);
    }
  }

  /** Answers the region's messages from other nodes (and from the coordinator). */
  handle(message: Inbound): Body | Promise<Body> | undefined {
    const { body } = message;
    switch (body.case) {
      case "registerFirst":
        // A new coordinator instance calling for regions: register again if it is the one this region knew.
        this.#coordinator.heardEpoch(message.from, body.value.epoch);
        void this.#coordinator.register();
        return undefined;
      case "applyEvents":
        return this.#hosting.applyForwarded(body.value.shard, body.value.events);
      case "getUser":
        return this.#hosting.getForwarded(body.value.shard, body.value.userId);
      case "stopShard":
        this.#coordinator.checkAuthority(message.from, body.value.epoch);
        return this.#hosting.stop(body.value.shard);
      case "startShard":
        this.#coordinator.checkAuthority(message.from, body.value.epoch);
        return this.#hosting.start(body.value.shard, body.value.snapshot);
      default:
        throw new Error(`a shard region does not handle ${body.case}`);
    }
  }

  /** Stops every hosted shard (writes in flight end first) and the storage. */
  close(): Promise<void> {
    return this.#hosting.close();
  }
}

/** How {@linkcode ShardRegion}'s routing reaches a shard: here, or at its home. */
interface Routes<T> {
  readonly local: (shard: ShardCopy, deadline: number) => Promise<T>;
  readonly remote: (home: NodeId, timeoutMs: number) => Promise<T | undefined>;
}
