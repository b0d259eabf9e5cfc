/**
 * The shard coordinator as a pure state machine: it owns the shard → node
 * table, and from members, region registrations and the desired placement
 * (which node's Kafka consumer has which partition) decides what moves where.
 * It returns commands (stop this shard there, start it here with this state)
 * and the caller carries them out and reports back. No sockets, no clock.
 *
 * Rules that keep a shard in one place (invariant 1 of ARCHITECTURE.md):
 * - A shard moves in two steps: the old home stops it and hands over its
 *   state; only then is the new home told to start it with that state.
 * - A coordinator that has just taken over allocates nothing until every Up
 *   or Leaving member's region has told it which shards it hosts (or a grace
 *   period has passed), so it cannot start a shard that still runs elsewhere.
 *   Even after the grace, a shard that is nowhere in its table starts neither
 *   empty nor from state a region handed off earlier while such a member has
 *   not registered: that member may run the shard, with newer state.
 * - Only live incarnations count: a region known to be gone cannot register,
 *   and a shard it reports started is started again elsewhere.
 * - A region's repeated registration claims nothing: it may be older than
 *   commands the region has carried out since.
 * - An answer counts only for the move's last command, which it names, so a
 *   duplicate or overtaken answer cannot end a move.
 * - The shards of a node that is gone (downed, removed, replaced) are lost
 *   with it and start empty elsewhere.
 *
 * A step costs in proportion to what its input changed, not to the number of
 * shards: all of them are looked at again only when members or registrations
 * change or a leaving node's grace ends.
 *
 * @module
 */
import { type MemberStatus } from "../membership/members.ts";
import { type NodeId, nodeKey, sameNode } from "../remoting/node.ts";
import { leastLoaded, targetOf } from "./allocation.ts";
import type { ShardSnapshot } from "./shard.ts";
import { DEFAULT_SHARDING_TIMINGS, type ShardingTimings } from "../timings.ts";

/** The coordinator's own timings (ARCHITECTURE.md, "Timing"). */
export type CoordinatorTimings = Pick<
  ShardingTimings,
  "registrationGraceMs" | "commandRetryMs" | "leavingGraceMs" | "waiterTtlMs"
>;

/** How long a new coordinator waits for regions to register before it moves known shards anyway. */
export const REGISTRATION_GRACE_MS = DEFAULT_SHARDING_TIMINGS.registrationGraceMs;

/** How long before a failed stop or start command is tried again. */
export const COMMAND_RETRY_MS = DEFAULT_SHARDING_TIMINGS.commandRetryMs;

/**
 * How long the shards of a leaving node wait for Kafka to hand its partitions
 * to another consumer (so they move once, straight there) before they go to
 * the least loaded node instead.
 */
export const LEAVING_GRACE_MS = DEFAULT_SHARDING_TIMINGS.leavingGraceMs;

/**
 * How long a request for a shard's home is remembered. Askers give up long
 * before (their ask timeout) and ask again; forgetting keeps a shard that
 * stays homeless from piling up requests.
 */
export const WAITER_TTL_MS = DEFAULT_SHARDING_TIMINGS.waiterTtlMs;

/** One shard moving (or starting, when `from` is absent). */
export interface ShardMove {
  readonly shard: number;
  readonly from?: NodeId;
  readonly to: NodeId;
}

/**
 * An input; every one carries the time. An answer names its command
 * (`command`, from the action): an answer to any other command — a
 * duplicate, or one a retry has overtaken — is ignored.
 */
export type CoordinatorInput =
  | { readonly type: "members"; readonly members: readonly MemberInfo[]; readonly now: number }
  | {
    readonly type: "register";
    readonly region: NodeId;
    readonly shards: readonly number[];
    /** State of shards the region stopped for a handoff lately. */
    readonly handedOff?: readonly ShardSnapshot[];
    readonly shardCount: number;
    /** Whether the region keeps shard state durably (`--state kafka`) rather than in memory only. */
    readonly durableState: boolean;
    readonly requestId: number;
    readonly now: number;
  }
  | {
    readonly type: "getHome";
    readonly shard: number;
    readonly requester: NodeId;
    readonly requestId: number;
    readonly now: number;
  }
  | { readonly type: "placement"; readonly desired: ReadonlyMap<number, string>; readonly now: number }
  | {
    readonly type: "stopped";
    readonly shard: number;
    readonly from: NodeId;
    readonly snapshot?: ShardSnapshot;
    readonly command: number;
    readonly now: number;
  }
  | {
    readonly type: "stopFailed";
    readonly shard: number;
    readonly from: NodeId;
    readonly command: number;
    readonly now: number;
  }
  | {
    readonly type: "started";
    readonly shard: number;
    readonly at: NodeId;
    readonly command: number;
    readonly now: number;
  }
  | {
    readonly type: "startFailed";
    readonly shard: number;
    readonly at: NodeId;
    readonly command: number;
    readonly now: number;
  }
  | { readonly type: "tick"; readonly now: number };

/** A member as the coordinator needs it. */
export interface MemberInfo {
  readonly node: NodeId;
  readonly status: MemberStatus;
}

/** A command or a report. Commands carry an id (`command`) for their answers to name. */
export type CoordinatorAction =
  | { readonly type: "registerReply"; readonly requestId: number; readonly error?: string }
  | { readonly type: "homeReply"; readonly requestId: number; readonly shard: number; readonly home: NodeId }
  /**
   * A request this instance will not answer: its region has not registered
   * with it (`registerFirst`: it must, before this instance can tell where
   * anything is), or it waited past its time or its asker is gone (`expired`).
   */
  | { readonly type: "requestRefused"; readonly requestId: number; readonly why: "registerFirst" | "expired" }
  /** A member whose region has not registered with this instance is told to. */
  | { readonly type: "callRegion"; readonly region: NodeId }
  | { readonly type: "stopShard"; readonly shard: number; readonly at: NodeId; readonly command: number }
  | {
    readonly type: "startShard";
    readonly shard: number;
    readonly at: NodeId;
    readonly snapshot?: ShardSnapshot;
    readonly command: number;
  }
  | { readonly type: "rebalanceStarted"; readonly rebalance: number; readonly moves: readonly ShardMove[] }
  | { readonly type: "rebalanceCompleted"; readonly rebalance: number; readonly shards: number; readonly ms: number }
  | {
    readonly type: "shardsLost";
    readonly shards: readonly number[];
    readonly region: NodeId;
    /** No member is joining or Up to take them: the whole cluster is stopping (or failing) with its state. */
    readonly clusterDown: boolean;
  }
  | {
    readonly type: "activated";
    readonly regions: number;
    readonly shards: number;
    readonly missing: readonly NodeId[];
  }
  | { readonly type: "conflict"; readonly shard: number; readonly kept: NodeId; readonly dropped: NodeId };

interface Move {
  readonly shard: number;
  /** Creation order: commands go out in it. */
  readonly seq: number;
  from: NodeId | undefined;
  to: NodeId;
  phase: "stopping" | "starting";
  snapshot: ShardSnapshot | undefined;
  inFlight: boolean;
  /** The id of the last command sent for this move. */
  command: number;
  retryAt: number;
  readonly rebalance: Rebalance;
}

/** A stop sent to a region that claimed a shard another node holds; repeated until it is answered. */
interface ConflictStop {
  readonly shard: number;
  readonly at: NodeId;
  command: number;
  inFlight: boolean;
  retryAt: number;
}

interface Rebalance {
  readonly id: number;
  readonly startedAt: number;
  remaining: number;
  readonly size: number;
}

interface Waiter {
  readonly requestId: number;
  readonly requester: NodeId;
  readonly expires: number;
}

/** The shard coordinator's decisions; runs on the oldest member. */
export class Coordinator {
  readonly shardCount: number;
  /** Whether this cluster's shards keep their state durably; a region that keeps it otherwise is refused. */
  readonly durableState: boolean;
  readonly #since: number;
  #active = false;
  #actions: CoordinatorAction[] = [];
  readonly #members = new Map<string, MemberInfo>();
  readonly #regions = new Map<string, NodeId>();
  readonly #allocation = new Map<number, NodeId>();
  readonly #moves = new Map<number, Move>();
  readonly #orphans = new Map<number, ShardSnapshot>();
  readonly #waiters = new Map<number, Waiter[]>();
  readonly #leavingSince = new Map<string, number>();
  #desired: ReadonlyMap<number, string> = new Map();
  #lastCommand = 0;
  #lastMove = 0;
  #lastRebalance = 0;
  /** Shards in the table or moving there, by node key: what the least loaded node is picked by. */
  readonly #load = new Map<string, number>();
  /** Members or registrations changed: every shard and move is looked at again. */
  #everything = true;
  /** Shards whose own situation changed (a new desired home, a move that ended, a request): looked at again. */
  readonly #touched = new Set<number>();
  /** Moves whose target may have to change: their command is no longer in flight. */
  readonly #retargetable = new Set<Move>();
  /** Moves whose command may be due to go out: not in flight. */
  readonly #unsent = new Set<Move>();
  /** When the earliest of the unsent moves' commands is due. */
  #nextIssue = Infinity;
  /** Time of the last look at every shard: a leaving node's grace ending after it calls for another. */
  #reconciledAt = -Infinity;
  /** Waiters of every shard may be answerable, not only of the touched ones. */
  #answerAll = true;
  /** Conflict stops not yet answered, by shard and region. */
  readonly #conflictStops = new Map<string, ConflictStop>();

  readonly #t: CoordinatorTimings;

  constructor(
    shardCount: number,
    now: number,
    timings: CoordinatorTimings = DEFAULT_SHARDING_TIMINGS,
    durableState = true,
  ) {
    this.shardCount = shardCount;
    this.durableState = durableState;
    this.#since = now;
    this.#t = timings;
  }

  /** Whether the table has been rebuilt and the coordinator allocates. */
  get isActive(): boolean {
    return this.#active;
  }

  /** The current shard → node table (shards being moved are absent). */
  get allocation(): ReadonlyMap<number, NodeId> {
    return this.#allocation;
  }

  /** The shards being moved or started, each with where from, where to and its step. */
  get moves(): readonly (ShardMove & { readonly phase: "stopping" | "starting" })[] {
    return [...this.#moves.values()].map(({ shard, from, to, phase }) => ({ shard, from, to, phase }));
  }

  /** How many shards are being moved or started. */
  get movesInFlight(): number {
    return this.#moves.size;
  }

  /** Applies one input; returns the commands and reports it leads to. */
  step(input: CoordinatorInput): CoordinatorAction[] {
    this.#actions = [];
    switch (input.type) {
      case "members":
        this.#setMembers(input.members, input.now);
        this.#answerAll = true;
        break;
      case "register":
        this.#register(input, input.handedOff ?? []);
        break;
      case "getHome":
        // A region that registered with an earlier instance (on this node, even) would wait for an answer
        // this one cannot give before it knows what that region hosts.
        if (!this.#regions.has(nodeKey(input.requester))) {
          this.#emit({ type: "requestRefused", requestId: input.requestId, why: "registerFirst" });
          break;
        }
        this.#getHome(input.shard, input.requester, input.requestId, input.now);
        this.#touched.add(input.shard);
        break;
      case "placement":
        for (let shard = 0; shard < this.shardCount; shard++) {
          if (input.desired.get(shard) !== this.#desired.get(shard)) this.#touched.add(shard);
        }
        this.#desired = input.desired;
        break;
      case "stopped":
        if (this.#conflictAnswered(input.shard, input.from, input.command, true, input.now)) break;
        this.#stopped(input.shard, input.from, input.snapshot, input.command);
        break;
      case "stopFailed":
        if (this.#conflictAnswered(input.shard, input.from, input.command, false, input.now)) break;
      // falls through: a move's stop failed
      case "startFailed": {
        const move = this.#answered(input.shard, input.command);
        const at = input.type === "stopFailed" ? input.from : input.at;
        const current = move && (move.phase === "stopping" ? move.from : move.to);
        if (move && current && sameNode(current, at)) {
          this.#unsend(move, input.now + this.#t.commandRetryMs);
          this.#retargetable.add(move);
        }
        break;
      }
      case "started":
        this.#started(input.shard, input.at, input.command, input.now);
        break;
      case "tick":
        this.#dropWaiters((w) => w.expires <= input.now);
        this.#callRegions();
        break;
    }
    this.#issueConflictStops(input.now);
    this.#maybeActivate(input.now);
    if (this.#active) {
      this.#reconcile(input.now);
      this.#issue(input.now);
      this.#answerWaiters();
    }
    return this.#actions;
  }

  #emit(action: CoordinatorAction): void {
    this.#actions.push(action);
  }

  #setMembers(members: readonly MemberInfo[], now: number): void {
    const before = new Map(this.#members);
    this.#members.clear();
    for (const m of members) {
      this.#members.set(m.node.address, m);
      const key = nodeKey(m.node);
      if (m.status !== "Leaving") this.#leavingSince.delete(key);
      else if (!this.#leavingSince.has(key)) this.#leavingSince.set(key, now);
    }
    const same = before.size === this.#members.size && [...this.#members].every(([address, m]) => {
      const was = before.get(address);
      return was !== undefined && sameNode(was.node, m.node) && was.status === m.status;
    });
    if (!same) this.#everything = true;
    for (const [key, region] of this.#regions) {
      if (this.#isAlive(region)) continue;
      this.#regions.delete(key);
      const lost = [...this.#allocation].filter(([, home]) => sameNode(home, region)).map(([shard]) => shard);
      for (const shard of lost) this.#unallocate(shard);
      if (lost.length > 0) this.#emit({ type: "shardsLost", shards: lost, region, clusterDown: !this.#anyStaying() });
    }
    for (const move of this.#moves.values()) {
      if (move.phase === "stopping" && move.from && !this.#isAlive(move.from)) {
        this.#emit({ type: "shardsLost", shards: [move.shard], region: move.from, clusterDown: !this.#anyStaying() });
        move.from = undefined;
        move.phase = "starting";
        this.#unsend(move, 0);
        this.#retargetable.add(move);
      }
    }
    this.#dropWaiters((w) => !this.#isAlive(w.requester));
    for (const [key, stop] of this.#conflictStops) if (!this.#isAlive(stop.at)) this.#conflictStops.delete(key);
  }

  /** Forgets the waiters `drop` picks, each answered as expired: its asker has given up, or is gone. */
  #dropWaiters(drop: (waiter: Waiter) => boolean): void {
    for (const [shard, waiters] of this.#waiters) {
      const kept = waiters.filter((w) => !drop(w));
      for (const w of waiters) {
        if (drop(w)) this.#emit({ type: "requestRefused", requestId: w.requestId, why: "expired" });
      }
      if (kept.length > 0) this.#waiters.set(shard, kept);
      else this.#waiters.delete(shard);
    }
  }

  /**
   * Tells every Up or Leaving member whose region this instance does not know
   * to register. A region registered with an earlier instance thinks it is
   * registered still, and one whose work is all local would never ask
   * anything that tells it otherwise; until it registers, no shard can start
   * fresh anywhere.
   */
  #callRegions(): void {
    for (const member of this.#members.values()) {
      if (member.status !== "Up" && member.status !== "Leaving") continue;
      if (!this.#regions.has(nodeKey(member.node))) this.#emit({ type: "callRegion", region: member.node });
    }
  }

  /** Alive unless its member entry says it is gone or was replaced by a newer incarnation. */
  #isAlive(node: NodeId): boolean {
    const member = this.#members.get(node.address);
    if (!member) return true;
    if (member.node.uid !== node.uid) return member.node.uid < node.uid;
    return member.status === "Joining" || member.status === "Up" || member.status === "Leaving";
  }

  #statusOf(node: NodeId): MemberStatus | undefined {
    const member = this.#members.get(node.address);
    return member && member.node.uid === node.uid ? member.status : undefined;
  }

  /** A region that may receive shards: registered and Up. */
  #isUsable(node: NodeId): boolean {
    return this.#regions.has(nodeKey(node)) && this.#statusOf(node) === "Up";
  }

  #register(input: Extract<CoordinatorInput, { type: "register" }>, handedOff: readonly ShardSnapshot[]): void {
    const { region, shards, shardCount, requestId } = input;
    if (shardCount !== this.shardCount) {
      this.#emit({
        type: "registerReply",
        requestId,
        error: `this cluster has ${this.shardCount} shards (partitions of its topic) but ${region.address} ` +
          `has ${shardCount}; nodes with different counts cannot work together`,
      });
      return;
    }
    if (input.durableState !== this.durableState) {
      const how = (durable: boolean) => durable ? "durably (--state kafka)" : "in memory only (--state memory)";
      this.#emit({
        type: "registerReply",
        requestId,
        error: `this cluster keeps shard state ${how(this.durableState)} but ${region.address} keeps it ` +
          `${how(input.durableState)}; nodes with different --state cannot work together (a move between them would ` +
          "drop or ignore state)",
      });
      return;
    }
    if (!this.#isAlive(region)) {
      // A late message from an incarnation whose loss was already handled: nothing would drop what it claims.
      this.#emit({
        type: "registerReply",
        requestId,
        error: `${region.address} (incarnation ${region.uid}) is no longer a member; it cannot host shards`,
      });
      return;
    }
    this.#everything = true;
    this.#answerAll = true;
    // Once registered, a region changes its shards only on this coordinator's commands, which the
    // table follows; a repeated registration may be older than the last of them (its first reply
    // was lost), so what it claims is history: it neither adds to the table nor takes from it.
    const repeated = this.#regions.has(nodeKey(region));
    this.#regions.set(nodeKey(region), region);
    const claimed = new Set(repeated ? [] : shards);
    for (const [shard, home] of this.#allocation) {
      if (repeated || !sameNode(home, region) || claimed.has(shard) || this.#moves.has(shard)) continue;
      this.#unallocate(shard);
    }
    for (const shard of claimed) {
      if (shard < 0 || shard >= this.shardCount) continue;
      const home = this.#allocation.get(shard);
      const move = this.#moves.get(shard);
      if ((home && !sameNode(home, region) && this.#isAlive(home)) || (move && !sameNode(move.to, region))) {
        const kept = home ?? move!.to;
        this.#emit({ type: "conflict", shard, kept, dropped: region });
        // Repeated until answered: the region may refuse the first while our registration reply is on its way.
        this.#conflictStops.set(`${shard}@${nodeKey(region)}`, {
          shard,
          at: region,
          command: 0,
          inFlight: false,
          retryAt: 0,
        });
        continue;
      }
      if (!move) {
        this.#allocate(shard, region);
        this.#orphans.delete(shard);
      }
    }
    // A handoff cut short (the reply lost, the coordinator gone) left the state
    // only with the old home: adopt it for when the shard starts again.
    for (const snapshot of handedOff) {
      const { shard } = snapshot;
      if (shard < 0 || shard >= this.shardCount || this.#allocation.has(shard)) continue;
      const known = this.#orphans.get(shard) ?? this.#moves.get(shard)?.snapshot;
      if (known && known.lastOffset >= snapshot.lastOffset) continue;
      this.#orphans.set(shard, snapshot);
      const move = this.#moves.get(shard);
      if (move && move.phase === "starting" && !move.inFlight) move.snapshot = snapshot;
    }
    this.#emit({ type: "registerReply", requestId });
  }

  #maybeActivate(now: number): void {
    if (this.#active) return;
    const missing = [...this.#members.values()]
      .filter((m) => (m.status === "Up" || m.status === "Leaving") && !this.#regions.has(nodeKey(m.node)))
      .map((m) => m.node);
    const graceOver = now - this.#since >= this.#t.registrationGraceMs;
    if (this.#members.size === 0 || (missing.length > 0 && !graceOver)) return;
    this.#active = true;
    this.#everything = true;
    this.#answerAll = true;
    this.#emit({ type: "activated", regions: this.#regions.size, shards: this.#allocation.size, missing });
  }

  /**
   * Whether every Up or Leaving member's region has registered. Until then a
   * shard that is nowhere in the table may still run on an unregistered node,
   * so none is started, not even from a snapshot handed off earlier: that node
   * may hold a newer copy (moves of known shards go on).
   */
  #allRegistered(): boolean {
    return [...this.#members.values()].every((m) =>
      (m.status !== "Up" && m.status !== "Leaving") || this.#regions.has(nodeKey(m.node))
    );
  }

  #getHome(shard: number, requester: NodeId, requestId: number, now: number): void {
    const waiters = this.#waiters.get(shard) ?? [];
    waiters.push({ requestId, requester, expires: now + this.#t.waiterTtlMs });
    this.#waiters.set(shard, waiters);
    if (!this.#active || this.#allocation.has(shard) || this.#moves.has(shard) || !this.#allRegistered()) return;
    const to = this.#desiredHome(shard) ?? this.#fallbackHome(requester);
    if (to) this.#beginMoves([{ shard, to }], now);
  }

  /** Whether any member is joining or Up, and so could take shards now or soon. */
  #anyStaying(): boolean {
    return [...this.#members.values()].some((m) => m.status === "Up" || m.status === "Joining");
  }

  /**
   * Answers the waiters of shards that run somewhere now. Between inputs that
   * may make any shard answerable (members, registrations, activation), only
   * the shards the input touched can have become so.
   */
  #answerWaiters(): void {
    const shards = this.#answerAll ? [...this.#waiters.keys()] : [...this.#touched].filter((s) => this.#waiters.has(s));
    this.#answerAll = false;
    this.#touched.clear();
    for (const shard of shards) {
      const home = this.#allocation.get(shard);
      if (!home || this.#moves.has(shard)) continue;
      for (const w of this.#waiters.get(shard)!) this.#emit({ type: "homeReply", requestId: w.requestId, shard, home });
      this.#waiters.delete(shard);
    }
  }

  #desiredHome(shard: number): NodeId | undefined {
    const address = this.#desired.get(shard);
    if (address === undefined) return undefined;
    const member = this.#members.get(address);
    return member && this.#isUsable(member.node) ? member.node : undefined;
  }

  /** The requester if it can host, else the usable region with the fewest shards. */
  #fallbackHome(requester?: NodeId, except?: NodeId): NodeId | undefined {
    if (requester && this.#isUsable(requester) && !(except && sameNode(except, requester))) return requester;
    const usable = [...this.#regions.values()].filter((r) => this.#isUsable(r));
    return leastLoaded(usable, (node) => this.#load.get(nodeKey(node)) ?? 0, except);
  }

  #addLoad(node: NodeId, delta: number): void {
    const key = nodeKey(node);
    const load = (this.#load.get(key) ?? 0) + delta;
    if (load === 0) this.#load.delete(key);
    else this.#load.set(key, load);
  }

  #allocate(shard: number, node: NodeId): void {
    const home = this.#allocation.get(shard);
    if (home) this.#addLoad(home, -1);
    this.#allocation.set(shard, node);
    this.#addLoad(node, 1);
  }

  #unallocate(shard: number): void {
    const home = this.#allocation.get(shard);
    if (!home) return;
    this.#allocation.delete(shard);
    this.#addLoad(home, -1);
  }

  #retarget(move: Move, to: NodeId): void {
    this.#addLoad(move.to, -1);
    move.to = to;
    this.#addLoad(to, 1);
  }

  /**
   * Looks again at the shards and moves whose situation the inputs since the
   * last look changed: every one when members or registrations changed or a
   * leaving node's grace ended, else the touched shards.
   */
  #reconcile(now: number): void {
    for (const since of this.#leavingSince.values()) {
      const graceEnds = since + this.#t.leavingGraceMs;
      if (graceEnds <= now && graceEnds > this.#reconciledAt) this.#everything = true;
    }
    const moves: { shard: number; from?: NodeId; to: NodeId }[] = [];
    if (this.#everything) {
      const mayStartFresh = this.#allRegistered();
      for (let shard = 0; shard < this.shardCount; shard++) this.#reconcileShard(shard, mayStartFresh, now, moves);
      for (const move of this.#moves.values()) this.#maybeRetarget(move);
      this.#everything = false;
      this.#reconciledAt = now;
    } else {
      if (this.#touched.size > 0) {
        const mayStartFresh = this.#allRegistered();
        const shards = [...this.#touched].sort((a, b) => a - b);
        for (const shard of shards) this.#reconcileShard(shard, mayStartFresh, now, moves);
      }
      for (const move of [...this.#retargetable].sort((a, b) => a.seq - b.seq)) this.#maybeRetarget(move);
    }
    this.#retargetable.clear();
    if (moves.length > 0) this.#beginMoves(moves, now);
  }

  /** Adds the move `shard` needs, if any, to `moves`. */
  #reconcileShard(
    shard: number,
    mayStartFresh: boolean,
    now: number,
    moves: { shard: number; from?: NodeId; to: NodeId }[],
  ): void {
    if (shard < 0 || shard >= this.shardCount || this.#moves.has(shard)) return;
    const home = this.#allocation.get(shard);
    const leavingSince = home && this.#statusOf(home) === "Leaving"
      ? this.#leavingSince.get(nodeKey(home)) ?? now
      : undefined;
    const to = targetOf({
      home,
      desired: this.#desiredHome(shard),
      homeLeaving: leavingSince === undefined
        ? undefined
        : now - leavingSince >= this.#t.leavingGraceMs
        ? "graceOver"
        : "waiting",
      mayStart: mayStartFresh,
      orphaned: this.#orphans.has(shard),
    }, (except) => this.#fallbackHome(undefined, except));
    if (to) moves.push(home ? { shard, from: home, to } : { shard, to });
  }

  /** A target that went away before it started the shard: pick another. */
  #maybeRetarget(move: Move): void {
    if (move.phase !== "starting" || move.inFlight || this.#isAlive(move.to)) return;
    const to = this.#desiredHome(move.shard) ?? this.#fallbackHome();
    if (to) this.#retarget(move, to);
  }

  #beginMoves(moves: readonly { shard: number; from?: NodeId; to: NodeId }[], now: number): void {
    const rebalance: Rebalance = {
      id: ++this.#lastRebalance,
      startedAt: now,
      remaining: moves.length,
      size: moves.length,
    };
    for (const { shard, from, to } of moves) {
      this.#unallocate(shard);
      const move: Move = {
        shard,
        seq: ++this.#lastMove,
        from,
        to,
        phase: from ? "stopping" : "starting",
        snapshot: from ? undefined : this.#orphans.get(shard),
        inFlight: false,
        command: 0,
        retryAt: 0,
        rebalance,
      };
      this.#moves.set(shard, move);
      this.#addLoad(to, 1);
      // The coordinator now wants the shard there: an older conflict's stop must not undo that.
      this.#conflictStops.delete(`${shard}@${nodeKey(to)}`);
      this.#unsend(move, 0);
    }
    this.#emit({ type: "rebalanceStarted", rebalance: rebalance.id, moves: moves.map((m) => ({ ...m })) });
  }

  #issueConflictStops(now: number): void {
    for (const stop of this.#conflictStops.values()) {
      if (stop.inFlight || stop.retryAt > now) continue;
      stop.inFlight = true;
      stop.command = ++this.#lastCommand;
      this.#emit({ type: "stopShard", shard: stop.shard, at: stop.at, command: stop.command });
    }
  }

  /** Whether a stop's answer is a conflict stop's: done when stopped, sent again later when it failed. */
  #conflictAnswered(shard: number, from: NodeId, command: number, ok: boolean, now: number): boolean {
    const key = `${shard}@${nodeKey(from)}`;
    const stop = this.#conflictStops.get(key);
    if (!stop || !stop.inFlight) return false;
    if (command !== stop.command) return false;
    if (ok) this.#conflictStops.delete(key);
    else {
      stop.inFlight = false;
      stop.retryAt = now + this.#t.commandRetryMs;
    }
    return true;
  }

  /** The move's command is not (or no longer) in flight: it goes out at `retryAt`. */
  #unsend(move: Move, retryAt: number): void {
    move.inFlight = false;
    move.retryAt = retryAt;
    this.#unsent.add(move);
    this.#nextIssue = Math.min(this.#nextIssue, retryAt);
  }

  #issue(now: number): void {
    if (this.#nextIssue > now) return;
    const due = [...this.#unsent].filter((m) => m.retryAt <= now).sort((a, b) => a.seq - b.seq);
    for (const move of due) {
      this.#unsent.delete(move);
      move.inFlight = true;
      const command = move.command = ++this.#lastCommand;
      if (move.phase === "stopping" && move.from) {
        this.#emit({ type: "stopShard", shard: move.shard, at: move.from, command });
      } else {
        this.#emit({ type: "startShard", shard: move.shard, at: move.to, snapshot: move.snapshot, command });
      }
    }
    this.#nextIssue = Infinity;
    for (const move of this.#unsent) this.#nextIssue = Math.min(this.#nextIssue, move.retryAt);
  }

  /** The move an answer is for: none when the answer names a command other than the move's last. */
  #answered(shard: number, command: number): Move | undefined {
    const move = this.#moves.get(shard);
    return move && command === move.command ? move : undefined;
  }

  #stopped(shard: number, from: NodeId, snapshot: ShardSnapshot | undefined, command: number): void {
    const move = this.#answered(shard, command);
    if (!move || move.phase !== "stopping" || !move.from || !sameNode(move.from, from)) return;
    move.phase = "starting";
    move.snapshot = snapshot ?? this.#orphans.get(shard);
    this.#unsend(move, 0);
    this.#retargetable.add(move);
    if (move.snapshot) this.#orphans.set(shard, move.snapshot);
  }

  #started(shard: number, at: NodeId, command: number, now: number): void {
    const move = this.#answered(shard, command);
    if (!move || move.phase !== "starting" || !sameNode(move.to, at)) return;
    if (!this.#isAlive(at)) {
      // The answer came in after the news of the death: start the shard again elsewhere, with the same state.
      this.#unsend(move, 0);
      this.#retargetable.add(move);
      return;
    }
    this.#moves.delete(shard);
    this.#unsent.delete(move);
    this.#retargetable.delete(move);
    this.#addLoad(at, -1);
    this.#orphans.delete(shard);
    this.#allocate(shard, at);
    this.#touched.add(shard);
    if (--move.rebalance.remaining === 0) {
      this.#emit({
        type: "rebalanceCompleted",
        rebalance: move.rebalance.id,
        shards: move.rebalance.size,
        ms: now - move.rebalance.startedAt,
      });
    }
  }
}
