/**
 * A region's side of the coordinator: registering with whichever instance
 * runs now (node and epoch), asking where a shard lives (one question per
 * shard at a time, answers cached until a home says "not here"), and judging
 * whether a command comes from the authority this region registered with.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { GetShardHomeSchema, RegisterRegionSchema } from "../../proto/gen/cluster_pb.ts";
import { Refusal, RemotingError } from "../remoting/errors.ts";
import { nodeFromProto, type NodeId, sameNode } from "../remoting/node.ts";
import type { Transport } from "../remoting/transport.ts";
import type { ShardSnapshot } from "./shard.ts";
import { snapshotToProto } from "./sharding_codec.ts";

const log = getLogger(["usershard", "sharding"]);

/** How a {@linkcode CoordinatorClient} is set up. */
export interface CoordinatorClientOptions {
  readonly remoting: Transport;
  /** The node the coordinator runs on (the oldest member), when known. */
  readonly coordinator: () => NodeId | undefined;
  readonly shardCount: number;
  /** Whether this region keeps shard state durably; the coordinator refuses a region that differs from it. */
  readonly durableState: boolean;
  readonly askTimeoutMs: number;
  /** The coordinator forgets a request for a home after this long. */
  readonly waiterTtlMs: number;
  /** What this region tells the coordinator when it registers. */
  readonly claims: () => { shards: readonly number[]; handedOff: readonly ShardSnapshot[] };
}

/** One region's registration with, and questions to, the shard coordinator. */
export class CoordinatorClient {
  readonly #o: CoordinatorClientOptions;
  /** The coordinator instance that knows this region: its node and epoch. */
  #registeredWith: { readonly node: NodeId; readonly epoch: bigint } | undefined;
  #registering = false;
  readonly #homes = new Map<number, NodeId>();
  readonly #resolving = new Map<number, Promise<NodeId>>();

  constructor(options: CoordinatorClientOptions) {
    this.#o = options;
  }

  /** The coordinator's node, when known. */
  get coordinator(): NodeId | undefined {
    return this.#o.coordinator();
  }

  /** Whether the current coordinator knows this region. */
  get isRegistered(): boolean {
    const coordinator = this.#o.coordinator();
    return coordinator !== undefined && this.#registeredWith !== undefined &&
      sameNode(this.#registeredWith.node, coordinator);
  }

  /**
   * Registers with the current coordinator if it does not know this region
   * yet. Resolves with an error message when the coordinator refuses (a
   * different shard count or --state): the node cannot work in this cluster.
   */
  async register(): Promise<string | undefined> {
    const coordinator = this.#o.coordinator();
    if (!coordinator || this.isRegistered || this.#registering) return undefined;
    this.#registering = true;
    try {
      const { shards, handedOff } = this.#o.claims();
      const reply = await this.#o.remoting.ask(coordinator, {
        case: "registerRegion",
        value: create(RegisterRegionSchema, {
          shardCount: this.#o.shardCount,
          durableState: this.#o.durableState,
          shards: [...shards],
          handedOff: handedOff.map(snapshotToProto),
        }),
      }, this.#o.askTimeoutMs);
      if (!sameNode(reply.from, coordinator)) return undefined;
      if (reply.body.case === "regionRegistered") {
        this.#registeredWith = { node: coordinator, epoch: reply.body.value.epoch };
        log.info("shard region registered with the coordinator on {coordinator} ({shards} shards here)", {
          coordinator: coordinator.address,
          shards: shards.length,
        });
      }
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (error instanceof RemotingError && error.refusal === Refusal.INCOMPATIBLE_NODE) return message;
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
   * Heard of coordinator epoch `epoch` on `from`. A newer instance than the
   * one this region registered with (the coordinator moved away and back, and
   * starts empty) must be told what is hosted here: registration starts over.
   */
  heardEpoch(from: NodeId, epoch: bigint): void {
    const registered = this.#registeredWith;
    if (registered && sameNode(registered.node, from) && epoch > registered.epoch) {
      log.info("the coordinator on {coordinator} restarted (epoch {epoch}); registering again", {
        coordinator: from.address,
        epoch: String(epoch),
      });
      this.#registeredWith = undefined;
    }
  }

  /**
   * Throws unless a command from `from` with `epoch` comes from the
   * coordinator this region registered with: its node and its epoch. A
   * deposed coordinator's late command must not move shards behind the new
   * one's back, and a new instance must first learn what is hosted here.
   */
  checkAuthority(from: NodeId, epoch: bigint): void {
    const coordinator = this.#o.coordinator();
    if (!coordinator || !sameNode(from, coordinator)) {
      throw new RemotingError(
        `${from.address} is not the shard coordinator this node knows`,
        Refusal.NOT_THE_COORDINATOR,
      );
    }
    this.heardEpoch(from, epoch);
    const registered = this.#registeredWith;
    if (!registered || !sameNode(registered.node, from) || registered.epoch !== epoch) {
      throw new RemotingError(
        `this region is not registered with coordinator epoch ${epoch} on ${from.address}` +
          (registered ? ` (it registered with epoch ${registered.epoch})` : ""),
        Refusal.WRONG_EPOCH,
      );
    }
  }

  /** Where `shard` was last known to live. */
  knownHome(shard: number): NodeId | undefined {
    return this.#homes.get(shard);
  }

  /** Remembers that `shard` lives at `home` (this node, once it started it). */
  setHome(shard: number, home: NodeId): void {
    this.#homes.set(shard, home);
  }

  /** Forgets where `shard` lives: the next lookup asks the coordinator. */
  forgetHome(shard: number): void {
    this.#homes.delete(shard);
  }

  /**
   * Asks the coordinator where `shard` lives; it answers once the shard runs
   * somewhere. Callers asking at once share one question.
   */
  resolve(shard: number, timeoutMs: number): Promise<NodeId> {
    const pending = this.#resolving.get(shard);
    if (pending) return pending;
    const coordinator = this.#o.coordinator();
    if (!coordinator) return Promise.reject(new RemotingError("no coordinator yet (this node is not in a cluster)"));
    // The coordinator forgets a request after its waiter TTL; waiting longer would only wait for nothing.
    const resolving = this.#o.remoting.ask(coordinator, {
      case: "getShardHome",
      value: create(GetShardHomeSchema, { shard }),
    }, Math.min(timeoutMs, this.#o.waiterTtlMs)).then((reply) => {
      if (reply.body.case === "registerFirst") {
        this.heardEpoch(reply.from, reply.body.value.epoch);
        void this.register();
        throw new RemotingError(`the coordinator on ${reply.from.address} does not know this region yet`);
      }
      if (reply.body.case !== "shardHome") throw new RemotingError(`unexpected answer ${reply.body.case}`);
      this.heardEpoch(reply.from, reply.body.value.epoch);
      const home = nodeFromProto(reply.body.value.node);
      this.#homes.set(shard, home);
      return home;
    }).finally(() => this.#resolving.delete(shard));
    this.#resolving.set(shard, resolving);
    return resolving;
  }
}
