/**
 * The whole cluster's placement as one node can tell it, for the live page:
 * every member with its state, which shards each one hosts and which
 * partitions it consumes, its event counts and lag, and what the coordinator
 * is moving. Gathered from each member's own management endpoint (as
 * `usershard shards --all` does) and from the coordinator's, on the oldest
 * member; a member that does not answer is shown with the reason.
 *
 * @module
 */
import type { ClusterSnapshot } from "../membership/cluster_node.ts";
import { sameNode } from "../remoting/node.ts";

/** One member's part, as its own endpoint reports it. */
export interface NodePlacement {
  readonly node: string;
  readonly management: string;
  readonly status: string;
  readonly shards: readonly number[];
  readonly entities: number;
  /** `null` when the node does not say (then co-location is unknown for it). */
  readonly consumedPartitions: readonly number[] | null;
  /** Events this node's consumer delivered, and how many of them to shards on this node. */
  readonly events: number | null;
  readonly local: number | null;
  /** Messages behind the log end, over the partitions this node consumes; `null` when unknown. */
  readonly lag: number | null;
  /** Why this node's part is missing, when it is. */
  readonly error?: string;
}

/** What the coordinator does now, from its node. */
export interface CoordinatorPlacement {
  readonly node: string;
  readonly epoch: string;
  readonly active: boolean;
  readonly movesInFlight: readonly { shard: number; from?: string; to: string; phase: string }[];
  readonly rebalances: readonly {
    startedAt: number;
    moves: readonly { shard: number; from?: string; to: string }[];
    completedMs?: number;
  }[];
}

/** The body of `GET /cluster/placement`. */
export interface PlacementJson {
  /** The node that answered. */
  readonly self: string;
  /** When, in epoch milliseconds. */
  readonly at: number;
  readonly typeName: string;
  readonly shardCount: number;
  readonly leader?: string;
  readonly oldest?: string;
  readonly unreachable: readonly string[];
  readonly nodes: readonly NodePlacement[];
  readonly coordinator: CoordinatorPlacement | null;
  /** Shards whose host consumes their partition, out of `hosted`; `null` when a node does not say. */
  readonly colocated: number | null;
  readonly hosted: number;
}

/** Reads JSON from a URL within a time limit; throws with a reason otherwise. */
export type JsonFetcher = (url: string, timeoutMs: number) => Promise<unknown>;

/** What {@linkcode clusterPlacement} reads. */
export interface PlacementSource {
  readonly snapshot: () => ClusterSnapshot;
  readonly typeName: string;
  readonly shardCount: number;
  readonly fetchJson?: JsonFetcher;
  /** How long each member may take to answer. */
  readonly timeoutMs?: number;
}

/** Fetches JSON over HTTP, failing after `timeoutMs` or on a non-2xx answer. */
export const fetchJson: JsonFetcher = async (url, timeoutMs) => {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await response.text();
  if (!response.ok) throw new Error(`${url} answered ${response.status}`);
  return JSON.parse(text);
};

function numberOr(value: unknown, fallback: number | null): number | null {
  return typeof value === "number" && Number.isFinite(value) ? value : fallback;
}

/** Gathers the cluster's placement from every member's endpoint. */
export async function clusterPlacement(source: PlacementSource): Promise<PlacementJson> {
  const snapshot = source.snapshot();
  const get = source.fetchJson ?? fetchJson;
  const timeoutMs = source.timeoutMs ?? 1500;
  const members = snapshot.members.filter((m) => m.status !== "Down");
  const nodes = await Promise.all(members.map(async (member): Promise<NodePlacement> => {
    const base = {
      node: member.node.address,
      management: member.management,
      status: member.status,
    };
    if (!member.management) {
      return { ...base, shards: [], entities: 0, consumedPartitions: null, events: null, local: null, lag: null };
    }
    try {
      const [shards, stats] = await Promise.all([
        get(`http://${member.management}/cluster/shards/${source.typeName}`, timeoutMs),
        get(`http://${member.management}/stats`, timeoutMs).catch(() => undefined),
      ]);
      const regions = (shards as { regions?: { shardId: string; numEntities: number }[] }).regions ?? [];
      const consumed = (shards as { consumedPartitions?: number[] }).consumedPartitions;
      const s = (stats ?? {}) as Record<string, unknown>;
      return {
        ...base,
        shards: regions.map((r) => Number(r.shardId)).sort((a, b) => a - b),
        entities: regions.reduce((sum, r) => sum + r.numEntities, 0),
        consumedPartitions: Array.isArray(consumed) ? consumed : null,
        events: numberOr(s.events, null),
        local: numberOr(s.local, null),
        lag: numberOr(s.lag, null),
      };
    } catch (error) {
      return {
        ...base,
        shards: [],
        entities: 0,
        consumedPartitions: null,
        events: null,
        local: null,
        lag: null,
        error: error instanceof Error ? error.message : String(error),
      };
    }
  }));
  const oldest = snapshot.oldest && snapshot.members.find((m) => sameNode(m.node, snapshot.oldest!));
  let coordinator: CoordinatorPlacement | null = null;
  if (oldest?.management) {
    const view = await get(`http://${oldest.management}/cluster/coordinator`, timeoutMs).catch(() => undefined);
    if (view && typeof view === "object" && "epoch" in view) {
      coordinator = { node: oldest.node.address, ...(view as Omit<CoordinatorPlacement, "node">) };
    }
  }
  let colocated: number | null = 0;
  let hosted = 0;
  for (const node of nodes) {
    hosted += node.shards.length;
    if (node.consumedPartitions === null) {
      if (node.shards.length > 0) colocated = null;
      continue;
    }
    const consumed = new Set(node.consumedPartitions);
    if (colocated !== null) colocated += node.shards.filter((s) => consumed.has(s)).length;
  }
  return {
    self: snapshot.self.address,
    at: Date.now(),
    typeName: source.typeName,
    shardCount: source.shardCount,
    leader: snapshot.leader?.address,
    oldest: snapshot.oldest?.address,
    unreachable: snapshot.unreachable.map((u) => u.node.address),
    nodes,
    coordinator,
    colocated,
    hosted,
  };
}
