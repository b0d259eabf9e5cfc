/**
 * A client of `UserService.UserStats`, for `usershard query`.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  UserService,
  type UserStatsRequest,
  UserStatsRequestSchema,
  type UserStatsResponse,
} from "../proto/gen/users_pb.ts";
import { serviceDefinition } from "./definitions.ts";

/** A user's totals as the service answers. */
export interface UserStats {
  readonly id: string;
  readonly totalPurchases: number;
  readonly amountSpent: number;
}

/** A failed call, with its gRPC status. */
export class QueryError extends Error {
  override name = "QueryError";
  /**
   * @param nodeFailed whether the node itself failed (cannot be reached, does
   * not speak gRPC) rather than this one query, so every query would fail alike
   */
  constructor(readonly code: grpc.status, message: string, readonly nodeFailed = false) {
    super(message);
  }
}

const userStatsMethod = serviceDefinition(UserService).UserStats as grpc.MethodDefinition<
  UserStatsRequest,
  UserStatsResponse
>;

/** Asks one node for users' totals over one connection. */
export class UserStatsClient {
  readonly #client: grpc.Client;
  readonly target: string;

  constructor(target: string) {
    this.target = target;
    this.#client = new grpc.Client(target, grpc.credentials.createInsecure());
  }

  /** One user's totals; rejects with {@linkcode QueryError}. */
  userStats(id: string, timeoutMs: number): Promise<UserStats> {
    const request = create(UserStatsRequestSchema, { id });
    return new Promise((resolve, reject) => {
      this.#client.makeUnaryRequest(
        userStatsMethod.path,
        userStatsMethod.requestSerialize,
        userStatsMethod.responseDeserialize,
        request,
        { deadline: Date.now() + timeoutMs },
        (error, response) => {
          if (error) return reject(this.#describe(error, timeoutMs));
          resolve({
            id: response!.id,
            totalPurchases: Number(response!.totalPurchases),
            amountSpent: Number(response!.amountSpent),
          });
        },
      );
    });
  }

  #describe(error: grpc.ServiceError, timeoutMs: number): QueryError {
    const details = error.details.replace(/ \(\d{4}-\d\d-\d\dT[\d:.]+Z\)/g, "").replace(/\.? ?Resolution note:.*$/, "");
    const port = this.target.replace(/^.*:/, "");
    const notGrpc = `(is ${port} a usershard gRPC port? --grpc takes the node's --grpc port)`;
    const nodeFailure = (message: string) => new QueryError(error.code, message, true);
    if (error.code === grpc.status.UNAVAILABLE && /Name resolution failed/.test(details)) {
      return nodeFailure(`cannot reach ${this.target}: its host name could not be resolved`);
    }
    const connecting = /No connection established(?:\. Last error: (?:Error: )?(.*))?/.exec(details);
    if (error.code === grpc.status.UNAVAILABLE && connecting) {
      const cause = connecting[1] ?? "no connection established";
      if (/ECONNREFUSED/.test(cause)) {
        return nodeFailure(`cannot reach ${this.target}: ${cause} (is a node running with --grpc on that port?)`);
      }
      if (/ENOTFOUND|EAI_AGAIN|UNREACH|ETIMEDOUT/.test(cause)) {
        return nodeFailure(`cannot reach ${this.target}: ${cause}`);
      }
      // Something listens there but does not speak gRPC ("Protocol error", "Failed to connect", "write EPIPE").
      return nodeFailure(`cannot reach ${this.target}: ${cause} ${notGrpc}`);
    }
    // An HTTP/2 server that is not gRPC (a management port, say) answers bytes grpc-js misreads as a huge message.
    if (/Received message larger than max|Received HTTP status code/.test(details)) {
      return nodeFailure(`${this.target} does not answer as a gRPC server: ${details} ${notGrpc}`);
    }
    // grpc-js's own text is a trace of its internal phases; the server's (naming the shard) is kept as it is.
    if (error.code === grpc.status.DEADLINE_EXCEEDED && /^Deadline exceeded/.test(details)) {
      return new QueryError(error.code, `no answer within ${formatDuration(timeoutMs)} (DEADLINE_EXCEEDED)`);
    }
    return new QueryError(error.code, `${details} (${grpc.status[error.code]})`);
  }

  /** Closes the connection. */
  close(): void {
    this.#client.close();
  }
}

/** A duration as people write it: "5 s", "1.5 s", "400 ms". */
function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${ms / 1000} s`;
}
