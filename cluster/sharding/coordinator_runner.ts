/**
 * Runs the {@linkcode Coordinator} state machine on the oldest member: it
 * creates it when this node becomes the oldest and drops it when another
 * node does, answers regions' requests, carries out stop/start commands over
 * remoting, asks Kafka for the desired placement whenever a node reports an
 * assignment change (and every few seconds in case a report was missed), and
 * logs every rebalance so an operator can follow it.
 *
 * @module
 */
import { errorText } from "../error_text.ts";
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import {
  RegionRegisteredSchema,
  RegisterFirstSchema,
  ShardHomeSchema,
  StartShardSchema,
  StopShardSchema,
} from "../../proto/gen/cluster_pb.ts";
import type { ClusterSnapshot } from "../membership/cluster_node.ts";
import {
  Coordinator,
  type CoordinatorAction,
  type CoordinatorInput,
  type CoordinatorTimings,
  type MemberInfo,
} from "./coordinator.ts";
import { Refusal, RemotingError } from "../remoting/errors.ts";
import { type NodeId, nodeToProto, sameNode } from "../remoting/node.ts";
import type { Body, Inbound, Transport } from "../remoting/transport.ts";
import { snapshotFromProto, snapshotToProto } from "./sharding_codec.ts";

const log = getLogger(["usershard", "coordinator"]);

/** The message kinds the coordinator answers. */
export const COORDINATOR_MESSAGES = ["registerRegion", "getShardHome", "assignmentChanged"] as const;

/**
 * Where each partition is consumed: partition → `host:port` of the node whose
 * consumer has it; `undefined` while the consumer group is rebalancing.
 */
export type PlacementSource = () => Promise<ReadonlyMap<number, string> | undefined>;

/** How the runner is set up. */
export interface CoordinatorRunnerOptions {
  readonly self: NodeId;
  readonly shardCount: number;
  /** Whether this node keeps shard state durably: the cluster's way, which every region must share. */
  readonly durableState: boolean;
  readonly remoting: Transport;
  readonly askTimeoutMs: number;
  readonly placement: PlacementSource;
  /** How often the placement is read even without a report of a change. */
  readonly reconcileIntervalMs?: number;
  /**
   * Milliseconds on a monotonic clock (`performance.now()` by default, as
   * membership uses): the coordinator's grace periods must not jump with the
   * wall clock.
   */
  readonly clock?: () => number;
  /** The coordinator's grace periods and retries (ARCHITECTURE.md, "Timing"). */
  readonly timings?: CoordinatorTimings;
}

const TICK_MS = 500;
const UNSTABLE_RETRY_MS = 500;

/** One rebalance as the coordinator page shows it. */
export interface RebalanceRecord {
  /** The coordinator instance that ran it, and its number there. */
  readonly epoch: string;
  readonly rebalance: number;
  /** Wall-clock time it started, in epoch milliseconds (for display). */
  readonly startedAt: number;
  readonly moves: readonly { readonly shard: number; readonly from?: string; readonly to: string }[];
  /** How long it took, once every shard of it runs at its new home. */
  completedMs?: number;
}

/** What the coordinator on this node is doing, for operators. */
export interface CoordinatorView {
  readonly epoch: string;
  /** Whether it has rebuilt its table and allocates. */
  readonly active: boolean;
  readonly movesInFlight: readonly { shard: number; from?: string; to: string; phase: string }[];
  /** The last rebalances, newest last. */
  readonly rebalances: readonly RebalanceRecord[];
}

/** How many rebalances the view keeps. */
const REBALANCES_KEPT = 10;

interface Request {
  readonly resolve: (body: Body) => void;
  readonly reject: (error: Error) => void;
}

/** The coordinator's I/O loop on one node. */
export class CoordinatorRunner {
  readonly #o: CoordinatorRunnerOptions;
  #coordinator: Coordinator | undefined;
  readonly #requests = new Map<number, Request>();
  #nextRequest = 1;
  #members: MemberInfo[] = [];
  readonly #timer: ReturnType<typeof setInterval>;
  #placementRunning = false;
  #placementAgain = false;
  #placementTimer: ReturnType<typeof setTimeout> | undefined;
  #lastPlacement = 0;
  /** Which coordinator instance this node runs: every one gets a new epoch, carried by its messages. */
  #epoch = 0n;
  readonly #rebalances: RebalanceRecord[] = [];

  readonly #now: () => number;

  constructor(options: CoordinatorRunnerOptions) {
    this.#o = options;
    this.#now = options.clock ?? (() => performance.now());
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
  }

  /** Whether the coordinator runs on this node. */
  get isRunning(): boolean {
    return this.#coordinator !== undefined;
  }

  /** What the coordinator does, when it runs on this node. */
  get view(): CoordinatorView | undefined {
    const coordinator = this.#coordinator;
    if (!coordinator) return undefined;
    return {
      epoch: String(this.#epoch),
      active: coordinator.isActive,
      movesInFlight: coordinator.moves.map((m) => ({
        shard: m.shard,
        from: m.from?.address,
        to: m.to.address,
        phase: m.phase,
      })),
      rebalances: this.#rebalances,
    };
  }

  /** Whether the coordinator runs here and has rebuilt its table (it allocates). */
  get isActive(): boolean {
    return this.#coordinator?.isActive ?? false;
  }

  /** Shards being moved right now by this node's coordinator. */
  get movesInFlight(): number {
    return this.#coordinator?.movesInFlight ?? 0;
  }

  /** Follows the cluster view: runs the coordinator while this node is the oldest. */
  update(snapshot: ClusterSnapshot): void {
    // Removed members too: a region whose Down was never seen here must still count as gone.
    this.#members = [...snapshot.members, ...snapshot.removed].map((m) => ({ node: m.node, status: m.status }));
    const oldest = snapshot.oldest !== undefined && sameNode(snapshot.oldest, this.#o.self);
    if (oldest && !this.#coordinator) {
      log.info("this node is the oldest member: the shard coordinator runs here now (epoch {epoch})", {
        epoch: String(this.#epoch + 1n),
      });
      this.#epoch++;
      this.#coordinator = new Coordinator(this.#o.shardCount, this.#now(), this.#o.timings, this.#o.durableState);
      this.#refreshPlacement();
    } else if (!oldest && this.#coordinator) {
      log.info("the shard coordinator moved to {oldest}", { oldest: snapshot.oldest?.address ?? "nobody" });
      this.#coordinator = undefined;
      for (const request of this.#requests.values()) request.reject(new Error("the coordinator moved"));
      this.#requests.clear();
    }
    this.#feed({ type: "members", members: this.#members, now: this.#now() });
  }

  /** Answers a region's request (or takes an assignment-change report). */
  handle(message: Inbound): Promise<Body> | undefined {
    if (!this.#coordinator) throw new Error(`the shard coordinator does not run on ${this.#o.self.address}`);
    const { body, from } = message;
    const now = this.#now();
    switch (body.case) {
      case "assignmentChanged":
        this.#refreshPlacement();
        return undefined;
      case "registerRegion": {
        const { requestId, reply } = this.#request();
        this.#feed({
          type: "register",
          region: from,
          shards: body.value.shards,
          handedOff: body.value.handedOff.map(snapshotFromProto),
          shardCount: body.value.shardCount,
          durableState: body.value.durableState,
          requestId,
          now,
        });
        return reply;
      }
      case "getShardHome": {
        const { requestId, reply } = this.#request();
        this.#feed({ type: "getHome", shard: body.value.shard, requester: from, requestId, now });
        return reply;
      }
      default:
        throw new Error(`the coordinator does not handle ${body.case}`);
    }
  }

  /** A request the coordinator answers through an action that names `requestId`. */
  #request(): { requestId: number; reply: Promise<Body> } {
    const requestId = this.#nextRequest++;
    const reply = new Promise<Body>((resolve, reject) => this.#requests.set(requestId, { resolve, reject }));
    return { requestId, reply };
  }

  /** The request `requestId`, answered: no longer pending. */
  #answer(requestId: number): Request | undefined {
    const request = this.#requests.get(requestId);
    this.#requests.delete(requestId);
    return request;
  }

  #tick(): void {
    const now = this.#now();
    if (!this.#coordinator) return;
    if (now - this.#lastPlacement >= (this.#o.reconcileIntervalMs ?? 5000)) this.#refreshPlacement();
    this.#feed({ type: "tick", now });
  }

  #feed(input: CoordinatorInput): void {
    const coordinator = this.#coordinator;
    if (!coordinator) return;
    for (const action of coordinator.step(input)) this.#carryOut(coordinator, action);
  }

  #carryOut(coordinator: Coordinator, action: CoordinatorAction): void {
    switch (action.type) {
      case "registerReply": {
        const request = this.#answer(action.requestId);
        if (action.error) {
          log.error("refused a shard region: {error}", { error: action.error });
          request?.reject(new RemotingError(action.error, Refusal.INCOMPATIBLE_NODE));
        } else {
          request?.resolve({ case: "regionRegistered", value: create(RegionRegisteredSchema, { epoch: this.#epoch }) });
        }
        break;
      }
      case "requestRefused": {
        const request = this.#answer(action.requestId);
        if (action.why === "expired") request?.reject(new Error("no answer in time"));
        else request?.resolve({ case: "registerFirst", value: create(RegisterFirstSchema, { epoch: this.#epoch }) });
        break;
      }
      case "callRegion":
        this.#o.remoting.tell(action.region, {
          case: "registerFirst",
          value: create(RegisterFirstSchema, { epoch: this.#epoch }),
        });
        break;
      case "homeReply": {
        const request = this.#answer(action.requestId);
        request?.resolve({
          case: "shardHome",
          value: create(ShardHomeSchema, { shard: action.shard, node: nodeToProto(action.home), epoch: this.#epoch }),
        });
        break;
      }
      case "stopShard":
        this.#command(
          coordinator,
          action.at,
          {
            case: "stopShard",
            value: create(StopShardSchema, { shard: action.shard, epoch: this.#epoch }),
          },
          (reply) => {
            if (reply.case !== "shardStopped") {
              return {
                type: "stopFailed",
                shard: action.shard,
                from: action.at,
                command: action.command,
                now: this.#now(),
              };
            }
            const snapshot = reply.value.hosted && reply.value.snapshot
              ? snapshotFromProto(reply.value.snapshot)
              : undefined;
            return {
              type: "stopped",
              shard: action.shard,
              from: action.at,
              command: action.command,
              snapshot,
              now: this.#now(),
            };
          },
          () => ({
            type: "stopFailed",
            shard: action.shard,
            from: action.at,
            command: action.command,
            now: this.#now(),
          }),
        );
        break;
      case "startShard":
        this.#command(
          coordinator,
          action.at,
          {
            case: "startShard",
            value: create(StartShardSchema, {
              shard: action.shard,
              snapshot: action.snapshot ? snapshotToProto(action.snapshot) : undefined,
              epoch: this.#epoch,
            }),
          },
          (reply) =>
            reply.case === "shardStarted"
              ? { type: "started", shard: action.shard, at: action.at, command: action.command, now: this.#now() }
              : { type: "startFailed", shard: action.shard, at: action.at, command: action.command, now: this.#now() },
          () => ({
            type: "startFailed",
            shard: action.shard,
            at: action.at,
            command: action.command,
            now: this.#now(),
          }),
        );
        break;
      case "rebalanceStarted":
        this.#rebalances.push({
          epoch: String(this.#epoch),
          rebalance: action.rebalance,
          startedAt: Date.now(),
          moves: action.moves.map((m) => ({ shard: m.shard, from: m.from?.address, to: m.to.address })),
        });
        if (this.#rebalances.length > REBALANCES_KEPT) this.#rebalances.shift();
        log.info("rebalance started for {count} shards: {moves}", {
          count: action.moves.length,
          moves: describeMoves(action.moves),
        });
        break;
      case "rebalanceCompleted": {
        const record = this.#rebalances.find((r) =>
          r.rebalance === action.rebalance && r.epoch === String(this.#epoch)
        );
        if (record) record.completedMs = Math.round(action.ms);
        log.info("rebalance of {count} shards completed in {ms} ms", {
          count: action.shards,
          ms: Math.round(action.ms),
        });
        break;
      }
      case "shardsLost":
        if (action.clusterDown) {
          log.info("{count} shards of {region} stop with it: no member is joining or Up to take them", {
            count: action.shards.length,
            region: action.region.address,
          });
        } else {
          log.warn(
            "{count} shards were lost with {region}: [{shards}]; they restart on the next consumer of their " +
              "partitions, restored from the changelog (or empty, with --state memory)",
            { count: action.shards.length, region: action.region.address, shards: action.shards.join(",") },
          );
        }
        break;
      case "activated":
        log.info("shard coordinator active: {regions} regions registered, {shards} shards in place{missing}", {
          regions: action.regions,
          shards: action.shards,
          missing: action.missing.length > 0
            ? ` (gave up waiting for ${action.missing.map((n) => n.address).join(", ")})`
            : "",
        });
        break;
      case "conflict":
        log.error("shard {shard} was reported by both {kept} and {dropped}; keeping {kept}", {
          shard: action.shard,
          kept: action.kept.address,
          dropped: action.dropped.address,
        });
        break;
    }
  }

  #command(
    coordinator: Coordinator,
    at: NodeId,
    body: Body,
    onReply: (body: Body) => CoordinatorInput,
    onFailure: () => CoordinatorInput,
  ): void {
    // Addressed to the incarnation: a node restarted at that address refuses it.
    this.#o.remoting.ask(at, body, this.#o.askTimeoutMs).then(
      // The reply must come from the incarnation the command was for.
      (reply) => sameNode(reply.from, at) ? onReply(reply.body) : onFailure(),
      (error) => {
        // A move that cannot go on says why; the coordinator tries the command again.
        const shard = body.case === "stopShard" || body.case === "startShard" ? body.value.shard : "?";
        log.warn("{kind} of shard {shard} on {at} failed: {error}; trying again", {
          kind: body.case,
          shard,
          at: at.address,
          error: errorText(error),
        });
        return onFailure();
      },
    ).then((input) => {
      if (this.#coordinator === coordinator) this.#feed(input);
    }).catch((error) => {
      log.error("handling the result of {kind} failed: {error}", { kind: body.case, error: String(error) });
    });
  }

  #refreshPlacement(delayMs = 50): void {
    if (this.#placementRunning) {
      this.#placementAgain = true;
      return;
    }
    if (this.#placementTimer !== undefined) return;
    this.#placementTimer = setTimeout(() => {
      this.#placementTimer = undefined;
      this.#readPlacement();
    }, delayMs);
  }

  async #readPlacement(): Promise<void> {
    if (!this.#coordinator) return;
    this.#placementRunning = true;
    this.#lastPlacement = this.#now();
    let desired: ReadonlyMap<number, string> | undefined;
    try {
      desired = await this.#o.placement();
    } catch (error) {
      log.warn("could not read the consumer group's assignment: {error}", { error: String(error) });
    } finally {
      this.#placementRunning = false;
    }
    if (desired) this.#feed({ type: "placement", desired, now: this.#now() });
    if (this.#placementAgain || !desired) {
      this.#placementAgain = false;
      this.#refreshPlacement(desired ? 50 : UNSTABLE_RETRY_MS);
    }
  }

  /** Stops the timers. */
  close(): void {
    clearInterval(this.#timer);
    clearTimeout(this.#placementTimer);
    this.#coordinator = undefined;
    for (const request of this.#requests.values()) request.reject(new Error("shutting down"));
    this.#requests.clear();
  }
}

/**
 * Groups moves as "from → to: [shards]" for one log line.
 *
 * @example
 * ```ts
 * const a = { address: "127.0.0.1:2551", uid: 1 };
 * const b = { address: "127.0.0.1:2552", uid: 2 };
 * describeMoves([{ shard: 1, from: a, to: b }, { shard: 3, from: a, to: b }]);
 * // "127.0.0.1:2551 → 127.0.0.1:2552 [1,3]"
 * ```
 */
export function describeMoves(moves: readonly { shard: number; from?: NodeId; to: NodeId }[]): string {
  const groups = new Map<string, number[]>();
  for (const move of moves) {
    const key = `${move.from ? move.from.address : "new"} → ${move.to.address}`;
    groups.set(key, [...(groups.get(key) ?? []), move.shard]);
  }
  return [...groups].map(([key, shards]) => `${key} [${shards.join(",")}]`).join("; ");
}
