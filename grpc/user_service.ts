/**
 * The gRPC front end of a processor node: `UserService.UserStats` (the Akka
 * sample's service, path `/UserService/UserStats`), answered through the
 * shard region from the one live copy of the user wherever it is, plus the
 * health and reflection services, on the server of `server.ts`.
 *
 * @module
 */
import { userIdProblem, type UserTotals } from "../cluster/sharding/entity.ts";
import { getLogger } from "@logtape/logtape";
import { file_grpc_health_v1_health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import { file_users, UserService } from "../proto/gen/users_pb.ts";
import { ShardUnavailableError } from "../cluster/sharding/region.ts";
import { healthRoutes } from "./health.ts";
import type { ServerTls } from "./http2/server.ts";
import { reflectionRoutes } from "./reflection.ts";
import { type CallContext, GrpcServer, unary } from "./server.ts";
import { GrpcError, Status, statusName } from "./status.ts";

export { GrpcBindError, GrpcServer } from "./server.ts";

const log = getLogger(["usershard", "grpc"]);

/**
 * How long before the client's deadline the server stops waiting for a shard,
 * to send its own answer in time: 200 ms, or a fifth of a shorter deadline.
 */
const DEADLINE_MARGIN_MS = 200;

/** The shortest wait for a shard, however close the client's deadline is. */
const MIN_SHARD_WAIT_MS = 50;

/** Where the totals come from: the shard region. */
export interface UserTotalsSource {
  /** The totals of `userId`, whose shard is `shard` (computed once per query). */
  userTotals(userId: string, shard: number, timeoutMs: number): Promise<UserTotals>;
  /** The shard of a user, for error messages. */
  shardOf(userId: string): number;
  /** Whether `shard` is hosted on this node, so that its queries are answered here. */
  hosts(shard: number): boolean;
}

/** Hears of every query answered (the node's metrics). */
export interface QueryObserver {
  /**
   * A query ended with the gRPC status `code` (its name: `OK`, `UNAVAILABLE`…)
   * after `seconds`; `forwarded` when the user's shard was not hosted here as
   * it arrived (a refused id counts as `local`: it goes nowhere).
   */
  answered(code: string, where: "local" | "forwarded", seconds: number): void;
}

/** How the gRPC server is set up. */
export interface GrpcServerOptions {
  readonly host: string;
  readonly port: number;
  /** Serve over TLS, requiring client certificates when it names a client CA. */
  readonly tls?: ServerTls;
  readonly source: UserTotalsSource;
  /** Whether the node can answer queries (for the health service). */
  readonly serving: () => boolean;
  /** Longest wait for a shard when the client sets no earlier deadline. */
  readonly askTimeoutMs: number;
  readonly observer?: QueryObserver;
}

/** Starts the server; rejects with {@linkcode GrpcBindError} when the port cannot be bound. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<GrpcServer> {
  const userStatsRoute = unary(UserService.method.userStats, async (request, context) => {
    const started = performance.now();
    const { source, observer } = options;
    const id = request.id;
    const problem = userIdProblem(id);
    if (problem !== undefined) {
      // A refused id counts as local: it goes nowhere.
      observer?.answered(statusName(Status.INVALID_ARGUMENT), "local", (performance.now() - started) / 1000);
      throw new GrpcError(Status.INVALID_ARGUMENT, problem);
    }
    const shard = source.shardOf(id);
    const where = source.hosts(shard) ? "local" : "forwarded";
    try {
      const totals = await userStats(id, shard, context, options);
      observer?.answered("OK", where, (performance.now() - started) / 1000);
      return { id, totalPurchases: BigInt(totals.totalPurchases), amountSpent: BigInt(totals.amountSpent) };
    } catch (error) {
      const code = error instanceof GrpcError ? error.code : Status.UNKNOWN;
      observer?.answered(statusName(code), where, (performance.now() - started) / 1000);
      throw error;
    }
  });
  const server = await GrpcServer.start(
    options.host,
    options.port,
    [
      userStatsRoute,
      ...healthRoutes([UserService.typeName], options.serving),
      ...reflectionRoutes([file_users, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection]),
    ],
    undefined,
    options.tls,
  );
  log.info("gRPC UserService on {address}{tls}", {
    address: `${options.host}:${options.port}`,
    tls: options.tls === undefined ? "" : options.tls.clientCa === undefined ? " (TLS)" : " (mutual TLS)",
  });
  return server;
}

async function userStats(
  id: string,
  shard: number,
  context: CallContext,
  options: GrpcServerOptions,
): Promise<UserTotals> {
  // The client's own timer ends the call at its deadline with a bare "deadline exceeded". Giving up a margin
  // earlier lets this message, naming the shard, reach the client instead.
  const clientMs = context.timeoutMs() ?? Infinity;
  const beforeClientMs = Math.max(MIN_SHARD_WAIT_MS, clientMs - Math.min(DEADLINE_MARGIN_MS, clientMs / 5));
  const limitedByClient = beforeClientMs < options.askTimeoutMs;
  const timeoutMs = Math.min(beforeClientMs, options.askTimeoutMs);
  try {
    return await options.source.userTotals(id, shard, timeoutMs);
  } catch (error) {
    if (!(error instanceof ShardUnavailableError)) throw error;
    if (limitedByClient) {
      const clientDeadline = `the client's deadline of ${Math.round(clientMs)} ms`;
      throw new GrpcError(
        Status.DEADLINE_EXCEEDED,
        `shard ${shard} of user ${id} did not answer before ${clientDeadline}: ${error.message}`,
      );
    }
    throw new GrpcError(
      Status.UNAVAILABLE,
      `shard ${shard} of user ${id} could not be reached within ${options.askTimeoutMs} ms: ${error.message}`,
    );
  }
}
