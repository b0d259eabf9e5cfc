/**
 * Every timing knob of the cluster in one place, with defaults that suit a
 * laptop or a small LAN: failures are noticed in seconds, not minutes.
 *
 * @module
 */

/** Cluster timings, in milliseconds. */
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
};
