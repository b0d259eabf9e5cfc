/**
 * `usershard shards`: the shards one node hosts, or with `--all` the whole
 * cluster's placement and how much of it sits with its partition's consumer.
 *
 * @module
 */
import { colocatedShards, ManagementClient, ManagementError, type ShardsJson } from "./management_client.ts";
import { compactRanges } from "../cluster/management/shard_ranges.ts";
import { CliError, defineCommand, StdoutClosed, writeStdout } from "./command.ts";
import { type CommandSpec, endpointFlag, fileFlag, UsageError } from "./flags.ts";

/** Flags of `usershard shards`. */
export const shardsSpec = {
  name: "shards",
  summary: "shows the shards (and entity counts) a node hosts, or the whole cluster's with --all",
  usage: "usershard shards [--node PORT|HOST:PORT] [--all] [--json]",
  flags: {
    node: {
      type: "string",
      value: "PORT|HOST:PORT",
      env: "USERSHARD_MGMT",
      default: "8551",
      description: "management endpoint of the node to ask",
    },
    host: {
      type: "string",
      value: "HOST",
      default: "localhost",
      description: "host of --node when it is just a port",
    },
    type: {
      type: "string",
      value: "NAME",
      env: "USERSHARD_GROUP",
      default: "user-processing",
      description: "sharding type name (the nodes' --group)",
    },
    all: { type: "boolean", description: "ask every member and show the cluster's placement and co-location" },
    json: { type: "boolean", description: "print JSON instead of a table" },
    tls: {
      type: "boolean",
      description: "speak HTTPS to the nodes (their --mgmt-tls-cert), trusting the system's CAs",
    },
    ca: {
      type: "string",
      value: "FILE",
      env: "USERSHARD_MGMT_CA",
      description: "with --tls, trust the PEM CA certificates in FILE instead",
    },
  },
  details: `Examples:
  usershard shards --node 8552
  usershard shards --all`,
} as const satisfies CommandSpec;

/** `usershard shards`. */
export const shardsCommand = defineCommand(shardsSpec, async (flags, positionals) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const endpoint = endpointFlag("node", flags.node, flags.host);
  if (flags.ca !== undefined && !flags.tls) throw new UsageError("--ca needs --tls");
  const client = new ManagementClient(flags.tls ? { ca: flags.ca && fileFlag("ca", flags.ca) } : undefined);
  try {
    if (flags.all) await printAll(client, endpoint, flags.type, flags.json);
    else await printOne(client, endpoint, flags.type, flags.json);
    return 0;
  } catch (error) {
    if (error instanceof ManagementError) throw new CliError(error.message);
    throw error;
  } finally {
    client.close();
  }
});

async function printOne(client: ManagementClient, endpoint: string, type: string, json: boolean): Promise<void> {
  const shards = await client.shards(endpoint, type);
  const colocated = colocatedShards(shards);
  if (json) return writeStdout(JSON.stringify({ ...shards, colocated }, null, 2) + "\n");
  const members = await client.members(endpoint);
  const consumed = shards.consumedPartitions && new Set(shards.consumedPartitions);
  const rows = [...shards.regions].sort((a, b) => Number(a.shardId) - Number(b.shardId));
  const lines = [
    `Shards of ${type} on ${members.selfNode} (management ${endpoint})`,
    "shard  entities  partition consumed here",
    ...rows.map((r) =>
      `${r.shardId.padStart(5)}  ${String(r.numEntities).padStart(8)}  ${
        consumed ? (consumed.has(Number(r.shardId)) ? "yes" : "no") : "?"
      }`
    ),
  ];
  const entities = rows.reduce((n, r) => n + r.numEntities, 0);
  lines.push(
    `${rows.length} shards, ${entities} entities; ${
      colocated === null
        ? "co-location unknown: the node does not say which partitions it consumes"
        : `${colocated} of ${rows.length} co-located with their partition's consumer`
    }`,
  );
  await writeStdout(lines.join("\n") + "\n");
}

interface NodeShards {
  readonly node: string;
  readonly management: string;
  readonly shards?: ShardsJson;
  /** With `shards`: see {@linkcode colocatedShards} (`null`: unknown). */
  readonly colocated?: number | null;
  readonly error?: string;
}

/**
 * Prints every member's shards. A member that cannot be read gets a line of
 * its own, the total says it is partial, and after the output the command
 * fails (exit 1) with one line on stderr: a script must not take a partial
 * picture for the whole. With no members there is nothing to show at all.
 */
async function printAll(client: ManagementClient, endpoint: string, type: string, json: boolean): Promise<void> {
  const members = await client.members(endpoint);
  const live = members.members.filter((m) => m.status === "Up" || m.status === "Leaving");
  if (live.length === 0) {
    throw new ManagementError(
      `${members.selfNode} knows no Up members, so there is no placement to show (has it joined a cluster yet?)`,
    );
  }
  const nodes: NodeShards[] = await Promise.all(
    live.map(async (m) => {
      if (!m.management) return { node: m.node, management: "", error: "its management address is unknown" };
      try {
        const shards = await client.shards(m.management, type);
        return { node: m.node, management: m.management, shards, colocated: colocatedShards(shards) };
      } catch (error) {
        return {
          node: m.node,
          management: m.management,
          error: error instanceof Error ? error.message : String(error),
        };
      }
    }),
  );
  const unread = nodes.filter((n) => n.error);
  if (unread.length === nodes.length) throw new ManagementError(`no member could be read: ${nodes[0].error}`);
  try {
    if (json) await writeStdout(JSON.stringify({ type, complete: unread.length === 0, nodes }, null, 2) + "\n");
    else await writeStdout(placementTable(type, members.selfNode, nodes));
  } catch (error) {
    // A closed pipe ends the output, not the verdict on the members.
    if (!(error instanceof StdoutClosed)) throw error;
  }
  if (unread.length > 0) {
    const which = unread.map((n) => n.node).join(", ");
    throw new CliError(
      `${unread.length} of ${nodes.length} members could not be read (${which}); the totals leave out their shards`,
    );
  }
}

function placementTable(type: string, via: string, nodes: readonly NodeShards[]): string {
  const hostedBy = new Map<number, string[]>();
  const rows = nodes.map((n) => {
    const ids = (n.shards?.regions ?? []).map((r) => Number(r.shardId));
    for (const id of ids) hostedBy.set(id, [...(hostedBy.get(id) ?? []), n.node]);
    return {
      node: n.node,
      ids,
      entities: (n.shards?.regions ?? []).reduce((sum, r) => sum + r.numEntities, 0),
      colocated: n.colocated ?? null,
      error: n.error,
    };
  });
  const read = rows.filter((r) => !r.error);
  const partial = read.length < rows.length;
  const totalLabel = partial ? "total (partial)" : "total";
  const width = Math.max(4, totalLabel.length, ...rows.map((r) => r.node.length)) + 2;
  const line = (a: string, b: string, c: string, d: string) =>
    `${a.padEnd(width)}${b.padStart(6)}  ${c.padStart(8)}  ${d}`;
  const total = read.reduce((t, r) => ({
    shards: t.shards + r.ids.length,
    entities: t.entities + r.entities,
    // A node that does not say, and hosts shards, makes the total unknown: counting its shards as apart would
    // understate it.
    colocated: t.colocated === null || (r.colocated === null && r.ids.length > 0)
      ? null
      : t.colocated + (r.colocated ?? 0),
  }), { shards: 0, entities: 0, colocated: 0 as number | null });
  const totalColocation = total.colocated === null
    ? "unknown: not every node says which partitions it consumes"
    : `${total.colocated}/${total.shards} (${
      total.shards > 0 ? Math.round((100 * total.colocated) / total.shards) : 100
    }%)`;
  const counted = partial ? `, counting ${read.length} of ${rows.length} nodes` : "";
  const out = [
    `Shards of ${type} across ${rows.length} nodes (via ${via})`,
    line("node", "shards", "entities", "co-located with their partition's consumer"),
    ...rows.map((r) =>
      r.error
        ? line(r.node, "?", "?", `could not be read, its shards are not counted: ${r.error}`)
        : line(r.node, String(r.ids.length), String(r.entities), colocationCell(r.colocated, r.ids.length))
    ),
    line(totalLabel, String(total.shards), String(total.entities), `${totalColocation}${counted}`),
    "",
    ...read.map((r) => `${r.node} hosts shards ${compactRanges(r.ids) || "(none)"}`),
  ];
  const twice = [...hostedBy].filter(([, where]) => where.length > 1).map(([id]) => id);
  if (twice.length > 0) out.push(`hosted on more than one node: ${compactRanges(twice)}`);
  return out.join("\n") + "\n";
}

function colocationCell(colocated: number | null, shards: number): string {
  return colocated === null ? "unknown: the node does not say which partitions it consumes" : `${colocated}/${shards}`;
}
