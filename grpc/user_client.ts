/**
 * A client of `UserService.UserStats`, for `usershard query`: it asks the
 * first of its nodes that can be reached, and moves on to the next when a
 * node cannot be reached or its connection breaks before it answered.
 *
 * @module
 */
import { UserService } from "../proto/gen/users_pb.ts";
import { GrpcClient, NotGrpcError } from "./client.ts";
import { type ClientTls, DialError } from "./http2/client.ts";
import { StreamRefusedError } from "./http2/connection.ts";
import { StreamResetError } from "./http2/stream.ts";
import { GrpcError, Status, statusName } from "./status.ts";

/** A user's totals as the service answers. */
export interface UserStats {
  readonly id: string;
  readonly totalPurchases: number;
  readonly amountSpent: number;
}

/** A failed call, with its gRPC status code. */
export class QueryError extends Error {
  override name = "QueryError";
  /**
   * @param code a gRPC {@linkcode Status} code
   * @param nodeFailed whether the node itself failed (cannot be reached, does
   * not speak gRPC) rather than this one query, so every query would fail alike
   */
  constructor(readonly code: number, message: string, readonly nodeFailed = false) {
    super(message);
  }
}

/** One node to ask. */
interface Endpoint {
  readonly target: string;
  readonly client: GrpcClient;
}

/** Asks nodes for users' totals, one connection per node, the first node that answers first. */
export class UserStatsClient {
  readonly #endpoints: Endpoint[];
  readonly #tls: ClientTls | undefined;
  #current = 0;

  /**
   * @param targets `host:port` of each node, in the order to try them
   * @param tls speak TLS, trusting the system's CAs or `ca` (PEM), with a client certificate if given
   */
  constructor(targets: string | readonly string[], tls?: ClientTls) {
    this.#tls = tls;
    this.#endpoints = (typeof targets === "string" ? [targets] : targets).map((target) => {
      const colon = target.lastIndexOf(":");
      const host = target.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
      return { target, client: new GrpcClient(host, Number(target.slice(colon + 1)), tls) };
    });
  }

  /**
   * One user's totals; rejects with {@linkcode QueryError}. A node that fails
   * as a whole is left for the next one; the error of the last node tried
   * is the one reported.
   */
  async userStats(id: string, timeoutMs: number): Promise<UserStats> {
    let failure: QueryError | undefined;
    for (let tried = 0; tried < this.#endpoints.length; tried++) {
      const endpoint = this.#endpoints[this.#current];
      try {
        const response = await endpoint.client.unary(UserService.method.userStats, { id }, timeoutMs);
        return {
          id: response.id,
          totalPurchases: Number(response.totalPurchases),
          amountSpent: Number(response.amountSpent),
        };
      } catch (error) {
        failure = describe(endpoint.target, error, this.#tls);
        if (!failure.nodeFailed) throw failure;
        this.#current = (this.#current + 1) % this.#endpoints.length;
      }
    }
    throw failure!;
  }

  /** Closes every connection. */
  close(): void {
    for (const endpoint of this.#endpoints) endpoint.client.close();
  }
}

function describe(target: string, error: unknown, tls: ClientTls | undefined): QueryError {
  const port = target.replace(/^.*:/, "");
  const notGrpc = `(is ${port} a usershard gRPC port? --grpc takes the node's --grpc port)`;
  const nodeFailure = (message: string) => new QueryError(Status.UNAVAILABLE, message, true);
  if (error instanceof DialError) {
    if (error.cause instanceof Deno.errors.ConnectionRefused) {
      return nodeFailure(
        `cannot reach ${target}: connection refused, ECONNREFUSED (is a node running with --grpc on that port?)`,
      );
    }
    if (/lookup address|not known|No address associated/i.test(error.message)) {
      return nodeFailure(`cannot reach ${target}: its host name could not be resolved`);
    }
    return nodeFailure(`cannot reach ${target}: ${error.message}`);
  }
  if (error instanceof StreamResetError && error.connectionEnd) {
    const end = error.connectionEnd;
    if (!end.handshaken && tls) {
      // A server that refuses the client's certificate ends the connection right after the TLS handshake.
      const hint = tls.cert === undefined
        ? "a node with --grpc-tls-client-ca lets in only clients with a certificate its CA signed: give --cert and --key"
        : "does the node's --grpc-tls-client-ca trust the CA that signed this client certificate, --cert?";
      return nodeFailure(`${target} closed the TLS connection before answering: ${end.reason} (${hint})`);
    }
    if (!end.handshaken) return nodeFailure(`${target} does not answer as a gRPC server: ${end.reason} ${notGrpc}`);
    return nodeFailure(`the connection to ${target} broke before it answered: ${end.reason}`);
  }
  if (error instanceof StreamRefusedError || (error instanceof StreamResetError && error.code === 0x7)) {
    return nodeFailure(`${target} is shutting down and took no more calls`);
  }
  if (error instanceof NotGrpcError) {
    return nodeFailure(`${target} does not answer as a gRPC server: ${error.message} ${notGrpc}`);
  }
  if (error instanceof GrpcError) return new QueryError(error.code, `${error.message} (${statusName(error.code)})`);
  if (error instanceof StreamResetError) return new QueryError(Status.UNAVAILABLE, `${error.message} (UNAVAILABLE)`);
  throw error;
}
