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
  /** The partitions the node's consumer holds: a usershard node's addition, absent from Akka's and Pekko's answer. */
  readonly consumedPartitions?: readonly number[];
}

/**
 * How many of the node's shards it also consumes the partition of; `null` when
 * the node does not say which partitions it consumes (an Akka or Pekko node),
 * which is not the same as none.
 *
 * @example
 * ```ts
 * colocatedShards({ regions: [{ shardId: "1", numEntities: 4 }], consumedPartitions: [1, 2] }); // 1
 * colocatedShards({ regions: [{ shardId: "1", numEntities: 4 }] }); // null
 * ```
 */
export function colocatedShards(shards: ShardsJson): number | null {
  if (!Array.isArray(shards.consumedPartitions)) return null;
  const consumed = new Set(shards.consumedPartitions);
  return shards.regions.filter((r) => consumed.has(Number(r.shardId))).length;
}

/** A management endpoint that could not be read. */
export class ManagementError extends Error {
  override name = "ManagementError";
}

/**
 * Reads the management endpoints of nodes, given as `host:port`: over HTTP,
 * or over HTTPS with `tls` (trusting the system's CAs, or the PEM `ca`).
 */
export class ManagementClient {
  readonly #scheme: "http" | "https";
  readonly #http: Deno.HttpClient | undefined;

  constructor(tls?: { readonly ca?: string }) {
    this.#scheme = tls ? "https" : "http";
    this.#http = tls?.ca === undefined ? undefined : Deno.createHttpClient({ caCerts: [tls.ca] });
  }

  /** Reads `GET /cluster/members` of the node at `endpoint`. */
  members(endpoint: string, timeoutMs = 5000): Promise<MembersJson> {
    return getJson<MembersJson>(this.#url(endpoint), "/cluster/members", timeoutMs, this.#http);
  }

  /** Reads `GET /cluster/shards/{type}` of the node at `endpoint`. */
  shards(endpoint: string, type: string, timeoutMs = 5000): Promise<ShardsJson> {
    const base = this.#url(endpoint);
    return getJson<ShardsJson>(
      base,
      `/cluster/shards/${encodeURIComponent(type)}`,
      timeoutMs,
      this.#http,
      () => `the node at ${base} has no shard type '${type}' (--type must be the node's consumer group, its --group)`,
    );
  }

  /** Releases the connections. */
  close(): void {
    this.#http?.close();
  }

  #url(endpoint: string): string {
    return `${this.#scheme}://${endpoint}`;
  }
}

async function getJson<T>(
  base: string,
  path: string,
  timeoutMs: number,
  client: Deno.HttpClient | undefined,
  notFound?: () => string,
): Promise<T> {
  let response: Response;
  let text: string;
  try {
    response = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(timeoutMs), client });
    text = await response.text();
  } catch (error) {
    const reason = error instanceof DOMException && error.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : describeFetchError(error, base);
    throw new ManagementError(`cannot reach the management endpoint ${base}: ${reason}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    // Another HTTP server (an HTML page, say): what it says is no use here, and may run to many lines.
    // A node's own server failing (a 5xx in plain text) is not a wrong port, so no hint then; but 505 is a
    // port that does not take HTTP/1 at all (a node's gRPC port answers so).
    const hint = response.ok || response.status === 404 || response.status === 505 ? ` ${wrongPortHint(base)}` : "";
    throw new ManagementError(`${base}${path} answered ${response.status} but not in JSON${hint}`);
  }
  if (response.ok) return body as T;
  if (response.status === 404 && notFound) throw new ManagementError(notFound());
  const message = (body as { message?: unknown } | null)?.message;
  throw new ManagementError(
    `${base}${path} answered ${response.status}: ${typeof message === "string" ? message : text}`,
  );
}

function wrongPortHint(base: string): string {
  const https = base.startsWith("http:") ? "; a node with --mgmt-tls-cert needs --tls" : "";
  return `(is ${base.replace(/^.*:/, "")} the node's management port? --node takes its --mgmt port${https})`;
}

function describeFetchError(error: unknown, base: string): string {
  // fetch() says "fetch failed"; what happened is in the cause, after a preamble repeating the URL.
  const cause = error instanceof Error && error.cause instanceof Error ? error.cause : error;
  const text = (cause instanceof Error ? cause.message : String(cause))
    .replace(/^error sending request .*?: client error \(\w+\): /, "");
  if (/refused/i.test(text)) return "connection refused (is a node running with that --mgmt port?)";
  if (/certificate|tls|handshake/i.test(text)) return `TLS handshake failed: ${text}`;
  if (/dns error|unreachable|no route to host|timed out/i.test(text)) return text;
  // Something listens there but does not speak HTTP/1.1 ("invalid HTTP version parsed", "received unexpected
  // message from connection", "connection closed before message completed"): a remoting, gRPC or Kafka port.
  return `${text} ${wrongPortHint(base)}`;
}
