/**
 * One user's query, as both front ends ask it (gRPC's `UserStats` and
 * management's `GET /users/{id}`): the id checked, the shard asked within
 * the node's ask timeout or the caller's own deadline, and every way it can
 * fail said once, as a {@linkcode UserQueryError} of one of three kinds that
 * each front end turns into its own status.
 *
 * @module
 */
import { userIdProblem, type UserTotals } from "./entity.ts";
import { ShardUnavailableError } from "./region.ts";

/** Where the totals come from: the shard region. */
export interface UserTotalsSource {
  /** The totals of `userId`, whose shard is `shard`, within `timeoutMs`; rejects with `ShardUnavailableError`. */
  userTotals(userId: string, timeoutMs: number, shard: number): Promise<UserTotals>;
  /** The shard of a user. */
  shardOf(userId: string): number;
}

/** How a query failed: a bad id, a shard that did not answer in the node's time, or not before the caller's deadline. */
export type QueryFailure = "invalid" | "unavailable" | "deadline";

/** A query that could not be answered, and why, in one line that names the shard. */
export class UserQueryError extends Error {
  override name = "UserQueryError";
  constructor(readonly failure: QueryFailure, message: string) {
    super(message);
  }
}

/** How long a query may wait. */
export interface QueryLimits {
  /** The node's `--ask-timeout`. */
  readonly askTimeoutMs: number;
  /** How long the caller itself waits from now (gRPC's `grpc-timeout`), when it says. */
  readonly deadlineMs?: number;
}

/**
 * How long before the caller's deadline the wait for a shard ends, so that
 * the answer naming the shard reaches the caller in time: 200 ms, or a fifth
 * of a shorter deadline.
 */
const DEADLINE_MARGIN_MS = 200;

/** The shortest wait for a shard, however close the caller's deadline is. */
const MIN_SHARD_WAIT_MS = 50;

/** The user's totals (zero for a user never seen); rejects with {@linkcode UserQueryError} only. */
export async function queryUser(source: UserTotalsSource, id: string, limits: QueryLimits): Promise<UserTotals> {
  const problem = userIdProblem(id);
  if (problem !== undefined) throw new UserQueryError("invalid", problem);
  const shard = source.shardOf(id);
  const callerMs = limits.deadlineMs ?? Infinity;
  const beforeCallerMs = Math.max(MIN_SHARD_WAIT_MS, callerMs - Math.min(DEADLINE_MARGIN_MS, callerMs / 5));
  const timeoutMs = Math.min(beforeCallerMs, limits.askTimeoutMs);
  try {
    return await source.userTotals(id, timeoutMs, shard);
  } catch (error) {
    if (!(error instanceof ShardUnavailableError)) throw error;
    if (beforeCallerMs < limits.askTimeoutMs) {
      throw new UserQueryError(
        "deadline",
        `shard ${shard} of user ${id} did not answer before the client's deadline of ${Math.round(callerMs)} ms: ` +
          error.message,
      );
    }
    throw new UserQueryError(
      "unavailable",
      `shard ${shard} of user ${id} could not be reached within ${limits.askTimeoutMs} ms: ${error.message}`,
    );
  }
}
