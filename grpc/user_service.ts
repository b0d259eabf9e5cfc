/**
 * The gRPC front end of a processor node: `UserService.UserStats` (the Akka
 * sample's service, path `/UserService/UserStats`), answered through the
 * shard region from the one live copy of the user wherever it is, plus the
 * health and reflection services.
 *
 * @module
 */
import { userIdProblem, type UserTotals } from "../cluster/sharding/entity.ts";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { getLogger } from "@logtape/logtape";
import { file_grpc_health_v1_health } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { file_grpc_reflection_v1_reflection } from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import {
  file_users,
  UserService,
  type UserStatsRequest,
  type UserStatsResponse,
  UserStatsResponseSchema,
} from "../proto/gen/users_pb.ts";
import { ShardUnavailableError } from "../cluster/sharding/region.ts";
import { serviceDefinition } from "./definitions.ts";
import { addHealthService } from "./health.ts";
import { addReflectionService } from "./reflection.ts";

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
  userTotals(userId: string, timeoutMs: number): Promise<UserTotals>;
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
  readonly source: UserTotalsSource;
  /** Whether the node can answer queries (for the health service). */
  readonly serving: () => boolean;
  /** Longest wait for a shard when the client sets no earlier deadline. */
  readonly askTimeoutMs: number;
  readonly observer?: QueryObserver;
}

/** A gRPC port that cannot be bound. */
export class GrpcBindError extends Error {
  override name = "GrpcBindError";
}

/** Starts the server; resolves once it listens. */
export async function startGrpcServer(options: GrpcServerOptions): Promise<grpc.Server> {
  const server = new grpc.Server();
  server.addService(serviceDefinition(UserService), {
    UserStats: (
      call: grpc.ServerUnaryCall<UserStatsRequest, UserStatsResponse>,
      callback: grpc.sendUnaryData<UserStatsResponse>,
    ) => {
      const started = performance.now();
      const { source, observer } = options;
      const id = call.request.id;
      const where = userIdProblem(id) === undefined && !source.hosts(source.shardOf(id)) ? "forwarded" : "local";
      const answered = (code: grpc.status) =>
        observer?.answered(grpc.status[code] ?? "UNKNOWN", where, (performance.now() - started) / 1000);
      userStats(call, options).then(
        (response) => {
          answered(grpc.status.OK);
          callback(null, response);
        },
        (error: grpc.ServiceError | Error) => {
          // grpc-js answers an error without a code as UNKNOWN.
          answered("code" in error && typeof error.code === "number" ? error.code : grpc.status.UNKNOWN);
          callback(error as grpc.ServiceError);
        },
      );
    },
  });
  addHealthService(server, [UserService.typeName], options.serving);
  addReflectionService(server, [file_users, file_grpc_health_v1_health, file_grpc_reflection_v1_reflection]);
  const address = `${options.host}:${options.port}`;
  await new Promise<void>((resolve, reject) => {
    server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (error) => {
      if (!error) return resolve();
      reject(
        new GrpcBindError(
          /EADDRINUSE|address already in use/i.test(error.message)
            ? `gRPC port ${address} is already in use`
            : `cannot serve gRPC on ${address}: ${error.message}`,
        ),
      );
    });
  });
  log.info("gRPC UserService on {address}", { address });
  return server;
}

async function userStats(
  call: grpc.ServerUnaryCall<UserStatsRequest, UserStatsResponse>,
  options: GrpcServerOptions,
): Promise<UserStatsResponse> {
  const id = call.request.id;
  const problem = userIdProblem(id);
  if (problem) throw status(grpc.status.INVALID_ARGUMENT, problem);
  // grpc-js derives the deadline from the grpc-timeout header on arrival, so it falls a little after the
  // client's own, and grpc-js's timers on both sides then end the call with a bare "Deadline exceeded".
  // Giving up a margin earlier lets this message, naming the shard, reach the client instead.
  const deadline = call.getDeadline();
  const clientMs = deadline === Infinity ? Infinity : new Date(deadline).getTime() - Date.now();
  const beforeClientMs = Math.max(MIN_SHARD_WAIT_MS, clientMs - Math.min(DEADLINE_MARGIN_MS, clientMs / 5));
  const limitedByClient = beforeClientMs < options.askTimeoutMs;
  const timeoutMs = Math.min(beforeClientMs, options.askTimeoutMs);
  try {
    const totals = await options.source.userTotals(id, timeoutMs);
    return create(UserStatsResponseSchema, {
      id,
      totalPurchases: BigInt(totals.totalPurchases),
      amountSpent: BigInt(totals.amountSpent),
    });
  } catch (error) {
    if (!(error instanceof ShardUnavailableError)) throw error;
    const shard = options.source.shardOf(id);
    if (limitedByClient) {
      const clientDeadline = `the client's deadline of ${Math.round(clientMs)} ms`;
      throw status(
        grpc.status.DEADLINE_EXCEEDED,
        `shard ${shard} of user ${id} did not answer before ${clientDeadline}: ${error.message}`,
      );
    }
    throw status(
      grpc.status.UNAVAILABLE,
      `shard ${shard} of user ${id} could not be reached within ${options.askTimeoutMs} ms: ${error.message}`,
    );
  }
}

function status(code: grpc.status, details: string): Partial<grpc.ServiceError> {
  return { code, details, message: details };
}
