/**
 * Real `usershard process` nodes on loopback with free ports, and what the
 * tests ask them over management HTTP.
 *
 * @module
 */
import { BROKERS, deleteTopics, uniqueName, withTopic } from "./kafka.ts";
import { RunningUsershard } from "./process.ts";
import { eventually } from "./wait.ts";

export { eventually };

/** Ports of one node. */
export interface NodePorts {
  readonly remoting: number;
  readonly mgmt: number;
  readonly grpc: number;
}

/** Free ports for `count` nodes, all different. */
export function nodePorts(count: number): NodePorts[] {
  // Held open until all are picked: a port let go at once can be handed out again by the next pick.
  const listeners = Array.from({ length: 3 * count }, () => Deno.listen({ hostname: "127.0.0.1", port: 0 }));
  const ports = listeners.map((listener) => (listener.addr as Deno.NetAddr).port);
  for (const listener of listeners) listener.close();
  return Array.from({ length: count }, (_, i) => ({
    remoting: ports[3 * i],
    mgmt: ports[3 * i + 1],
    grpc: ports[3 * i + 2],
  }));
}

/** The remoting address of a node. */
export function addressOf(ports: NodePorts): string {
  return `127.0.0.1:${ports.remoting}`;
}

/** Starts a processor node with the given ports and seed list; `prefix` runs it through another program. */
export function startNode(
  ports: NodePorts,
  seeds: readonly NodePorts[],
  extra: readonly string[] = [],
  env: Record<string, string> = {},
  prefix: readonly string[] = [],
): RunningUsershard {
  return new RunningUsershard(
    [
      "process",
      ...["--remoting", String(ports.remoting), "--mgmt", String(ports.mgmt), "--grpc", String(ports.grpc)],
      ...["--seeds", seeds.map(addressOf).join(",")],
      ...extra,
    ],
    env,
    prefix,
  );
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

/** Topic and consumer group a test's processors use. */
export interface Stream {
  readonly topic: string;
  readonly group: string;
}

/** Starts a processor node on `stream` against the test broker; `prefix` runs it through another program. */
export function startProcessor(
  ports: NodePorts,
  seeds: readonly NodePorts[],
  stream: Stream,
  extra: readonly string[] = [],
  prefix: readonly string[] = [],
): RunningUsershard {
  return startNode(
    ports,
    seeds,
    [
      ...["--topic", stream.topic, "--group", stream.group, "--brokers", BROKERS.join(",")],
      ...extra,
    ],
    {},
    prefix,
  );
}

/**
 * Waits until `node` (on `ports`) answers `GET /ready` with 200: Up, and its
 * region registered with the coordinator, so that it consumes from then on.
 * Fails at once, quoting its log, when the process exits first.
 */
export async function ready(node: RunningUsershard, ports: NodePorts, timeoutMs = 90_000): Promise<void> {
  let said = "no answer yet";
  await eventually(
    `${addressOf(ports)} ready`,
    async () => {
      if (!node.running) {
        throw new Error(`usershard ${node.args.join(" ")} exited before it was ready:\n${node.stderr.slice(-4000)}`);
      }
      const response = await fetch(`http://127.0.0.1:${ports.mgmt}/ready`).catch(() => undefined);
      said = response ? `${response.status} ${await response.text()}` : "no answer";
      return response?.ok;
    },
    timeoutMs,
    () => `/ready said: ${said}`,
  );
}

/** `GET /cluster/shards/{group}`: shard ids hosted and the partitions consumed by a node. */
export async function shardsOf(
  ports: NodePorts,
  group: string,
): Promise<{ shards: number[]; entities: number; consumed: number[] } | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${ports.mgmt}/cluster/shards/${group}`);
    if (!response.ok) {
      await response.body?.cancel();
      return undefined;
    }
    const body = await response.json() as {
      regions: { shardId: string; numEntities: number }[];
      consumedPartitions: number[];
    };
    return {
      shards: body.regions.map((r) => Number(r.shardId)).sort((a, b) => a - b),
      entities: body.regions.reduce((n, r) => n + r.numEntities, 0),
      consumed: [...body.consumedPartitions].sort((a, b) => a - b),
    };
  } catch {
    return undefined;
  }
}

/** The rebalances the coordinator on a node has started, from `GET /cluster/coordinator`; [] where it does not run. */
async function rebalancesOf(ports: NodePorts): Promise<{ startedAt: number; completedMs?: number }[]> {
  try {
    const response = await fetch(`http://127.0.0.1:${ports.mgmt}/cluster/coordinator`);
    if (!response.ok) {
      await response.body?.cancel();
      return [];
    }
    const view = await response.json() as { rebalances?: { startedAt: number; completedMs?: number }[] };
    return view.rebalances ?? [];
  } catch {
    return [];
  }
}

/** When the newest rebalance the coordinator on `ports` started so far began (0 for none): a mark for {@linkcode rebalanceAfter}. */
export async function rebalanceMark(ports: NodePorts): Promise<number> {
  return Math.max(0, ...(await rebalancesOf(ports)).map((r) => r.startedAt));
}

/**
 * Waits until the coordinator on `ports` has started a rebalance after
 * `mark` (and, when `completed`, finished it: every shard at its new home).
 */
export async function rebalanceAfter(
  ports: NodePorts,
  mark: number,
  { completed = false, timeoutMs = 60_000 }: { completed?: boolean; timeoutMs?: number } = {},
): Promise<void> {
  await eventually(
    `a rebalance ${completed ? "completed" : "started"} by the coordinator on :${ports.mgmt}`,
    async () =>
      (await rebalancesOf(ports)).some((r) => r.startedAt > mark && (!completed || r.completedMs !== undefined)),
    timeoutMs,
  );
}

/** One hosted shard's state from `GET /cluster/shards/{group}/{id}`. */
export interface ShardStateJson {
  shardId: string;
  lastOffset: number;
  entities: { userId: string; totalPurchases: number; amountSpent: number }[];
}

/** A hosted shard's state, `undefined` when the node does not host it. */
export async function shardState(ports: NodePorts, group: string, shard: number): Promise<ShardStateJson | undefined> {
  const response = await fetch(`http://127.0.0.1:${ports.mgmt}/cluster/shards/${group}/${shard}`);
  if (!response.ok) {
    await response.body?.cancel();
    return undefined;
  }
  return await response.json();
}

/**
 * Runs `run` with a topic and group of its own, stops (kill -9) every node it
 * pushed onto `started`, whatever happens, and deletes the topic, the group's
 * changelog, and any other topic whose name starts with either.
 */
export function withNodes(
  prefix: string,
  run: (started: RunningUsershard[], stream: Stream) => Promise<void>,
): Promise<void> {
  return withTopic(prefix, async (topic) => {
    const started: RunningUsershard[] = [];
    const stream = { topic, group: uniqueName(`${prefix}-group`) };
    try {
      await run(started, stream);
    } catch (error) {
      // The nodes' own logs are what explains a failure; CI keeps nothing else.
      for (const node of started) {
        console.error(`--- usershard ${node.args.join(" ")} (pid ${node.pid}) ---\n${node.stderr}`);
      }
      throw error;
    } finally {
      await Promise.all(started.map((node) => node.stop()));
      // The nodes' changelog topic is named after the group.
      await deleteTopics(stream.group);
    }
  });
}
