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
 * - The shards of a node that is gone (downed, removed, replaced) are lost
 *   with it and start empty elsewhere.
 *
 * @module
 */
import { type MemberStatus } from "../membership/members.ts";
import { compareAddresses, type NodeId, nodeKey, sameNode } from "../remoting/node.ts";
import type { ShardSnapshot } from "./shard.ts";

/** How long a new coordinator waits for regions to register before it allocates anyway. */
export const REGISTRATION_GRACE_MS = 10_000;

/** How long before a failed stop or start command is tried again. */
export const COMMAND_RETRY_MS = 1000;

/**
 * How long the shards of a leaving node wait for Kafka to hand its partitions
 * to another consumer (so they move once, straight there) before they go to
 * the least loaded node instead.
 */
export const LEAVING_GRACE_MS = 5000;

/**
 * How long a request for a shard's home is remembered. Askers give up long
 * before (their ask timeout) and ask again; forgetting keeps a shard that
 * stays homeless from piling up requests.
 */
export const WAITER_TTL_MS = 60_000;

/** One shard moving (or starting, when `from` is absent). */
export interface ShardMove {
  readonly shard: number;
  readonly from?: NodeId;
  readonly to: NodeId;
}

/** An input; every one carries the time. */
export type CoordinatorInput =
  | { readonly type: "members"; readonly members: readonly MemberInfo[]; readonly now: number }
  | {
    readonly type: "register";
    readonly region: NodeId;
    readonly shards: readonly number[];
    /** State of shards the region stopped for a handoff lately. */
    readonly handedOff?: readonly ShardSnapshot[];
    readonly shardCount: number;
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
    readonly now: number;
  }
  | { readonly type: "stopFailed"; readonly shard: number; readonly from: NodeId; readonly now: number }
  | { readonly type: "started"; readonly shard: number; readonly at: NodeId; readonly now: number }
  | { readonly type: "startFailed"; readonly shard: number; readonly at: NodeId; readonly now: number }
  | { readonly type: "tick"; readonly now: number };

/** A member as the coordinator needs it. */
export interface MemberInfo {
  readonly node: NodeId;
  readonly status: MemberStatus;
}

/** A command or a report. */
export type CoordinatorAction =
  | { readonly type: "registerReply"; readonly requestId: number; readonly error?: string }
  | { readonly type: "homeReply"; readonly requestId: number; readonly shard: number; readonly home: NodeId }
  | { readonly type: "stopShard"; readonly shard: number; readonly at: NodeId }
  | { readonly type: "startShard"; readonly shard: number; readonly at: NodeId; readonly snapshot?: ShardSnapshot }
  | { readonly type: "rebalanceStarted"; readonly moves: readonly ShardMove[] }
  | { readonly type: "rebalanceCompleted"; readonly shards: number; readonly ms: number }
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
  from: NodeId | undefined;
  to: NodeId;
  phase: "stopping" | "starting";
  snapshot: ShardSnapshot | undefined;
  inFlight: boolean;
  retryAt: number;
  readonly batch: Batch;
}

interface Batch {
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

  constructor(shardCount: number, now: number) {
    this.shardCount = shardCount;
    this.#since = now;
  }

  /** Whether the table has been rebuilt and the coordinator allocates. */
  get isActive(): boolean {
    return this.#active;
  }

  /** The current shard → node table (shards being moved are absent). */
  get allocation(): ReadonlyMap<number, NodeId> {
    return this.#allocation;
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
        break;
      case "register":
        this.#register(input.region, input.shards, input.shardCount, input.requestId, input.handedOff ?? []);
        break;
      case "getHome":
        this.#getHome(input.shard, input.requester, input.requestId, input.now);
        break;
      case "placement":
        this.#desired = input.desired;
        break;
      case "stopped":
        this.#stopped(input.shard, input.from, input.snapshot);
        break;
      case "stopFailed":
      case "startFailed": {
        const move = this.#moves.get(input.shard);
        const at = input.type === "stopFailed" ? input.from : input.at;
        const current = move && (move.phase === "stopping" ? move.from : move.to);
        if (move && current && sameNode(current, at)) {
          move.inFlight = false;
          move.retryAt = input.now + COMMAND_RETRY_MS;
        }
        break;
      }
      case "started":
        this.#started(input.shard, input.at, input.now);
        break;
      case "tick":
        for (const [shard, waiters] of this.#waiters) {
          const live = waiters.filter((w) => w.expires > input.now);
          if (live.length > 0) this.#waiters.set(shard, live);
          else this.#waiters.delete(shard);
        }
        break;
    }
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
    this.#members.clear();
    for (const m of members) {
      this.#members.set(m.node.address, m);
      const key = nodeKey(m.node);
      if (m.status !== "Leaving") this.#leavingSince.delete(key);
      else if (!this.#leavingSince.has(key)) this.#leavingSince.set(key, now);
    }
    for (const [key, region] of this.#regions) {
      if (this.#isAlive(region)) continue;
      this.#regions.delete(key);
      const lost = [...this.#allocation].filter(([, home]) => sameNode(home, region)).map(([shard]) => shard);
      for (const shard of lost) this.#allocation.delete(shard);
      if (lost.length > 0) this.#emit({ type: "shardsLost", shards: lost, region, clusterDown: !this.#anyStaying() });
    }
    for (const move of this.#moves.values()) {
      if (move.phase === "stopping" && move.from && !this.#isAlive(move.from)) {
        this.#emit({ type: "shardsLost", shards: [move.shard], region: move.from, clusterDown: !this.#anyStaying() });
        move.from = undefined;
        move.phase = "starting";
        move.inFlight = false;
        move.retryAt = 0;
      }
    }
    for (const [shard, waiters] of this.#waiters) {
      this.#waiters.set(shard, waiters.filter((w) => this.#isAlive(w.requester)));
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

  #register(
    region: NodeId,
    shards: readonly number[],
    shardCount: number,
    requestId: number,
    handedOff: readonly ShardSnapshot[],
  ): void {
    if (shardCount !== this.shardCount) {
      this.#emit({
        type: "registerReply",
        requestId,
        error: `this cluster has ${this.shardCount} shards (partitions of its topic) but ${region.address} ` +
          `has ${shardCount}; nodes with different counts cannot work together`,
      });
      return;
    }
    // Once registered, a region changes its shards only on this coordinator's commands, which the
    // table follows; a repeated registration may be older than the last of them (its first reply
    // was lost), so it may add claims but not take any away.
    const repeated = this.#regions.has(nodeKey(region));
    this.#regions.set(nodeKey(region), region);
    const claimed = new Set(shards);
    for (const [shard, home] of this.#allocation) {
      if (repeated || !sameNode(home, region) || claimed.has(shard) || this.#moves.has(shard)) continue;
      this.#allocation.delete(shard);
    }
    for (const shard of claimed) {
      if (shard < 0 || shard >= this.shardCount) continue;
      const home = this.#allocation.get(shard);
      const move = this.#moves.get(shard);
      if ((home && !sameNode(home, region) && this.#isAlive(home)) || (move && !sameNode(move.to, region))) {
        const kept = home ?? move!.to;
        this.#emit({ type: "conflict", shard, kept, dropped: region });
        this.#emit({ type: "stopShard", shard, at: region });
        continue;
      }
      if (!move) {
        this.#allocation.set(shard, region);
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
    const graceOver = now - this.#since >= REGISTRATION_GRACE_MS;
    if (this.#members.size === 0 || (missing.length > 0 && !graceOver)) return;
    this.#active = true;
    this.#emit({ type: "activated", regions: this.#regions.size, shards: this.#allocation.size, missing });
  }

  /**
   * Whether every Up or Leaving member's region has registered. Until then a
   * shard that is nowhere in the table may still run on an unregistered node,
   * so none is started fresh (moves of known shards go on).
   */
  #allRegistered(): boolean {
    return [...this.#members.values()].every((m) =>
      (m.status !== "Up" && m.status !== "Leaving") || this.#regions.has(nodeKey(m.node))
    );
  }

  #getHome(shard: number, requester: NodeId, requestId: number, now: number): void {
    const waiters = this.#waiters.get(shard) ?? [];
    waiters.push({ requestId, requester, expires: now + WAITER_TTL_MS });
    this.#waiters.set(shard, waiters);
    if (!this.#active || this.#allocation.has(shard) || this.#moves.has(shard)) return;
    if (!this.#orphans.has(shard) && !this.#allRegistered()) return;
    const to = this.#desiredHome(shard) ?? this.#fallbackHome(requester);
    if (to) this.#beginMoves([{ shard, to }], now);
  }

  /** Whether any member is joining or Up, and so could take shards now or soon. */
  #anyStaying(): boolean {
    return [...this.#members.values()].some((m) => m.status === "Up" || m.status === "Joining");
  }

  #answerWaiters(): void {
    for (const [shard, waiters] of this.#waiters) {
      const home = this.#allocation.get(shard);
      if (!home || this.#moves.has(shard)) continue;
      for (const w of waiters) this.#emit({ type: "homeReply", requestId: w.requestId, shard, home });
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
    const load = new Map<string, number>();
    for (const home of this.#allocation.values()) load.set(nodeKey(home), (load.get(nodeKey(home)) ?? 0) + 1);
    for (const move of this.#moves.values()) load.set(nodeKey(move.to), (load.get(nodeKey(move.to)) ?? 0) + 1);
    return [...this.#regions.values()]
      .filter((r) => this.#isUsable(r) && !(except && sameNode(except, r)))
      .sort((a, b) =>
        (load.get(nodeKey(a)) ?? 0) - (load.get(nodeKey(b)) ?? 0) || compareAddresses(a.address, b.address)
      )[0];
  }

  #reconcile(now: number): void {
    const moves: { shard: number; from?: NodeId; to: NodeId }[] = [];
    const mayStartFresh = this.#allRegistered();
    for (let shard = 0; shard < this.shardCount; shard++) {
      if (this.#moves.has(shard)) continue;
      const home = this.#allocation.get(shard);
      const desired = this.#desiredHome(shard);
      if (!home) {
        if (!mayStartFresh && !this.#orphans.has(shard)) continue;
        const to = desired ?? (this.#orphans.has(shard) ? this.#fallbackHome() : undefined);
        if (to) moves.push({ shard, to });
        continue;
      }
      if (this.#statusOf(home) === "Leaving") {
        const waited = now - (this.#leavingSince.get(nodeKey(home)) ?? now) >= LEAVING_GRACE_MS;
        const to = desired && !sameNode(desired, home)
          ? desired
          : waited
          ? this.#fallbackHome(undefined, home)
          : undefined;
        if (to) moves.push({ shard, from: home, to });
      } else if (desired && !sameNode(desired, home)) {
        moves.push({ shard, from: home, to: desired });
      }
    }
    for (const move of this.#moves.values()) {
      // A target that went away before it started the shard: pick another.
      if (move.phase === "starting" && !move.inFlight && !this.#isAlive(move.to)) {
        const to = this.#desiredHome(move.shard) ?? this.#fallbackHome();
        if (to) move.to = to;
      }
    }
    if (moves.length > 0) this.#beginMoves(moves, now);
  }

  #beginMoves(moves: readonly { shard: number; from?: NodeId; to: NodeId }[], now: number): void {
    const batch: Batch = { startedAt: now, remaining: moves.length, size: moves.length };
    for (const { shard, from, to } of moves) {
      this.#allocation.delete(shard);
      this.#moves.set(shard, {
        shard,
        from,
        to,
        phase: from ? "stopping" : "starting",
        snapshot: from ? undefined : this.#orphans.get(shard),
        inFlight: false,
        retryAt: 0,
        batch,
      });
    }
    this.#emit({ type: "rebalanceStarted", moves: moves.map((m) => ({ ...m })) });
  }

  #issue(now: number): void {
    for (const move of this.#moves.values()) {
      if (move.inFlight || move.retryAt > now) continue;
      move.inFlight = true;
      if (move.phase === "stopping" && move.from) {
        this.#emit({ type: "stopShard", shard: move.shard, at: move.from });
      } else {
        this.#emit({ type: "startShard", shard: move.shard, at: move.to, snapshot: move.snapshot });
      }
    }
  }

  #stopped(shard: number, from: NodeId, snapshot: ShardSnapshot | undefined): void {
    const move = this.#moves.get(shard);
    if (!move || move.phase !== "stopping" || !move.from || !sameNode(move.from, from)) return;
    move.phase = "starting";
    move.snapshot = snapshot ?? this.#orphans.get(shard);
    move.inFlight = false;
    move.retryAt = 0;
    if (move.snapshot) this.#orphans.set(shard, move.snapshot);
  }

  #started(shard: number, at: NodeId, now: number): void {
    const move = this.#moves.get(shard);
    if (!move || move.phase !== "starting" || !sameNode(move.to, at)) return;
    this.#moves.delete(shard);
    this.#orphans.delete(shard);
    this.#allocation.set(shard, at);
    if (--move.batch.remaining === 0) {
      this.#emit({ type: "rebalanceCompleted", shards: move.batch.size, ms: now - move.batch.startedAt });
    }
  }
}
