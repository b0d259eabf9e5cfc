/**
 * The management HTTP endpoint, in the shapes of Akka Management's read-only
 * routes so the same `curl | jq` habits work: cluster members, one member,
 * readiness, liveness, and whatever routes the sharding part adds.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import type { ClusterSnapshot } from "../membership/cluster_node.ts";
import { BindError } from "../remoting/errors.ts";
import { type Member } from "../membership/members.ts";

const log = getLogger(["usershard", "management"]);

/** An extra GET route: answers a path it knows, or `undefined` to pass. */
export type ManagementRoute = (path: string) => Response | undefined | Promise<Response | undefined>;

/** What the management endpoint reads from the node. */
export interface ManagementSource {
  snapshot(): ClusterSnapshot;
  /** Whether the node is ready for work (Up, and its shard region registered once sharding runs). */
  isReady(): boolean;
  /** A sentence on why the node is not ready, for `/ready`'s body. */
  notReadyReason(): string;
  readonly routes?: readonly ManagementRoute[];
}

function memberJson(member: Member) {
  return {
    node: member.node.address,
    nodeUid: String(member.node.uid),
    status: member.status,
    roles: [],
    management: member.management || undefined,
  };
}

/** The body of `GET /cluster/members`. */
export function membersJson(snapshot: ClusterSnapshot) {
  return {
    selfNode: snapshot.self.address,
    members: snapshot.members.map(memberJson),
    unreachable: snapshot.unreachable.map((u) => ({
      node: u.node.address,
      observedBy: u.observers.map((o) => o.address),
    })),
    leader: snapshot.leader?.address,
    oldest: snapshot.oldest?.address,
  };
}

/** A JSON response. */
export function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

/** Answers one management request. */
export async function handleManagement(request: Request, source: ManagementSource): Promise<Response> {
  if (request.method !== "GET" && request.method !== "HEAD") {
    return json({ message: `${request.method} is not supported; the management endpoint is read-only` }, 405);
  }
  const raw = new URL(request.url).pathname;
  let decoded: string;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    return json({ message: `the path ${raw} has a bad percent-escape` }, 400);
  }
  const path = decoded.replace(/\/+$/, "") || "/";
  if (path === "/alive") return new Response("OK");
  if (path === "/ready") {
    return source.isReady()
      ? new Response("OK")
      : new Response(`Not ready: ${source.notReadyReason()}`, { status: 500 });
  }
  if (path === "/cluster/members") return json(membersJson(source.snapshot()));
  const one = /^\/cluster\/members\/(.+)$/.exec(path);
  if (one) {
    // Accept Akka-style "proto://system@host:port" as well as "host:port".
    const address = one[1].replace(/^[a-z]+:\/\/[^@]*@/, "");
    const member = source.snapshot().members.find((m) => m.node.address === address);
    return member ? json(memberJson(member)) : json({ message: `Member [${one[1]}] not found` }, 404);
  }
  for (const route of source.routes ?? []) {
    const response = await route(path);
    if (response) return response;
  }
  return json({ message: `no route ${path}` }, 404);
}

/**
 * Starts the management HTTP server, over HTTPS with `tls` (a PEM
 * certificate chain and key); throws `BindError` when the port is taken.
 */
export function startManagement(
  hostname: string,
  port: number,
  tls: { readonly cert: string; readonly key: string } | undefined,
  source: ManagementSource,
): Deno.HttpServer {
  const scheme = tls ? "https" : "http";
  try {
    return Deno.serve({
      hostname,
      port,
      ...tls,
      onListen: () =>
        log.info(`management ${scheme.toUpperCase()} on ${scheme}://{hostname}:{port}`, { hostname, port }),
      onError: (error) => {
        log.error("management request failed: {error}", { error: String(error) });
        return json({ message: "internal error" }, 500);
      },
    }, (request) => handleManagement(request, source));
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) {
      throw new BindError(`management port ${hostname}:${port} is already in use`);
    }
    throw new BindError(`cannot serve management HTTP on ${hostname}:${port}: ${String(error)}`);
  }
}
