/**
 * Reading a node's management endpoint from the command line: members and
 * shards, with errors that say which node could not be read and why.
 *
 * @module
 */

/** A member as `GET /cluster/members` shows it. */
export interface MemberJson {
  readonly node: string;
  readonly nodeUid: string;
  readonly status: string;
  readonly roles: readonly string[];
  readonly management?: string;
}

/** `GET /cluster/members`. */
export interface MembersJson {
  readonly selfNode: string;
  readonly members: readonly MemberJson[];
  readonly unreachable: readonly { node: string; observedBy: readonly string[] }[];
  readonly leader?: string;
  readonly oldest?: string;
}

/** `GET /cluster/shards/{type}`. */
export interface ShardsJson {
  readonly regions: readonly { shardId: string; numEntities: number }[];
  readonly consumedPartitions?: readonly number[];
}

/** A management endpoint that could not be read. */
export class ManagementError extends Error {
  override name = "ManagementError";
}

async function getJson<T>(base: string, path: string, timeoutMs: number): Promise<T> {
  let response: Response;
  try {
    response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const reason = error instanceof DOMException && error.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : describeFetchError(error);
    throw new ManagementError(`cannot reach the management endpoint ${base}: ${reason}`);
  }
  if (!response.ok) {
    const text = await response.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // Not JSON: the text is the message.
    }
    throw new ManagementError(`${base}${path} answered ${response.status}: ${message}`);
  }
  try {
    return await response.json() as T;
  } catch {
    throw new ManagementError(`${base}${path} did not answer JSON (is that a usershard management port?)`);
  }
}

function describeFetchError(error: unknown): string {
  // fetch() says "fetch failed"; what happened is in the cause.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const text = cause instanceof Error ? cause.message : String(cause);
  return /refused/i.test(text) ? "connection refused (is a node running with that --mgmt port?)" : text;
}

/** Reads `GET /cluster/members` of the node at `base` (e.g. `http://localhost:8551`). */
export function fetchMembers(base: string, timeoutMs = 5000): Promise<MembersJson> {
  return getJson<MembersJson>(base, "/cluster/members", timeoutMs);
}

/** Reads `GET /cluster/shards/{type}` of the node at `base`. */
export function fetchShards(base: string, type: string, timeoutMs = 5000): Promise<ShardsJson> {
  return getJson<ShardsJson>(base, `/cluster/shards/${encodeURIComponent(type)}`, timeoutMs);
}

/**
 * Shard ids as short ranges.
 *
 * @example
 * ```ts
 * compactRanges([0, 1, 2, 5, 7, 8]); // "0-2,5,7-8"
 * ```
 */
export function compactRanges(ids: readonly number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}
