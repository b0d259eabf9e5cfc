/**
 * The gRPC front end of a processor node: `UserService.UserStats` (the Akka
 * sample's service, path `/UserService/UserStats`), answered through the
 * shard region from the one live copy of the user wherever it is, plus the
 * health and reflection services, on the server of `server.ts`.
 *
 * @module
 */
import { userIdProblem } from "../cluster/sharding/entity.ts";
import { getLogger } from "@logtape/logtape";
import { file_grpc_health_v1_health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import { file_users, UserService } from "../proto/gen/users_pb.ts";
import { type QueryFailure, queryUser, UserQueryError, type UserTotalsSource } from "../cluster/sharding/user_query.ts";
import { healthRoutes } from "./health.ts";
import type { ServerTls } from "./http2/server.ts";
import { reflectionRoutes } from "./reflection.ts";
import { GrpcServer, unary } from "./server.ts";
import { GrpcError, Status, statusName } from "./status.ts";

export { GrpcBindError, GrpcServer } from "./server.ts";

const log = getLogger(["usershard", "grpc"]);

/** Where the totals come from: the shard region. */
export interface GrpcUserSource extends UserTotalsSource {
  /** Whether `shard` is hosted on this node, so that its queries are answered here. */
  hosts(shard: number): boolean;
}

/** The gRPC status of each way a query fails. */
const FAILURE_STATUS: Readonly<Record<QueryFailure, number>> = {
  invalid: Status.INVALID_ARGUMENT,
  unavailable: Status.UNAVAILABLE,
  deadline: Status.DEADLINE_EXCEEDED,
};

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
  readonly source: GrpcUserSource;
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
    // A refused id counts as local: it goes nowhere.
    const where = userIdProblem(id) === undefined && !source.hosts(source.shardOf(id)) ? "forwarded" : "local";
    try {
      const totals = await queryUser(source, id, {
        askTimeoutMs: options.askTimeoutMs,
        deadlineMs: context.timeoutMs(),
      });
      observer?.answered("OK", where, (performance.now() - started) / 1000);
      return { id, totalPurchases: BigInt(totals.totalPurchases), amountSpent: BigInt(totals.amountSpent) };
    } catch (error) {
      const refusal = error instanceof UserQueryError
        ? new GrpcError(FAILURE_STATUS[error.failure], error.message)
        : error;
      const code = refusal instanceof GrpcError ? refusal.code : Status.UNKNOWN;
      observer?.answered(statusName(code), where, (performance.now() - started) / 1000);
      throw refusal;
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
