/**
 * The thin loop around the membership state machine: it owns the remoting
 * connections and the clock, feeds ticks and messages in, carries the
 * resulting sends out, logs what happened in words an operator can follow, and
 * tells listeners (sharding, readiness) about member changes.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterTimings } from "../timings.ts";
import { liveMembers, oldestOf, reachabilityOf, TAKES_PART, unreachableMembers } from "./gossip.ts";
import { type Member } from "./members.ts";
import { type NodeId, sameNode } from "../remoting/node.ts";
import { Membership, type MembershipAction, type MembershipEvent, type RemovalReason } from "./membership.ts";
import { membershipFromBody, membershipToBody } from "./membership_codec.ts";
import { Remoting, type RemotingObserver } from "../remoting/remoting.ts";
import type { Body, Inbound, InboundHandler, Transport, TransportFactory } from "../remoting/transport.ts";

const log = getLogger(["usershard", "cluster"]);

const TICK_MS = 100;

/** How to start a {@linkcode ClusterNode}. */
export interface ClusterNodeOptions {
  readonly self: NodeId;
  readonly bindHost: string;
  readonly bindPort: number;
  readonly seeds: readonly string[];
  /** `host:port` of this node's management endpoint, shared with the other members. */
  readonly management?: string;
  readonly clusterName: string;
  readonly secret?: string;
  readonly timings: ClusterTimings;
  /** Hears of every frame to and from peers. */
  readonly remotingObserver?: RemotingObserver;
  /**
   * The transport to run on instead of TCP remoting on `bindHost:bindPort`
   * (the simulations' in-memory network); its node must be `self`.
   */
  readonly transport?: TransportFactory;
}

/** A point-in-time picture of the cluster, as this node sees it. */
export interface ClusterSnapshot {
  readonly self: NodeId;
  /** Members that are not Removed, in address order. */
  readonly members: readonly Member[];
  /** Members that were Removed lately (kept a while so stale gossip cannot revive them). */
  readonly removed: readonly Member[];
  readonly unreachable: readonly { node: NodeId; observers: readonly NodeId[] }[];
  readonly leader?: NodeId;
  readonly oldest?: NodeId;
}

/** One node's membership, running: remoting + state machine + timers. */
export class ClusterNode {
  readonly remoting: Transport;
  readonly #membership: Membership;
  readonly #timer: ReturnType<typeof setInterval>;
  readonly #listeners = new Set<(event: MembershipEvent) => void>();
  readonly #handlers = new Map<string, InboundHandler>();
  readonly #removed = Promise.withResolvers<RemovalReason>();
  readonly #clock = () => performance.now();

  private constructor(options: ClusterNodeOptions) {
    this.#membership = new Membership(
      { self: options.self, seeds: options.seeds, timings: options.timings, management: options.management },
      this.#clock(),
    );
    const handler: InboundHandler = (message, isRequest) => this.#receive(message, isRequest);
    this.remoting = options.transport ? options.transport(handler) : Remoting.start(
      {
        self: options.self,
        bindHost: options.bindHost,
        bindPort: options.bindPort,
        clusterName: options.clusterName,
        secret: options.secret,
        observer: options.remotingObserver,
      },
      handler,
    );
    this.#timer = setInterval(() => this.#step({ type: "tick", now: this.#clock() }), TICK_MS);
    log.info("node {self} (uid {uid}) starting; seeds {seeds}", {
      self: options.self.address,
      uid: options.self.uid,
      seeds: options.seeds.join(", "),
    });
  }

  /** Binds the remoting port (throws `BindError` when it cannot) and starts joining. */
  static start(options: ClusterNodeOptions): ClusterNode {
    return new ClusterNode(options);
  }

  /** This node's id. */
  get self(): NodeId {
    return this.#membership.self;
  }

  /** This node's own member entry, once joined. */
  get selfMember(): Member | undefined {
    return this.#membership.selfMember;
  }

  /**
   * Whether this node hears at least half of the members that take part:
   * false on the minority side of a cut, where the others will down it.
   */
  get hearsMajority(): boolean {
    return reachabilityOf(this.#membership.state, this.self).quorum;
  }

  /** How many of the members that take part this node hears, itself included, of how many. */
  heard(): { heard: number; of: number } {
    const state = this.#membership.state;
    const { unreachable } = reachabilityOf(state, this.self);
    const taking = liveMembers(state).filter((m) => TAKES_PART.includes(m.status));
    return { heard: taking.filter((m) => !unreachable.has(m.node.address)).length, of: taking.length };
  }

  /** Whether this node is an Up member. */
  get isUp(): boolean {
    return this.#membership.isMember && this.#membership.selfMember?.status === "Up";
  }

  /** Resolves when this node is no longer a member, with the reason. */
  get removed(): Promise<RemovalReason> {
    return this.#removed.promise;
  }

  /** The cluster as this node sees it now. */
  snapshot(): ClusterSnapshot {
    const state = this.#membership.state;
    return {
      self: this.self,
      members: liveMembers(state),
      removed: [...state.members.values()].filter((m) => m.status === "Removed"),
      unreachable: [...unreachableMembers(state).values()],
      leader: this.#membership.leader?.node,
      oldest: oldestOf(state)?.node,
    };
  }

  /** Calls `listener` with every membership event from now on; returns a function that stops it. */
  onEvent(listener: (event: MembershipEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Routes inbound messages of the given kinds to `handler` (for the parts built on membership). */
  handle(kinds: readonly NonNullable<Body["case"]>[], handler: InboundHandler): void {
    for (const kind of kinds) this.#handlers.set(kind, handler);
  }

  #receive(message: Inbound, isRequest: boolean): Body | undefined | Promise<Body | undefined> {
    const membershipMessage = membershipFromBody(message.body);
    if (membershipMessage) {
      this.#step({ type: "message", from: message.from, message: membershipMessage, now: this.#clock() });
      return undefined;
    }
    const handler = message.body.case ? this.#handlers.get(message.body.case) : undefined;
    if (!handler) throw new Error(`no handler for ${message.body.case ?? "an empty message"}`);
    return handler(message, isRequest);
  }

  #step(input: Parameters<Membership["step"]>[0]): void {
    const actions = this.#membership.step(input);
    for (const action of actions) this.#carryOut(action);
  }

  #carryOut(action: MembershipAction): void {
    if (action.type === "send") {
      this.remoting.tell(action.to, membershipToBody(action.message));
      return;
    }
    this.#describe(action.event);
    for (const listener of this.#listeners) {
      try {
        listener(action.event);
      } catch (error) {
        log.error("a membership listener failed: {error}", { error: String(error) });
      }
    }
    if (action.event.type === "selfRemoved") this.#removed.resolve(action.event.reason);
  }

  #describe(event: MembershipEvent): void {
    const self = this.self;
    const who = (node: NodeId) => sameNode(node, self) ? `this node (${node.address})` : `member ${node.address}`;
    switch (event.type) {
      case "formedCluster":
        log.info("no other seed is in a cluster; this node ({self}) formed a new cluster", { self: self.address });
        break;
      case "joiningVia":
        log.info("joining the cluster through seed {seed}", { seed: event.seed });
        break;
      case "joinTimedOut":
        log.warn("seed {seed} did not welcome this node in time; asking the seeds again", { seed: event.seed });
        break;
      case "seedsWaiting": {
        const parts = [];
        if (event.silent.length > 0) parts.push(`no seed reachable: ${event.silent.join(", ")}; retrying`);
        if (event.notInCluster.length > 0) {
          parts.push(
            `${event.notInCluster.join(", ")} answered but ${
              event.notInCluster.length > 1 ? "are" : "is"
            } not in a cluster either (only the first seed forms one)`,
          );
        }
        log.info("not in a cluster yet: {why}", { why: parts.join("; ") || "waiting for the seeds" });
        break;
      }
      case "memberStatus": {
        const { member } = event;
        const text = {
          Joining: "is joining",
          Up: "is Up",
          Leaving: "is leaving",
          Exiting: "is exiting",
          Down: "was downed",
          Removed: "was removed",
        }[member.status];
        const level = member.status === "Down" ? "warn" : "info";
        log[level]("{who} {text}", { who: who(member.node), text });
        break;
      }
      case "unreachable":
        log.warn("{who} is unreachable (observed by {observers})", {
          who: who(event.node),
          observers: event.observers.map((o) => o.address).join(", "),
        });
        break;
      case "reachable":
        log.info("{who} is reachable again", { who: who(event.node) });
        break;
      case "leaderChanged":
        log.info("leader is now {leader}", { leader: event.leader?.address ?? "nobody" });
        break;
      case "oldestChanged":
        log.info("oldest member is now {oldest}", { oldest: event.oldest?.address ?? "nobody" });
        break;
      case "metCluster":
        log.warn(
          "seed {via} is in another cluster ({theirs} members, oldest {theirsOldest}) than this node's " +
            "({mine}, oldest {mineOldest}): the cluster split in two; this node gives way and leaves to join it",
          {
            via: event.via,
            theirs: event.theirs.members,
            theirsOldest: event.theirs.oldest,
            mine: event.mine.members,
            mineOldest: event.mine.oldest,
          },
        );
        break;
      case "selfRemoved":
        if (event.reason === "downed") log.error("this node was downed by the rest of the cluster");
        else if (event.reason === "replaced") log.error("a newer incarnation of this node took over its address");
        else if (event.reason === "anotherCluster") log.error("this node left its cluster to join another one");
        else if (event.reason === "exitTimeout") {
          log.warn("the leader did not confirm the exit in time; leaving anyway");
        } else log.info("this node left the cluster");
        break;
    }
  }

  /** Marks this node Leaving: others stop giving it work while it hands off what it has. */
  startLeaving(): void {
    this.#step({ type: "leave", now: this.#clock() });
  }

  /**
   * Finishes a graceful leave: Exiting, then waits (bounded by the exit
   * timeout) until the leader has removed this node, and flushes the last
   * gossip. Call {@linkcode startLeaving} first and hand work off in between.
   */
  async exit(): Promise<RemovalReason> {
    this.#step({ type: "exit", now: this.#clock() });
    const reason = await this.removed;
    await Promise.race([this.remoting.flush(), new Promise((resolve) => setTimeout(resolve, 1000))]);
    return reason;
  }

  /** Stops timers and connections. */
  close(): void {
    clearInterval(this.#timer);
    this.remoting.close();
  }
}
