import assert from "node:assert/strict";
import { runUsershard } from "../tests/support/cli.ts";
import type { MembersJson, ShardsJson } from "./management_client.ts";

/** A management endpoint that answers `routes` (path → JSON body) and 404 for anything else. */
async function withFakeNode<T>(
  routes: (port: number) => Record<string, unknown>,
  run: (port: number) => Promise<T>,
): Promise<T> {
  let port = 0;
  const answer = (request: Request): Response => {
    const body = routes(port)[new URL(request.url).pathname];
    return body === undefined ? Response.json({ message: "not found" }, { status: 404 }) : Response.json(body);
  };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, answer);
  port = server.addr.port;
  try {
    return await run(port);
  } finally {
    await server.shutdown();
  }
}

// Akka Management's (and Pekko's) answer: shards and entity counts, nothing about Kafka partitions.
const AKKA_SHARDS: ShardsJson = { regions: [{ shardId: "3", numEntities: 2 }, { shardId: "1", numEntities: 5 }] };

const members = (port: number, ...nodes: { node: string; management?: string }[]): MembersJson => ({
  selfNode: `pekko://usershard@127.0.0.1:${port}`,
  members: nodes.map((n) => ({ ...n, nodeUid: "1", status: "Up", roles: ["dc-default"] })),
  unreachable: [],
});

const TYPE = "user-processing";

Deno.test("shards --node: a node that does not report consumed partitions has co-location unknown, not 0", () =>
  withFakeNode(
    (port) => ({
      "/cluster/members": members(port, { node: `pekko://usershard@127.0.0.1:${port}` }),
      [`/cluster/shards/${TYPE}`]: AKKA_SHARDS,
    }),
    async (port) => {
      const text = await runUsershard(["shards", "--node", `127.0.0.1:${port}`]);
      assert.equal(text.code, 0, text.stderr);
      assert.deepEqual(text.stdout.trimEnd().split("\n").slice(1), [
        "shard  entities  partition consumed here",
        "    1         5  ?",
        "    3         2  ?",
        "2 shards, 7 entities; co-location unknown: the node does not say which partitions it consumes",
      ]);
      const json = await runUsershard(["shards", "--node", `127.0.0.1:${port}`, "--json"]);
      assert.equal(json.code, 0, json.stderr);
      assert.deepEqual(JSON.parse(json.stdout), { ...AKKA_SHARDS, colocated: null });
    },
  ));

Deno.test("shards --all: one member that does not say makes its row and the total unknown; the others still count", () =>
  withFakeNode(
    () => ({ [`/cluster/shards/${TYPE}`]: { regions: [{ shardId: "0", numEntities: 4 }], consumedPartitions: [0] } }),
    (usershardPort) =>
      withFakeNode(
        (port) => ({
          "/cluster/members": members(
            port,
            { node: "a:1", management: `127.0.0.1:${usershardPort}` },
            { node: "b:2", management: `127.0.0.1:${port}` },
          ),
          [`/cluster/shards/${TYPE}`]: AKKA_SHARDS,
        }),
        async (port) => {
          const text = await runUsershard(["shards", "--node", `127.0.0.1:${port}`, "--all"]);
          assert.equal(text.code, 0, text.stderr);
          const rows = text.stdout.split("\n").slice(2, 5).map((line) => line.replace(/\s+/g, " "));
          assert.deepEqual(rows, [
            "a:1 1 4 1/1",
            "b:2 2 7 unknown: the node does not say which partitions it consumes",
            "total 3 11 unknown: not every node says which partitions it consumes",
          ]);
          const json = await runUsershard(["shards", "--node", `127.0.0.1:${port}`, "--all", "--json"]);
          assert.equal(json.code, 0, json.stderr);
          const nodes = JSON.parse(json.stdout).nodes as { node: string; colocated: number | null }[];
          assert.deepEqual(nodes.map((n) => [n.node, n.colocated]), [["a:1", 1], ["b:2", null]]);
        },
      ),
  ));
