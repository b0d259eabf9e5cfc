/**
 * Real `usershard process` nodes on loopback with free ports, and what the
 * tests ask them over management HTTP.
 *
 * @module
 */
import { freePort, RunningUsershard } from "./process.ts";

/** Ports of one node. */
export interface NodePorts {
  readonly remoting: number;
  readonly mgmt: number;
  readonly grpc: number;
}

/** Free ports for `count` nodes. */
export function nodePorts(count: number): NodePorts[] {
  return Array.from({ length: count }, () => ({ remoting: freePort(), mgmt: freePort(), grpc: freePort() }));
}

/** The remoting address of a node. */
export function addressOf(ports: NodePorts): string {
  return `127.0.0.1:${ports.remoting}`;
}

/** Starts a processor node with the given ports and seed list. */
export function startNode(
  ports: NodePorts,
  seeds: readonly NodePorts[],
  extra: readonly string[] = [],
  env: Record<string, string> = {},
): RunningUsershard {
  return new RunningUsershard([
    "process",
    ...["--remoting", String(ports.remoting), "--mgmt", String(ports.mgmt), "--grpc", String(ports.grpc)],
    ...["--seeds", seeds.map(addressOf).join(",")],
    ...extra,
  ], env);
}

/** `GET /cluster/members` of a node, as JSON. */
export interface MembersJson {
  selfNode: string;
  members: { node: string; nodeUid: string; status: string; roles: string[] }[];
  unreachable: { node: string; observedBy: string[] }[];
  leader?: string;
  oldest?: string;
}

/** Reads a node's `/cluster/members`; `undefined` when it does not answer. */
export async function members(ports: NodePorts): Promise<MembersJson | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${ports.mgmt}/cluster/members`);
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    return await response.json();
  } catch {
    return undefined;
  }
}

/** `address → status` as a node sees it. */
export async function statuses(ports: NodePorts): Promise<Record<string, string> | undefined> {
  const view = await members(ports);
  return view && Object.fromEntries(view.members.map((m) => [m.node, m.status]));
}

/**
 * Polls `check` until it returns a value that is not `undefined`/`false`;
 * fails with `what` and the last value seen after `timeoutMs`.
 */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false>,
  timeoutMs = 30_000,
  describe: () => Promise<string> | string = () => "",
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms. ${await describe()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

/** Waits until every node in `nodes` sees exactly `expected` (address → status). */
export async function converged(nodes: readonly NodePorts[], expected: Record<string, string>, timeoutMs = 30_000) {
  const want = JSON.stringify(Object.entries(expected).sort());
  const views = () => Promise.all(nodes.map(statuses));
  await eventually(
    `all nodes see ${want}`,
    async () => (await views()).every((v) => v !== undefined && JSON.stringify(Object.entries(v).sort()) === want),
    timeoutMs,
    async () => `views: ${JSON.stringify(await views())}`,
  );
}
