/**
 * Cluster membership as a pure state machine, in the manner of etcd's raft:
 * {@linkcode Membership.step} takes one input (a tick, a message from a peer,
 * a request to leave) with the current time, and returns what to do (messages
 * to send, events to report). It never touches a socket, a timer or the clock,
 * so tests drive whole clusters of it in memory.
 *
 * The rules:
 * - Joining: a node asks every other seed "are you in a cluster?" and joins
 *   through the first that says yes. Only the first seed in the list may form
 *   a new cluster, and only when no other seed said yes in time (two rounds
 *   at least, even when every other seed said no at once). An Up member
 *   tells every seed that is not in its cluster, unasked, that it is in one:
 *   seeds restarted while the cluster lives on in non-seed members join it
 *   rather than form a second cluster beside it.
 * - The view is gossiped and merged (see `gossip.ts`). Each node judges
 *   reachability for itself: it trusts its own failure detector and the
 *   reports of the observers that detector hears, never those of an observer
 *   it cannot hear (which may be dead, its last report stale for good).
 * - The leader, as a node sees it, is the lowest Up or Leaving address that no
 *   trusted observer reports unreachable (a Joining one when no Up or Leaving
 *   member can lead); the node itself is always a candidate, and an
 *   unreachable member never is. The node that sees itself
 *   lead moves Joining members Up unless a trusted observer reports them
 *   unreachable, and removes Down and Exiting ones.
 * - Downing: the leader downs a member that a strict majority of the trusted
 *   observers other than that member have reported unreachable for
 *   `downAfterMs` on end, and only while the members it counts reachable are
 *   at least half of the Joining, Up and Leaving ones. So a node cut off alone
 *   downs nobody, a link that fails one way does not get a member downed that
 *   the others hear, and a two-node cluster survives a crash. A downed member
 *   learns it when it is heard from again.
 * - Forgetting: a Removed member is dropped from the view `removedTtlMs`
 *   after it was removed, and its incarnation is remembered for a while
 *   longer (a tombstone): gossip about it is dropped, so peers that forget
 *   later cannot bring it back, and a message from it is answered with a view
 *   that shows it Removed, so a member cut off for longer than the TTL learns
 *   it is gone instead of being merged back. Its restart has a new uid and
 *   joins as usual.
 * - Failure detection: heartbeats to every active member; one unanswered for
 *   `unreachableAfterMs` makes the observer report it unreachable.
 * - Leaving: Up → Leaving (the caller hands work off) → Exiting (the caller is
 *   done) → Removed by the leader, and only then does the node stop.
 *
 * @module
 */
import type { ClusterTimings } from "../timings.ts";
import {
  EMPTY_GOSSIP,
  type GossipState,
  isMember,
  leaderOf,
  liveMembers,
  memberOf,
  mergeGossip,
  oldestOf,
  prune,
  type Reachability,
  reachabilityOf,
  sameGossip,
  TAKES_PART,
  unreachableMembers,
  withMember,
  withObservation,
  withoutIncarnations,
} from "./gossip.ts";
import { isActive, type Member, type MemberStatus, statusRank } from "./members.ts";
import { compareAddresses, type NodeId, nodeKey, sameNode } from "../remoting/node.ts";

/** What a member says of its cluster when it tells a seed that is not in it: which of two clusters is joined. */
export interface ClusterFigures {
  /** Members that take part (Joining, Up, Leaving). */
  readonly members: number;
  /** The address of the oldest member. */
  readonly oldest: string;
}

/**
 * Whether a cluster of `theirs` is the one that a member of a cluster of
 * `mine` must join: the larger one, and of two of a size the one whose oldest
 * member has the lower address. Both sides decide alike.
 *
 * @example
 * ```ts
 * joinsTheirs({ members: 1, oldest: "10.0.0.1:2551" }, { members: 2, oldest: "10.0.0.2:2551" }); // true
 * ```
 */
export function joinsTheirs(mine: ClusterFigures, theirs: ClusterFigures): boolean {
  if (theirs.members !== mine.members) return theirs.members > mine.members;
  return compareAddresses(theirs.oldest, mine.oldest) < 0;
}

/**
 * The cluster of `state` as `viewer` sees it: the members that take part and
 * that it hears, and the oldest of them. A member left alone with the others
 * dead (too few to down them) is a cluster of one.
 */
function figuresOf(state: GossipState, viewer: NodeId): ClusterFigures {
  const { unreachable } = reachabilityOf(state, viewer);
  const heard = liveMembers(state).filter((m) => TAKES_PART.includes(m.status) && !unreachable.has(m.node.address));
  // As oldestOf: a Joining member has no up-number yet, and is nobody's oldest.
  const oldest = heard.filter((m) => isActive(m.status))
    .sort((a, b) => a.upNumber - b.upNumber || compareAddresses(a.node.address, b.node.address))[0];
  return { members: heard.length, oldest: oldest?.node.address ?? viewer.address };
}

/** Whether two views have a member incarnation in common: views of one cluster always do (its oldest, at least). */
function shareAMember(a: GossipState, b: GossipState): boolean {
  return [...b.members.values()].some((m) => m.status !== "Removed" && memberOf(a, m.node) !== undefined);
}

/** What members say to each other about membership. */
export type MembershipMessage =
  | { readonly type: "initJoin" }
  | { readonly type: "initJoinAck"; readonly cluster?: ClusterFigures }
  | { readonly type: "initJoinNack" }
  | { readonly type: "join"; readonly management: string }
  | { readonly type: "welcome"; readonly state: GossipState }
  | { readonly type: "gossip"; readonly state: GossipState }
  | { readonly type: "heartbeat"; readonly sequence: number }
  | { readonly type: "heartbeatAck"; readonly sequence: number };

/** What happened, for logs and for the parts that follow membership (sharding). */
export type MembershipEvent =
  | { readonly type: "memberStatus"; readonly member: Member; readonly previous?: MemberStatus }
  | { readonly type: "unreachable"; readonly node: NodeId; readonly observers: readonly NodeId[] }
  | { readonly type: "reachable"; readonly node: NodeId }
  | { readonly type: "leaderChanged"; readonly leader?: NodeId }
  | { readonly type: "oldestChanged"; readonly oldest?: NodeId }
  | { readonly type: "seedsWaiting"; readonly silent: readonly string[]; readonly notInCluster: readonly string[] }
  | { readonly type: "joiningVia"; readonly seed: string }
  | { readonly type: "joinTimedOut"; readonly seed: string }
  | { readonly type: "formedCluster" }
  | {
    readonly type: "metCluster";
    readonly via: string;
    readonly theirs: ClusterFigures;
    readonly mine: ClusterFigures;
  }
  | { readonly type: "selfRemoved"; readonly reason: RemovalReason };

/** Why a node stopped being a member. */
export type RemovalReason = "left" | "downed" | "replaced" | "exitTimeout" | "anotherCluster";

/** What the caller must carry out after a step. */
export type MembershipAction =
  | { readonly type: "send"; readonly to: string; readonly message: MembershipMessage }
  | { readonly type: "event"; readonly event: MembershipEvent };

/** One input to the state machine; `now` is milliseconds on any monotonic clock. */
export type MembershipInput =
  | { readonly type: "tick"; readonly now: number }
  | { readonly type: "message"; readonly from: NodeId; readonly message: MembershipMessage; readonly now: number }
  | { readonly type: "leave"; readonly now: number }
  | { readonly type: "exit"; readonly now: number };

/** What a {@linkcode Membership} needs to know about itself. */
export interface MembershipConfig {
  readonly self: NodeId;
  /** `host:port` of this node's management endpoint, shared with the other members. */
  readonly management?: string;
  /** Seed addresses in order; the first may form a new cluster. */
  readonly seeds: readonly string[];
  readonly timings: ClusterTimings;
}

/**
 * How long a forgotten incarnation stays tombstoned: peers forget on their own
 * clocks, and a node cut off for hours must still not be merged back when it
 * returns. Uids are never reused, so a day of them costs a few bytes each.
 */
const TOMBSTONE_MS = 24 * 60 * 60 * 1000;
/** At most this many tombstones are kept; the oldest go first. */
const MAX_TOMBSTONES = 1000;

type Phase =
  | { readonly name: "discovering"; readonly since: number; lastRound: number; lastNotice: number; nacked: Set<string> }
  | { readonly name: "joining"; readonly via: string; readonly since: number }
  | { readonly name: "member" }
  | { readonly name: "gone" };

/** The membership state machine of one node. */
export class Membership {
  readonly #self: NodeId;
  readonly #management: string;
  readonly #seeds: readonly string[];
  readonly #t: ClusterTimings;
  #state: GossipState = EMPTY_GOSSIP;
  #phase: Phase;
  #actions: MembershipAction[] = [];
  // Failure detection: when each monitored incarnation was last heard from.
  readonly #heard = new Map<string, number>();
  #myUnreachable: NodeId[] = [];
  #observationVersion = 0;
  #heartbeatSequence = 0;
  #lastHeartbeat = -Infinity;
  // Gossip: whether the view changed since it was last sent to everyone.
  #changed = false;
  #lastGossip = -Infinity;
  #gossipCursor = 0;
  // Downing and removal bookkeeping, on this node's clock.
  readonly #downableSince = new Map<string, number>();
  readonly #downSince = new Map<string, number>();
  readonly #removedAt = new Map<string, number>();
  // Forgotten incarnations (`address#uid`) and when each tombstone expires, oldest first.
  readonly #tombstones = new Map<string, number>();
  // When each incarnation was last told that it (or a member it still counts) is gone.
  readonly #toldGone = new Map<string, number>();
  /** When each node of another cluster was last told of this one. */
  readonly #toldCluster = new Map<string, number>();
  #exitingSince: number | undefined;
  #lastSeedNotice = -Infinity;

  constructor(config: MembershipConfig, now: number) {
    this.#self = config.self;
    this.#management = config.management ?? "";
    this.#seeds = config.seeds;
    this.#t = config.timings;
    this.#phase = { name: "discovering", since: now, lastRound: -Infinity, lastNotice: now, nacked: new Set() };
  }

  /** The current view. */
  get state(): GossipState {
    return this.#state;
  }

  /** This node's id. */
  get self(): NodeId {
    return this.#self;
  }

  /** This node's own entry in the view, once it has joined. */
  get selfMember(): Member | undefined {
    return memberOf(this.#state, this.#self);
  }

  /** The leader as this node sees it (see `leaderOf`): the one whose duties it does when it is itself. */
  get leader(): Member | undefined {
    return leaderOf(this.#state, this.#self);
  }

  /** Whether the node is in a cluster (joined and not yet gone). */
  get isMember(): boolean {
    return this.#phase.name === "member";
  }

  /** Whether the node has left, or was removed from, the cluster. */
  get isGone(): boolean {
    return this.#phase.name === "gone";
  }

  /** Applies one input and returns what to do about it. */
  step(input: MembershipInput): MembershipAction[] {
    this.#actions = [];
    const before = this.#state;
    if (this.#phase.name !== "gone") {
      switch (input.type) {
        case "tick":
          this.#tick(input.now);
          break;
        case "message":
          this.#receive(input.from, input.message, input.now);
          break;
        case "leave":
          this.#leave();
          break;
        case "exit":
          this.#exit(input.now);
          break;
      }
    }
    if (!sameGossip(before, this.#state)) {
      this.#changed = true;
      this.#reportChanges(before, this.#state);
      this.#checkSelf();
    }
    return this.#actions;
  }

  #send(to: string, message: MembershipMessage): void {
    this.#actions.push({ type: "send", to, message });
  }

  #emit(event: MembershipEvent): void {
    this.#actions.push({ type: "event", event });
  }

  #tick(now: number): void {
    const phase = this.#phase;
    if (phase.name === "discovering") return this.#discover(phase, now);
    if (phase.name === "joining") {
      if (now - phase.since >= this.#t.joinTimeoutMs) {
        this.#emit({ type: "joinTimedOut", seed: phase.via });
        this.#phase = { name: "discovering", since: now, lastRound: -Infinity, lastNotice: now, nacked: new Set() };
      }
      return;
    }
    this.#detectFailures(now);
    const reachability = reachabilityOf(this.#state, this.#self);
    this.#trackDownable(reachability, now);
    if (this.#isLeader()) this.#leaderActions(reachability, now);
    this.#forgetRemoved(now);
    this.#expire(now);
    this.#gossip(now);
    this.#awaitRemoval(now);
    this.#tellAbsentSeeds(now);
  }

  /** Members that take part, and the oldest member's address: what this node tells of its cluster. */
  #figures(): ClusterFigures {
    return figuresOf(this.#state, this.#self);
  }

  /**
   * A member of another cluster told this seed of it. Two clusters cannot
   * merge their views, so the members of one leave to join the other: this
   * node leaves (and exits, to be started again) when its cluster is the one
   * to give way, else it tells the other cluster's member of this one, so that
   * it gives way.
   */
  #meetCluster(from: NodeId, theirs: ClusterFigures, now: number): void {
    const sender = memberOf(this.#state, from);
    if (sender && TAKES_PART.includes(sender.status)) return;
    const mine = this.#figures();
    if (!joinsTheirs(mine, theirs)) {
      // Once a gossip interval per node: two clusters that neither joins (alike in figures) would
      // otherwise answer each other without end.
      const key = nodeKey(from);
      if (now - (this.#toldCluster.get(key) ?? -Infinity) < this.#t.gossipIntervalMs) return;
      for (const [told, at] of this.#toldCluster) {
        if (now - at >= this.#t.gossipIntervalMs) this.#toldCluster.delete(told);
      }
      this.#toldCluster.set(key, now);
      return this.#send(from.address, { type: "initJoinAck", cluster: mine });
    }
    this.#emit({ type: "metCluster", via: from.address, theirs, mine });
    this.#gone("anotherCluster");
  }

  /**
   * An unasked "yes, in a cluster" to each seed that is not an active member
   * of this one, every `joinRetryIntervalMs`: a seed that is discovering joins
   * through this node (its `initJoinAck` rule), well before the first seed
   * would form a cluster of its own after `seedTimeoutMs`. A seed that is a
   * member somewhere takes no notice.
   */
  #tellAbsentSeeds(now: number): void {
    if (this.selfMember?.status !== "Up" || now - this.#lastSeedNotice < this.#t.joinRetryIntervalMs) return;
    this.#lastSeedNotice = now;
    const active = new Set(
      liveMembers(this.#state).filter((m) => TAKES_PART.includes(m.status)).map((m) => m.node.address),
    );
    const cluster = this.#figures();
    for (const seed of this.#otherSeeds()) if (!active.has(seed)) this.#send(seed, { type: "initJoinAck", cluster });
  }

  #otherSeeds(): string[] {
    return this.#seeds.filter((seed) => seed !== this.#self.address);
  }

  #discover(phase: Phase & { name: "discovering" }, now: number): void {
    const others = this.#otherSeeds();
    const isFirstSeed = this.#seeds[0] === this.#self.address;
    // Even when every other seed says no, a cluster may live on in members that are no seeds: they tell the
    // seeds so every joinRetryIntervalMs (#tellAbsentSeeds), so the first seed waits two of those first.
    const everyoneSaidNo = others.every((seed) => phase.nacked.has(seed)) &&
      now - phase.since >= 2 * this.#t.joinRetryIntervalMs;
    if (isFirstSeed && (everyoneSaidNo || now - phase.since >= this.#t.seedTimeoutMs)) {
      this.#state = withMember(EMPTY_GOSSIP, {
        node: this.#self,
        status: "Up",
        upNumber: 1,
        management: this.#management,
      });
      this.#phase = { name: "member" };
      this.#emit({ type: "formedCluster" });
      return;
    }
    if (now - phase.lastRound >= this.#t.joinRetryIntervalMs) {
      phase.lastRound = now;
      for (const seed of others) this.#send(seed, { type: "initJoin" });
    }
    if (now - phase.lastNotice >= this.#t.noticeIntervalMs) {
      phase.lastNotice = now;
      this.#emit({
        type: "seedsWaiting",
        silent: others.filter((seed) => !phase.nacked.has(seed)),
        notInCluster: others.filter((seed) => phase.nacked.has(seed)),
      });
    }
  }

  #receive(from: NodeId, message: MembershipMessage, now: number): void {
    const phase = this.#phase;
    if (this.#tombstones.has(nodeKey(from))) return this.#tellGone(from, [from], now);
    this.#markHeard(from, now);
    switch (message.type) {
      case "initJoin": {
        const status = this.selfMember?.status;
        const canTakeJoins = phase.name === "member" && (status === "Up" || status === "Joining");
        this.#send(from.address, { type: canTakeJoins ? "initJoinAck" : "initJoinNack" });
        return;
      }
      case "initJoinAck":
        if (phase.name === "member" && message.cluster) return this.#meetCluster(from, message.cluster, now);
        if (phase.name !== "discovering") return;
        this.#phase = { name: "joining", via: from.address, since: now };
        this.#send(from.address, { type: "join", management: this.#management });
        this.#emit({ type: "joiningVia", seed: from.address });
        return;
      case "initJoinNack":
        if (phase.name === "discovering") phase.nacked.add(from.address);
        return;
      case "join":
        return this.#admit(from, message.management, now);
      case "welcome":
      case "gossip":
        return this.#adopt(from, message.state, now);
      case "heartbeat":
        if (phase.name === "member") this.#send(from.address, { type: "heartbeatAck", sequence: message.sequence });
        return;
      case "heartbeatAck":
        return;
    }
  }

  #markHeard(from: NodeId, now: number): void {
    if (this.#heard.has(nodeKey(from))) this.#heard.set(nodeKey(from), now);
  }

  #admit(joiner: NodeId, management: string, now: number): void {
    const status = this.selfMember?.status;
    if (this.#phase.name !== "member" || (status !== "Up" && status !== "Joining")) return;
    const existing = this.#state.members.get(joiner.address);
    if (existing && existing.node.uid > joiner.uid) return; // a stale request from an older incarnation
    if (existing && existing.node.uid === joiner.uid && !isMember(this.#state, joiner)) {
      return this.#tellGone(joiner, [joiner], now);
    }
    if (!existing || existing.node.uid !== joiner.uid) {
      this.#state = withMember(this.#state, { node: joiner, status: "Joining", upNumber: 0, management });
      this.#heard.set(nodeKey(joiner), now);
    }
    this.#send(joiner.address, { type: "welcome", state: this.#state });
  }

  #adopt(from: NodeId, incoming: GossipState, now: number): void {
    const phase = this.#phase.name;
    const known = memberOf(this.#state, from);
    // A member that was downed while cut off (or frozen) learns it from the reply.
    if (known && !isMember(this.#state, from)) return this.#tellGone(from, [from], now);
    const older = this.#state.members.get(from.address);
    if (older && older.node.uid > from.uid) return;
    if (!isMember(incoming, from)) return;
    const forgotten = [...incoming.members.values()].filter((m) => this.#tombstones.has(nodeKey(m.node)));
    const fresh = forgotten.length === 0
      ? incoming
      : withoutIncarnations(incoming, (node) => this.#tombstones.has(nodeKey(node)));
    if (phase === "member") {
      // A view with nobody of this one in it is another cluster's (one that formed while the two could not
      // hear each other): merged, both clusters' shards would be hosted twice. One of them gives way instead.
      if (!known && !shareAMember(this.#state, fresh)) {
        return this.#meetCluster(from, figuresOf(fresh, from), now);
      }
      this.#state = mergeGossip(this.#state, fresh);
      // A peer that missed a removal would otherwise hold the member for good: nobody gossips it any more.
      const stillCounted = forgotten.filter((m) => m.status !== "Removed").map((m) => m.node);
      if (stillCounted.length > 0) this.#tellGone(from, stillCounted, now);
    } else if (phase !== "gone" && memberOf(fresh, this.#self)) {
      // A welcome, or gossip that shows this node was let in even if the welcome was lost.
      this.#state = mergeGossip(EMPTY_GOSSIP, fresh);
      this.#phase = { name: "member" };
    }
  }

  /**
   * Sends `to` this view with each of `gone` shown Removed (unless the view
   * holds a newer incarnation at its address). At most once a gossip interval
   * per recipient: two nodes that each hold the other gone would otherwise
   * answer each other without end.
   */
  #tellGone(to: NodeId, gone: readonly NodeId[], now: number): void {
    if (this.#phase.name !== "member") return;
    const key = nodeKey(to);
    if (now - (this.#toldGone.get(key) ?? -Infinity) < this.#t.gossipIntervalMs) return;
    this.#toldGone.set(key, now);
    let state = this.#state;
    for (const node of gone) {
      const current = state.members.get(node.address);
      if (!current || current.node.uid < node.uid) {
        state = withMember(state, { node, status: "Removed", upNumber: 0, management: "" });
      }
    }
    this.#send(to.address, { type: "gossip", state });
  }

  #checkSelf(): void {
    if (this.#phase.name !== "member") return;
    const entry = this.#state.members.get(this.#self.address);
    if (!entry) return;
    if (entry.node.uid !== this.#self.uid) return this.#gone("replaced");
    if (entry.status === "Removed") return this.#gone(this.#exitingSince === undefined ? "downed" : "left");
    if (entry.status === "Down") return this.#gone("downed");
  }

  #gone(reason: RemovalReason): void {
    this.#phase = { name: "gone" };
    this.#emit({ type: "selfRemoved", reason });
  }

  #isLeader(): boolean {
    const leader = this.leader;
    return leader !== undefined && sameNode(leader.node, this.#self);
  }

  #detectFailures(now: number): void {
    const monitored = liveMembers(this.#state).filter(
      (m) => !sameNode(m.node, this.#self) && (m.status === "Joining" || isActive(m.status)),
    );
    if (now - this.#lastHeartbeat >= this.#t.heartbeatIntervalMs) {
      this.#lastHeartbeat = now;
      this.#heartbeatSequence = (this.#heartbeatSequence + 1) >>> 0;
      for (const m of monitored) this.#send(m.node.address, { type: "heartbeat", sequence: this.#heartbeatSequence });
    }
    const monitoredKeys = new Set(monitored.map((m) => nodeKey(m.node)));
    for (const key of this.#heard.keys()) if (!monitoredKeys.has(key)) this.#heard.delete(key);
    const unreachable: NodeId[] = [];
    for (const m of monitored) {
      const key = nodeKey(m.node);
      if (!this.#heard.has(key)) this.#heard.set(key, now);
      if (now - this.#heard.get(key)! > this.#t.unreachableAfterMs) unreachable.push(m.node);
    }
    const same = unreachable.length === this.#myUnreachable.length &&
      unreachable.every((n, i) => sameNode(n, this.#myUnreachable[i]));
    if (same) return;
    this.#myUnreachable = unreachable;
    this.#observationVersion++;
    this.#state = withObservation(this.#state, {
      observer: this.#self,
      version: this.#observationVersion,
      unreachable,
    });
  }

  /** Starts or stops the clock of each member that is downable with a quorum; every node keeps it, leader or not. */
  #trackDownable(reachability: Reachability, now: number): void {
    const downable = new Set(reachability.quorum ? reachability.downable.map((m) => nodeKey(m.node)) : []);
    for (const key of this.#downableSince.keys()) if (!downable.has(key)) this.#downableSince.delete(key);
    for (const key of downable) if (!this.#downableSince.has(key)) this.#downableSince.set(key, now);
  }

  #leaderActions(reachability: Reachability, now: number): void {
    const members = liveMembers(this.#state);
    const { unreachable } = reachability;
    let highestUp = Math.max(0, ...[...this.#state.members.values()].map((m) => m.upNumber));
    for (const m of members) {
      const address = m.node.address;
      if (m.status === "Joining" && !unreachable.has(address)) {
        this.#state = withMember(this.#state, { ...m, status: "Up", upNumber: ++highestUp });
      } else if (m.status === "Exiting" && !sameNode(m.node, this.#self)) {
        this.#state = withMember(this.#state, { ...m, status: "Removed" });
        // It no longer gets gossip as a member; tell it directly that it may go.
        this.#send(address, { type: "gossip", state: this.#state });
      } else if (m.status === "Down") {
        const since = this.#downSince.get(address) ?? now;
        this.#downSince.set(address, since);
        // Down is gossiped for a moment first, so members see why it is going.
        if (now - since >= 2 * this.#t.gossipIntervalMs) {
          this.#state = withMember(this.#state, { ...m, status: "Removed" });
          this.#downSince.delete(address);
        }
      }
    }
    // A side that sees fewer than half of the members may be the one cut off: it must not down the rest.
    if (!reachability.quorum) return;
    for (const { node } of reachability.downable) {
      const key = nodeKey(node);
      const since = this.#downableSince.get(key);
      const member = memberOf(this.#state, node);
      if (!member || since === undefined || now - since < this.#t.downAfterMs) continue;
      this.#state = withMember(this.#state, { ...member, status: "Down" });
      this.#downableSince.delete(key);
    }
  }

  #forgetRemoved(now: number): void {
    for (const m of this.#state.members.values()) {
      if (m.status !== "Removed") {
        this.#removedAt.delete(m.node.address);
        continue;
      }
      const at = this.#removedAt.get(m.node.address) ?? now;
      this.#removedAt.set(m.node.address, at);
      if (now - at >= this.#t.removedTtlMs) {
        const members = new Map(this.#state.members);
        members.delete(m.node.address);
        this.#state = prune({ members, observations: this.#state.observations });
        this.#removedAt.delete(m.node.address);
        if (this.#tombstones.size >= MAX_TOMBSTONES) {
          const [oldest] = this.#tombstones.keys();
          this.#tombstones.delete(oldest);
        }
        this.#tombstones.set(nodeKey(m.node), now + Math.max(TOMBSTONE_MS, 5 * this.#t.removedTtlMs));
      }
    }
  }

  #expire(now: number): void {
    // Every tombstone lives as long, so the map is in order of expiry.
    for (const [key, expires] of this.#tombstones) {
      if (expires > now) break;
      this.#tombstones.delete(key);
    }
    for (const [key, at] of this.#toldGone) if (now - at >= this.#t.gossipIntervalMs) this.#toldGone.delete(key);
  }

  #gossipTargets(): string[] {
    return liveMembers(this.#state)
      .filter((m) => !sameNode(m.node, this.#self) && m.status !== "Down")
      .map((m) => m.node.address);
  }

  #gossip(now: number): void {
    if (now - this.#lastGossip < this.#t.gossipIntervalMs) return;
    this.#lastGossip = now;
    const targets = this.#gossipTargets();
    if (targets.length === 0) return;
    const chosen = this.#changed ? targets : [targets[this.#gossipCursor++ % targets.length]];
    this.#changed = false;
    for (const to of chosen) this.#send(to, { type: "gossip", state: this.#state });
  }

  #leave(): void {
    if (this.#phase.name !== "member") return this.#gone("left");
    const me = this.selfMember;
    if (me && (me.status === "Up" || me.status === "Joining")) {
      this.#state = withMember(this.#state, { ...me, status: "Leaving" });
    }
  }

  #exit(now: number): void {
    if (this.#phase.name !== "member") return this.#gone("left");
    const me = this.selfMember;
    if (!me || statusRank(me.status) >= statusRank("Exiting")) return;
    this.#exitingSince = now;
    this.#state = withMember(this.#state, { ...me, status: "Exiting" });
    const targets = this.#gossipTargets();
    if (targets.length === 0) return this.#gone("left");
    for (const to of targets) this.#send(to, { type: "gossip", state: this.#state });
  }

  #awaitRemoval(now: number): void {
    if (this.#exitingSince === undefined || this.#phase.name !== "member") return;
    const othersActive = liveMembers(this.#state).some((m) => !sameNode(m.node, this.#self) && isActive(m.status));
    if (!othersActive) return this.#gone("left");
    if (now - this.#exitingSince >= this.#t.exitTimeoutMs) this.#gone("exitTimeout");
  }

  #reportChanges(before: GossipState, after: GossipState): void {
    for (const [address, member] of after.members) {
      const previous = before.members.get(address);
      if (previous && previous.node.uid !== member.node.uid) {
        if (previous.status !== "Removed") {
          this.#emit({ type: "memberStatus", member: { ...previous, status: "Removed" }, previous: previous.status });
        }
        if (member.status !== "Removed") this.#emit({ type: "memberStatus", member });
      } else if (!previous) {
        if (member.status !== "Removed") this.#emit({ type: "memberStatus", member });
      } else if (previous.status !== member.status) {
        this.#emit({ type: "memberStatus", member, previous: previous.status });
      }
    }
    const wasUnreachable = unreachableMembers(before);
    const isUnreachable = unreachableMembers(after);
    for (const [address, entry] of isUnreachable) {
      if (!wasUnreachable.has(address)) {
        this.#emit({ type: "unreachable", node: entry.node, observers: entry.observers });
      }
    }
    for (const [address, entry] of wasUnreachable) {
      if (!isUnreachable.has(address) && isMember(after, entry.node)) {
        this.#emit({ type: "reachable", node: entry.node });
      }
    }
    const leaderBefore = leaderOf(before, this.#self)?.node;
    const leaderAfter = leaderOf(after, this.#self)?.node;
    if (!sameOptionalNode(leaderBefore, leaderAfter)) this.#emit({ type: "leaderChanged", leader: leaderAfter });
    const oldestBefore = oldestOf(before)?.node;
    const oldestAfter = oldestOf(after)?.node;
    if (!sameOptionalNode(oldestBefore, oldestAfter)) this.#emit({ type: "oldestChanged", oldest: oldestAfter });
  }
}

function sameOptionalNode(a: NodeId | undefined, b: NodeId | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && sameNode(a, b));
}
