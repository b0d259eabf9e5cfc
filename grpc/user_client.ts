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
  constructor(readonly code: grpc.status, message: string) {
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
          if (error) return reject(new QueryError(error.code, this.#describe(error)));
          resolve({
            id: response!.id,
            totalPurchases: Number(response!.totalPurchases),
            amountSpent: Number(response!.amountSpent),
          });
        },
      );
    });
  }

  #describe(error: grpc.ServiceError): string {
    if (
      error.code === grpc.status.UNAVAILABLE && /No connection established|ECONNREFUSED|connect/i.test(error.details)
    ) {
      const cause = (/Last error: (.*)/.exec(error.details)?.[1] ?? error.details)
        .replace(/^Error: /, "").replace(/\.? ?Resolution note:.*$/, "");
      return `cannot reach ${this.target}: ${cause} (is a node running with --grpc on that port?)`;
    }
    return `${grpc.status[error.code]}: ${error.details}`;
  }

  /** Closes the connection. */
  close(): void {
    this.#client.close();
  }
}
