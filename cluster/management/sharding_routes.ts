/**
 * What the management port shows of sharding: this node's shards (Akka
 * Management's `GET /cluster/shards/{type}`, plus the partitions its
 * consumer reads), one hosted shard's whole state, one user's totals, and
 * the operator's views (the live page, the cluster's placement, the
 * coordinator's moves).
 *
 * @module
 */
import type { Sharding } from "../sharding/sharding.ts";
import { type QueryFailure, queryUser, UserQueryError } from "../sharding/user_query.ts";
import { json, type ManagementRoute } from "./management.ts";
import { placementPage } from "./page.ts";
import { clusterPlacement } from "./placement.ts";

/** The HTTP status of each way a query fails; gRPC's are in grpc/user_service.ts. */
const FAILURE_HTTP_STATUS: Readonly<Record<QueryFailure, number>> = { invalid: 400, unavailable: 503, deadline: 504 };

/**
 * The routes of `sharding`, whose node's consumer reads `consumedPartitions`:
 *
 * - `GET /cluster/shards/{typeName}`: this node's shards and their entity
 *   counts (Akka Management's shape), plus `consumedPartitions`, so that
 *   co-location can be checked;
 * - `GET /cluster/shards/{typeName}/{shardId}`: one hosted shard's whole state;
 * - `GET /users/{id}`: one user's totals, from the one live copy wherever it
 *   is (the same query as gRPC's, the shape of `usershard query --json`);
 * - `GET /` (the live placement page), `GET /cluster/placement` (the whole
 *   cluster's placement it draws, gathered from every member) and
 *   `GET /cluster/coordinator` (what the coordinator on this node is moving;
 *   `{"running": false}` elsewhere).
 */
export function shardingRoutes(sharding: Sharding, consumedPartitions: () => readonly number[]): ManagementRoute[] {
  const { typeName, shardCount, askTimeoutMs, node } = sharding.options;
  const shards = `/cluster/shards/${typeName}`;
  return [
    (path) => {
      if (path.startsWith(`${shards}/`)) return shardState(sharding, path.slice(shards.length + 1));
      if (path !== shards) return undefined;
      return json({
        regions: sharding.region.hostedShards().map((s) => ({
          shardId: String(s.shardId),
          numEntities: s.numEntities,
        })),
        consumedPartitions: consumedPartitions(),
      });
    },
    async (path) => {
      if (!path.startsWith("/users/")) return undefined;
      const id = path.slice("/users/".length);
      try {
        return json({ id, ...await queryUser(sharding.region, id, { askTimeoutMs }) });
      } catch (error) {
        if (error instanceof UserQueryError) {
          return json({ message: error.message }, FAILURE_HTTP_STATUS[error.failure]);
        }
        throw error;
      }
    },
    (path) => path === "/" ? placementPage() : undefined,
    async (path) =>
      path === "/cluster/placement"
        ? json(await clusterPlacement({ snapshot: () => node.snapshot(), typeName, shardCount }))
        : undefined,
    (path) => path === "/cluster/coordinator" ? json(sharding.coordinatorView ?? { running: false }) : undefined,
  ];
}

/** One hosted shard's whole state, for operators and tests; 404 where it is not hosted. */
function shardState(sharding: Sharding, id: string): Response {
  const state = /^\d+$/.test(id) ? sharding.region.shardState(Number(id)) : undefined;
  if (!state) return json({ message: `shard ${id} is not hosted on ${sharding.options.node.self.address}` }, 404);
  return json({
    shardId: String(state.shard),
    lastOffset: state.lastOffset,
    entities: state.entities.map(([userId, totals]) => ({ userId, ...totals })),
  });
}
