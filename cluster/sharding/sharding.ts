/**
 * Cluster sharding on one node: the shard region, the coordinator runner (active
 * only on the oldest member), and the glue to membership: registering the region
 * with whichever node runs the coordinator, telling the coordinator when the
 * Kafka assignment changed, handing shards off before the node leaves, and the
 * management route that lists this node's shards.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { AssignmentChangedSchema } from "../../proto/gen/cluster_pb.ts";
import type { ClusterNode } from "../membership/cluster_node.ts";
import {
  COORDINATOR_MESSAGES,
  CoordinatorRunner,
  type CoordinatorView,
  type PlacementSource,
} from "./coordinator_runner.ts";
import { sameNode } from "../remoting/node.ts";
import type { HostingObserver } from "./hosting.ts";
import { REGION_MESSAGES, ShardRegion } from "./region.ts";
import type { ShardStorage } from "./shard_storage.ts";
import { DEFAULT_SHARDING_TIMINGS, type ShardingTimings } from "../timings.ts";

const log = getLogger(["usershard", "sharding"]);

const TICK_MS = 500;

/** How sharding is set up on a node. */
export interface ShardingOptions {
  readonly node: ClusterNode;
  /** The sharding type name, shown in `/cluster/shards/{name}` (the consumer group's name). */
  readonly typeName: string;
  readonly shardCount: number;
  readonly askTimeoutMs: number;
  readonly placement: PlacementSource;
  readonly shardOf: (userId: string) => number;
  /** Where hosted shards keep their state. */
  readonly storage: ShardStorage;
  /** Sharding's grace periods, retries and memories; `askTimeoutMs` above wins over the one here. */
  readonly timings?: ShardingTimings;
  /** Hears of shards moving in and out of this node. */
  readonly observer?: HostingObserver;
}

/** Sharding on one node. */
export class Sharding {
  readonly region: ShardRegion;
  readonly #runner: CoordinatorRunner;
  readonly #o: ShardingOptions;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #fatal = Promise.withResolvers<string>();

  constructor(options: ShardingOptions) {
    this.#o = options;
    const { node } = options;
    const timings = options.timings ?? DEFAULT_SHARDING_TIMINGS;
    this.region = new ShardRegion({
      self: node.self,
      shardCount: options.shardCount,
      remoting: node.remoting,
      coordinator: () => node.snapshot().oldest,
      askTimeoutMs: options.askTimeoutMs,
      shardOf: options.shardOf,
      storage: options.storage,
      waiterTtlMs: timings.waiterTtlMs,
      handedOffTtlMs: timings.handedOffTtlMs,
      observer: options.observer,
      onRefused: (error) => this.#fatal.resolve(error.message),
    });
    this.#runner = new CoordinatorRunner({
      self: node.self,
      shardCount: options.shardCount,
      durableState: options.storage.durable,
      remoting: node.remoting,
      askTimeoutMs: options.askTimeoutMs,
      placement: options.placement,
      timings,
    });
    node.handle(REGION_MESSAGES, (message) => this.region.handle(message));
    node.handle(COORDINATOR_MESSAGES, (message) => this.#runner.handle(message));
    node.onEvent(() => this.#runner.update(node.snapshot()));
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /**
   * Resolves with a message when this node cannot take part: its shard count
   * differs from the cluster's, or a shard's stored state was refused.
   */
  get fatal(): Promise<string> {
    return this.#fatal.promise;
  }

  /** Up, and the coordinator knows this node's region. */
  isReady(): boolean {
    return this.#o.node.isUp && this.region.isRegistered;
  }

  /** Why {@linkcode isReady} is false. */
  notReadyReason(): string {
    if (!this.#o.node.isUp) return `this node is ${this.#o.node.selfMember?.status ?? "not in a cluster yet"}`;
    return "the shard region is not registered with the coordinator yet";
  }

  async #tick(): Promise<void> {
    if (!this.#o.node.isUp && this.#o.node.selfMember?.status !== "Leaving") return;
    const refusal = await this.region.register();
    if (refusal) this.#fatal.resolve(refusal);
  }

  /** Tells the coordinator that this node's Kafka assignment changed, so it reads the group again. */
  assignmentChanged(): void {
    const coordinator = this.#o.node.snapshot().oldest;
    if (coordinator) {
      this.#o.node.remoting.tell(coordinator, {
        case: "assignmentChanged",
        value: create(AssignmentChangedSchema),
      });
    }
  }

  /**
   * Waits until the coordinator has moved every shard off this node (the node
   * must be Leaving) and has no move in flight, or `timeoutMs` has passed.
   * With no other Up member to take them, there is nothing to wait for.
   */
  async handOff(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    // Only an Up member can take shards; when every other member is leaving too, nobody will.
    const others = () =>
      this.#o.node.snapshot().members.some((m) => !sameNode(m.node, this.#o.node.self) && m.status === "Up");
    const started = Date.now();
    const hostedAtStart = this.region.hostedCount;
    while (Date.now() < deadline) {
      if (!others()) {
        if (this.region.hostedCount > 0) {
          log.info("no other member is Up to take the {count} shards here; their state stops with this node", {
            count: this.region.hostedCount,
          });
        }
        return true;
      }
      if (this.region.hostedCount === 0 && this.#runner.movesInFlight === 0) {
        // Stopped here is not yet started there: the state may still be on its way.
        if (!await this.region.confirmHandoffs(deadline)) break;
        if (hostedAtStart > 0) {
          log.info("handed off {count} shards in {ms} ms", { count: hostedAtStart, ms: Date.now() - started });
        }
        return true;
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    log.warn("handoff not confirmed within {ms} ms ({count} shards still here); leaving anyway", {
      count: this.region.hostedCount,
      ms: timeoutMs,
    });
    return false;
  }

  /** The options it was set up with (the management routes read them). */
  get options(): ShardingOptions {
    return this.#o;
  }

  /** What the coordinator on this node is moving; `undefined` where it does not run. */
  get coordinatorView(): CoordinatorView | undefined {
    return this.#runner.view;
  }

  /** Stops timers, then every shard still hosted here (their writes in flight end first). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#runner.close();
    await this.region.close();
  }
}
