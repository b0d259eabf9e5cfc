/**
 * Every timing knob of a processor node in one place: membership's failure
 * detector, sharding's waits, and the Kafka clients', each with what it means,
 * and {@linkcode timingProblems}, the relations between them that
 * `usershard process` checks at start-up. Defaults suit a laptop or a small
 * LAN: failures are noticed in seconds, not minutes.
 *
 * How they relate (ARCHITECTURE.md, "Timing"):
 * - A member is marked unreachable only after several heartbeats went
 *   unanswered; Kafka evicts a consumer only after several of its heartbeats.
 * - An asker gives up before the coordinator forgets its request, so every
 *   answer has someone waiting for it.
 * - A leaving node waits long enough for Kafka to move its partitions (the
 *   leaving grace) and then for one more move of its shards.
 * - A region keeps a handed-off shard's state for as long as the coordinator
 *   may still repeat the stop whose reply was lost.
 *
 * @module
 */

/** Membership timings, in milliseconds. */
export interface ClusterTimings {
  /** How often each member sends a heartbeat to every other member. */
  readonly heartbeatIntervalMs: number;
  /** A member whose heartbeats go unanswered this long is marked unreachable. */
  readonly unreachableAfterMs: number;
  /** The leader downs a member that has been unreachable this long. */
  readonly downAfterMs: number;
  /** How often the view is gossiped (to all when it changed, else to one member in turn). */
  readonly gossipIntervalMs: number;
  /** The first seed forms a new cluster only after no other seed answered for this long. */
  readonly seedTimeoutMs: number;
  /** How often a node that is not in a cluster asks the seeds again. */
  readonly joinRetryIntervalMs: number;
  /** A join request that gets no welcome in this time is given up and discovery restarts. */
  readonly joinTimeoutMs: number;
  /** A leaving node waits this long for the leader to confirm its removal, then exits anyway. */
  readonly exitTimeoutMs: number;
  /** How long a Removed member is remembered, so stale gossip cannot bring it back. */
  readonly removedTtlMs: number;
  /** How often "why am I not joining" is logged while a node waits for seeds. */
  readonly noticeIntervalMs: number;
  /**
   * A node that must stop without a graceful leave (downed, or refused)
   * takes this long at most to leave the Kafka group and close; then it
   * exits anyway, so a supervisor can restart it.
   */
  readonly shutdownTimeoutMs: number;
}

/** The default timings. */
export const DEFAULT_TIMINGS: ClusterTimings = {
  heartbeatIntervalMs: 500,
  unreachableAfterMs: 3000,
  downAfterMs: 5000,
  gossipIntervalMs: 300,
  seedTimeoutMs: 3000,
  joinRetryIntervalMs: 1000,
  joinTimeoutMs: 5000,
  exitTimeoutMs: 3000,
  removedTtlMs: 60_000,
  noticeIntervalMs: 5000,
  shutdownTimeoutMs: 15_000,
};

/** Sharding timings, in milliseconds. */
export interface ShardingTimings {
  /** How long an event batch or a query may wait for its shard (`--ask-timeout`); also each command's wait. */
  readonly askTimeoutMs: number;
  /** How long a new coordinator waits for regions to register before it moves known shards anyway. */
  readonly registrationGraceMs: number;
  /** How long before a failed stop or start command is tried again. */
  readonly commandRetryMs: number;
  /**
   * How long the shards of a leaving node wait for Kafka to hand its
   * partitions to another consumer (so they move once, straight there) before
   * they go to the least loaded node instead.
   */
  readonly leavingGraceMs: number;
  /** How long the coordinator remembers a request for a shard's home. */
  readonly waiterTtlMs: number;
  /** How long a leaving node waits for its shards to be handed off (`--handoff-timeout`). */
  readonly handoffTimeoutMs: number;
  /** How long a region keeps the state of a shard it handed off, in case the handoff was cut short. */
  readonly handedOffTtlMs: number;
}

/** The Kafka clients' timings, in milliseconds. */
export interface KafkaTimings {
  /** The consumer group evicts a member silent this long. */
  readonly sessionTimeoutMs: number;
  /** How long the group waits for every member to rejoin in a rebalance. */
  readonly rebalanceTimeoutMs: number;
  /** How often the consumer heartbeats to the group. */
  readonly heartbeatIntervalMs: number;
  /** Kafka aborts a changelog transaction left open this long (a writer that froze mid-write). */
  readonly transactionTimeoutMs: number;
  /**
   * A changelog write (one transaction: its sends and its commit, retries
   * included) that has not finished after this long has failed: the shard's
   * copy is dropped and reopened, so a broker that stopped answering holds a
   * shard, and every move behind it, this long at most.
   */
  readonly changelogWriteTimeoutMs: number;
}

/** Every timing of a processor node. */
export interface NodeTimings {
  readonly membership: ClusterTimings;
  readonly sharding: ShardingTimings;
  readonly kafka: KafkaTimings;
}

/** The default sharding timings. */
export const DEFAULT_SHARDING_TIMINGS: ShardingTimings = {
  askTimeoutMs: 10_000,
  registrationGraceMs: 10_000,
  commandRetryMs: 1000,
  leavingGraceMs: 5000,
  waiterTtlMs: 60_000,
  handoffTimeoutMs: 20_000,
  handedOffTtlMs: 120_000,
};

/** The default Kafka timings. */
export const DEFAULT_KAFKA_TIMINGS: KafkaTimings = {
  sessionTimeoutMs: 10_000,
  rebalanceTimeoutMs: 30_000,
  heartbeatIntervalMs: 1000,
  transactionTimeoutMs: 30_000,
  changelogWriteTimeoutMs: 8000,
};

/**
 * The changelog write timeout that goes with an ask timeout: 8 s, or four
 * fifths of a shorter ask timeout, since a shard being stopped waits for its
 * write in flight and the coordinator waits the ask timeout for the stop.
 *
 * @example
 * ```ts
 * writeTimeoutFor(10_000); // 8000
 * writeTimeoutFor(1_000);  // 800
 * ```
 */
export function writeTimeoutFor(askTimeoutMs: number): number {
  return Math.min(DEFAULT_KAFKA_TIMINGS.changelogWriteTimeoutMs, Math.floor(askTimeoutMs * 0.8));
}

/** Every default. */
export const DEFAULT_NODE_TIMINGS: NodeTimings = {
  membership: DEFAULT_TIMINGS,
  sharding: DEFAULT_SHARDING_TIMINGS,
  kafka: DEFAULT_KAFKA_TIMINGS,
};

/** The knobs a flag sets, named as the user typed them. */
const FLAG_OF = {
  unreachableAfterMs: "--unreachable-after",
  downAfterMs: "--down-after",
  askTimeoutMs: "--ask-timeout",
  handoffTimeoutMs: "--handoff-timeout",
} as const;

function seconds(ms: number): string {
  return `${ms / 1000}s`;
}

function flag(name: keyof typeof FLAG_OF, ms: number): string {
  return `${FLAG_OF[name]} (${seconds(ms)})`;
}

/**
 * The relations between timings that do not hold, each as a sentence that
 * names the flags to change and says why; empty when all hold.
 *
 * @example
 * ```ts
 * import { DEFAULT_NODE_TIMINGS, timingProblems } from "./timings.ts";
 * const t = DEFAULT_NODE_TIMINGS;
 * timingProblems({ ...t, sharding: { ...t.sharding, askTimeoutMs: 90_000 } });
 * // ["--ask-timeout (90s) must be at most the coordinator's memory of a request (60s): …", …]
 * ```
 */
export function timingProblems(t: NodeTimings): string[] {
  const m = t.membership;
  const s = t.sharding;
  const k = t.kafka;
  const problems: string[] = [];
  if (m.unreachableAfterMs < 3 * m.heartbeatIntervalMs) {
    problems.push(
      `${flag("unreachableAfterMs", m.unreachableAfterMs)} must be at least 3 heartbeat intervals ` +
        `(${seconds(3 * m.heartbeatIntervalMs)}): otherwise one late heartbeat marks a member unreachable`,
    );
  }
  if (k.sessionTimeoutMs < 3 * k.heartbeatIntervalMs) {
    problems.push(
      `the Kafka session timeout (${seconds(k.sessionTimeoutMs)}) must be at least 3 consumer heartbeats ` +
        `(${seconds(3 * k.heartbeatIntervalMs)}): otherwise one late heartbeat evicts the node from the group`,
    );
  }
  if (s.askTimeoutMs > s.waiterTtlMs) {
    problems.push(
      `${flag("askTimeoutMs", s.askTimeoutMs)} must be at most the coordinator's memory of a request ` +
        `(${seconds(s.waiterTtlMs)}): an ask waiting longer waits for an answer nobody will send`,
    );
  }
  if (s.handoffTimeoutMs < s.leavingGraceMs + s.askTimeoutMs) {
    problems.push(
      `${flag("handoffTimeoutMs", s.handoffTimeoutMs)} must be at least the leaving grace ` +
        `(${seconds(s.leavingGraceMs)}) plus ${flag("askTimeoutMs", s.askTimeoutMs)}: a leaving node waits ` +
        "that long for Kafka to move its partitions, then for its shards' moves",
    );
  }
  if (s.handedOffTtlMs < 2 * s.askTimeoutMs + s.commandRetryMs) {
    problems.push(
      `${flag("askTimeoutMs", s.askTimeoutMs)} must be at most half the time a region keeps a handed-off ` +
        `shard (${seconds(s.handedOffTtlMs)}): a stop whose reply was lost is asked again within two asks`,
    );
  }
  if (k.changelogWriteTimeoutMs >= s.askTimeoutMs) {
    problems.push(
      `${flag("askTimeoutMs", s.askTimeoutMs)} must be longer than a changelog write may take ` +
        `(${seconds(k.changelogWriteTimeoutMs)}): a shard being stopped waits for its write in flight, and the ` +
        "coordinator waits that long for the stop",
    );
  }
  if (m.shutdownTimeoutMs <= k.changelogWriteTimeoutMs) {
    problems.push(
      `the shutdown timeout (${seconds(m.shutdownTimeoutMs)}) must be longer than a changelog write may take ` +
        `(${seconds(k.changelogWriteTimeoutMs)}): a node that must stop lets its write in flight end first`,
    );
  }
  if (k.transactionTimeoutMs <= k.changelogWriteTimeoutMs) {
    problems.push(
      `the changelog transaction timeout (${seconds(k.transactionTimeoutMs)}) must be longer than a changelog ` +
        `write may take (${seconds(k.changelogWriteTimeoutMs)}): Kafka would abort a write that is still going`,
    );
  }
  if (m.removedTtlMs < m.unreachableAfterMs + m.downAfterMs) {
    problems.push(
      `${flag("unreachableAfterMs", m.unreachableAfterMs)} plus ${
        flag("downAfterMs", m.downAfterMs)
      } must be at most the time a removed member is remembered (${seconds(m.removedTtlMs)}): ` +
        "a member cut off that long could otherwise be merged back",
    );
  }
  return problems;
}
