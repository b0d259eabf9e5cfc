/**
 * The allocation strategy: where a shard goes, and whether one that runs
 * should move. Pure functions of what the coordinator knows, kept apart from
 * its state machine as Akka keeps `LeastShardAllocationStrategy` apart from
 * `ShardCoordinator`. The placement usershard wants is Kafka's: a shard goes
 * to the node whose consumer holds its partition (its desired home); only
 * when there is none does load decide.
 *
 * @module
 */
import { compareAddresses, type NodeId, sameNode } from "../remoting/node.ts";

/** What the strategy knows of one shard. */
export interface ShardSituation {
  /** Where the shard runs now; absent for a shard that runs nowhere. */
  readonly home?: NodeId;
  /** Its partition's consumer, when that node can host shards. */
  readonly desired?: NodeId;
  /** Whether its home is leaving the cluster, and whether that node's grace for Kafka to move its partitions is over. */
  readonly homeLeaving?: "waiting" | "graceOver";
  /** For a shard that runs nowhere: whether it may be started now (every region has said what it hosts). */
  readonly mayStart: boolean;
  /** For a shard that runs nowhere: whether the coordinator holds its last state (handed off, or its home is gone). */
  readonly orphaned: boolean;
}

/**
 * Where the shard should go now; `undefined` when it stays (or must wait).
 * A shard that runs nowhere goes to its desired home, or (when the
 * coordinator holds its state) to the least loaded node; one that runs
 * follows its desired home; one on a leaving node follows it too, or after
 * the grace goes to the least loaded other node.
 */
export function targetOf(
  shard: ShardSituation,
  leastLoaded: (except?: NodeId) => NodeId | undefined,
): NodeId | undefined {
  const { home, desired } = shard;
  if (!home) {
    if (!shard.mayStart) return undefined;
    return desired ?? (shard.orphaned ? leastLoaded() : undefined);
  }
  if (desired && !sameNode(desired, home)) return desired;
  return shard.homeLeaving === "graceOver" ? leastLoaded(home) : undefined;
}

/**
 * The node with the fewest shards among `candidates` (ties to the lowest
 * address), leaving out `except`: where a shard goes when Kafka's placement
 * says nothing.
 */
export function leastLoaded(
  candidates: readonly NodeId[],
  load: (node: NodeId) => number,
  except?: NodeId,
): NodeId | undefined {
  return candidates
    .filter((node) => !(except && sameNode(except, node)))
    .sort((a, b) => load(a) - load(b) || compareAddresses(a.address, b.address))[0];
}
