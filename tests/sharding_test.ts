import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { create, toBinary } from "@bufbuild/protobuf";
import { UserPurchaseProtoSchema } from "../proto/gen/user_events_pb.ts";
import { groupPlacement } from "../kafka/assignment.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import type { Purchase } from "../kafka/purchase.ts";
import { runUsershard } from "./support/cli.ts";
import { usershardCommand } from "../scripts/usershard_process.ts";
import { freePort } from "./support/process.ts";
import { exactOnEveryNode, SteadyStream } from "./support/totals.ts";
import {
  addressOf,
  eventually,
  type NodePorts,
  nodePorts,
  shardsOf,
  shardState,
  startProcessor,
  type Stream,
  withNodes,
} from "./support/cluster.ts";
import {
  createTopic,
  expectedTotals,
  knownPurchases,
  producePurchases,
  readTopic,
  testAdmin,
  testKafka,
} from "./support/kafka.ts";

/**
 * Waits until the live nodes host every shard exactly once, each on the node
 * whose consumer Kafka gave the partition (per the group's own description).
 */
async function coLocated(nodes: readonly NodePorts[], stream: Stream, shardCount: number, timeoutMs = 60_000) {
  const admin = testAdmin();
  try {
    const describe = async () => {
      const views = await Promise.all(nodes.map((n) => shardsOf(n, stream.group)));
      const placement = await groupPlacement(admin, stream.group, stream.topic);
      return { views, placement };
    };
    return await eventually(
      "every shard hosted once, on its partition's consumer",
      async () => {
        const { views, placement } = await describe();
        if (!placement || views.some((v) => v === undefined)) return undefined;
        const hosted = views.flatMap((v) => v!.shards);
        if (hosted.length !== shardCount || new Set(hosted).size !== shardCount) return undefined;
        // Every node consumes (Kafka has let all of them in), and hosts exactly what it consumes.
        const ok = nodes.every((n, i) =>
          views[i]!.consumed.length > 0 &&
          views[i]!.shards.every((shard) => placement.get(shard) === addressOf(n)) &&
          JSON.stringify(views[i]!.shards) === JSON.stringify(views[i]!.consumed)
        );
        return ok ? views.map((v) => v!) : undefined;
      },
      timeoutMs,
      async () => {
        const { views, placement } = await describe();
        return `hosted: ${JSON.stringify(views.map((v) => v?.shards.length))}, consumed: ${
          JSON.stringify(views.map((v) => v?.consumed.length))
        }, group stable: ${placement !== undefined}`;
      },
    );
  } finally {
    await admin.close();
  }
}

/** Every user's totals, read from the shard state on whichever node hosts the user's shard. */
async function totalsByUser(nodes: readonly NodePorts[], stream: Stream) {
  const totals = new Map<string, { totalPurchases: number; amountSpent: number }>();
  for (const node of nodes) {
    const view = await shardsOf(node, stream.group);
    for (const shard of view?.shards ?? []) {
      const state = await shardState(node, stream.group, shard);
      for (const e of state?.entities ?? []) {
        totals.set(e.userId, { totalPurchases: e.totalPurchases, amountSpent: e.amountSpent });
      }
    }
  }
  return totals;
}

function differences(
  actual: Map<string, { totalPurchases: number; amountSpent: number }>,
  expected: Map<string, { totalPurchases: number; amountSpent: number }>,
): string[] {
  const users = new Set([...actual.keys(), ...expected.keys()]);
  return [...users].filter((u) => JSON.stringify(actual.get(u)) !== JSON.stringify(expected.get(u)))
    .map((u) => `user ${u}: ${JSON.stringify(actual.get(u))} != ${JSON.stringify(expected.get(u))}`);
}

async function exactTotals(nodes: readonly NodePorts[], stream: Stream, purchases: readonly Purchase[]) {
  const expected = expectedTotals(purchases);
  await eventually(
    "every user's totals equal what was produced",
    async () => differences(await totalsByUser(nodes, stream), expected).length === 0,
    60_000,
    async () => differences(await totalsByUser(nodes, stream), expected).slice(0, 5).join("; "),
  );
}

Deno.test("the walkthrough: 128 shards on one node, 64 each on two, ~43 on three, always on their partition's consumer", async () => {
  await withNodes("walkthrough", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 128);
    const purchases = knownPurchases(600, 200);
    await producePurchases(kafka, stream.topic, purchases);
    const [a, b, c] = nodePorts(3);

    started.push(startProcessor(a, [a, b], stream));
    const [one] = await coLocated([a], stream, 128);
    assert.equal(one.shards.length, 128);
    await exactTotals([a], stream, purchases);

    started.push(startProcessor(b, [a, b], stream));
    const two = await coLocated([a, b], stream, 128);
    assert.deepEqual(two.map((v) => v.shards.length), [64, 64]);

    started.push(startProcessor(c, [a, b], stream));
    const three = await coLocated([a, b, c], stream, 128);
    for (const view of three) assert.ok([42, 43].includes(view.shards.length), `${view.shards.length} shards`);
    // Sticky assignment: the third node's shards come from the other two, and nothing moves between those.
    for (const i of [0, 1]) {
      const gained = three[i].shards.filter((shard) => !two[i].shards.includes(shard));
      assert.deepEqual(gained, [], `node ${i + 1} gained shards ${gained} when the third node joined`);
    }
    await exactTotals([a, b, c], stream, purchases);
    assert.match(started[0].stderr, /rebalance started for \d+ shards: 127\.0\.0\.1:\d+ → 127\.0\.0\.1:\d+ \[/);
    assert.match(started[0].stderr, /rebalance of \d+ shards completed in \d+ ms/);

    // What `usershard shards` shows of the same cluster.
    const type = ["--type", stream.group];
    const all = await runUsershard(["shards", "--node", `127.0.0.1:${a.mgmt}`, "--all", ...type]);
    assert.equal(all.code, 0, all.stderr);
    assert.match(all.stdout, /\ntotal\s+128\s+200\s+128\/128 \(100%\)\n/);
    for (const node of [a, b, c]) assert.match(all.stdout, new RegExp(`${addressOf(node)} hosts shards [\\d,-]+`));
    const ofB = await runUsershard(["shards", "--node", String(b.mgmt), "--host", "127.0.0.1", ...type]);
    assert.equal(ofB.code, 0, ofB.stderr);
    assert.match(ofB.stdout, new RegExp(`^Shards of ${stream.group} on ${addressOf(b)}`));
    assert.match(ofB.stdout, /\n(4[23]) shards, \d+ entities; \1 of \1 co-located with their partition's consumer\n$/);
    const json = await runUsershard(["shards", "--node", `127.0.0.1:${c.mgmt}`, "--json", ...type]);
    assert.deepEqual(
      (JSON.parse(json.stdout).regions as { shardId: string }[]).map((r) => Number(r.shardId)).sort((x, y) => x - y),
      (await shardsOf(c, stream.group))!.shards,
    );
    const dead = await runUsershard(["shards", "--node", `127.0.0.1:${freePort()}`, ...type]);
    assert.equal(dead.code, 1);
    assert.match(
      dead.stderr,
      /^usershard shards: cannot reach the management endpoint http:\/\/127\.0\.0\.1:\d+: connection refused/,
    );
    assert.equal(dead.stderr.trim().split("\n").length, 1);

    // Mistaken --node and --type: one line each that says what to give instead.
    const mistakes = await Promise.all([
      runUsershard(["shards", "--node", `127.0.0.1:${a.remoting}`, ...type]),
      runUsershard(["shards", "--node", `127.0.0.1:${a.grpc}`, ...type]),
      runUsershard(["shards", "--node", `127.0.0.1:${a.mgmt}`]),
      runUsershard(["shards", "--node", "99999", ...type]),
    ]);
    assert.deepEqual(mistakes.map((m) => [m.code, m.stdout, m.stderr.split("\n").length]), [
      [1, "", 2],
      [1, "", 2],
      [1, "", 2],
      [2, "", 2],
    ]);
    for (const [i, port] of [a.remoting, a.grpc].entries()) {
      assert.match(
        mistakes[i].stderr,
        new RegExp(`\\(is ${port} the node's management port\\? --node takes its --mgmt port; .* needs --tls\\)\n$`),
      );
    }
    assert.match(
      mistakes[2].stderr,
      new RegExp(
        `^usershard shards: the node at http://127\\.0\\.0\\.1:${a.mgmt} has no shard type 'user-processing' ` +
          "\\(--type must be the node's consumer group, its --group\\)\n$",
      ),
    );
    assert.match(mistakes[3].stderr, /^usershard shards: --node must be a port \(1-65535\) or host:port, got '99999'/);

    // A closed stdout (a pipe into `head`) ends the command quietly.
    const piped = usershardCommand(["shards", "--node", `127.0.0.1:${a.mgmt}`, "--all", ...type]).spawn();
    await piped.stdout.cancel();
    const [pipedStatus, pipedStderr] = await Promise.all([piped.status, new Response(piped.stderr).text()]);
    assert.deepEqual([pipedStatus.code, pipedStderr], [0, ""]);

    // A member that cannot be read (kill -9; it stays a member for seconds): its own line, a total that says it
    // is partial, and exit 1.
    started[2].kill("SIGKILL");
    await started[2].exited();
    const [partial, partialJson] = await Promise.all(
      [[], ["--json"]].map((json) =>
        runUsershard(["shards", "--node", `127.0.0.1:${a.mgmt}`, "--all", ...type, ...json])
      ),
    );
    const lost = addressOf(c);
    assert.equal(partial.code, 1);
    assert.match(
      partial.stdout,
      new RegExp(`\n${lost.replaceAll(".", "\\.")} +\\? +\\? +could not be read, its shards are not counted: `),
    );
    const counted = 128 - three[2].shards.length;
    assert.match(
      partial.stdout,
      new RegExp(`\ntotal \\(partial\\) +${counted} +\\d+ +${counted}/${counted} \\(100%\\), counting 2 of 3 nodes\n`),
    );
    assert.equal(
      partial.stderr,
      `usershard shards: 1 of 3 members could not be read (${lost}); the totals leave out their shards\n`,
    );
    // A closed stdout ends the table, not the verdict.
    const pipedPartial = usershardCommand(["shards", "--node", `127.0.0.1:${a.mgmt}`, "--all", ...type]).spawn();
    await pipedPartial.stdout.cancel();
    const [pipedPartialStatus, pipedPartialStderr] = await Promise.all([
      pipedPartial.status,
      new Response(pipedPartial.stderr).text(),
    ]);
    assert.deepEqual([pipedPartialStatus.code, pipedPartialStderr], [1, partial.stderr]);
    assert.equal(partialJson.code, 1);
    assert.equal(partialJson.stderr, partial.stderr);
    const view = JSON.parse(partialJson.stdout) as { complete: boolean; nodes: { node: string; error?: string }[] };
    assert.equal(view.complete, false);
    assert.deepEqual(view.nodes.filter((n) => n.error).map((n) => n.node), [lost]);
  });
});

Deno.test("a node whose topic has another partition count is refused and exits with a clear error", async () => {
  await withNodes("mismatch", async (started, stream) => {
    const other = { topic: `${stream.topic}-8`, group: stream.group };
    await createTopic(stream.topic, 4);
    await createTopic(other.topic, 8);
    const [a, b, c] = nodePorts(3);
    started.push(startProcessor(a, [a, b], stream));
    await coLocated([a], stream, 4);
    // With durable state the group's changelog refuses the layout before the node joins.
    const durable = startProcessor(c, [a, b], other);
    started.push(durable);
    assert.equal((await durable.exited(60_000)).code, 1);
    assert.match(
      durable.stderr,
      new RegExp(
        `usershard process: changelog topic ${stream.group}-changelog has 4 partitions but there are 8 shards: ` +
          "it belongs to another topic layout; give this topic another --group\n$",
      ),
    );
    // Without it, the cluster itself refuses the node.
    const intruder = startProcessor(b, [a, b], other, ["--state", "memory"]);
    started.push(intruder);
    const status = await intruder.exited(60_000);
    assert.equal(status.code, 1);
    assert.match(
      intruder.stderr,
      new RegExp(
        `usershard process: this cluster has 4 shards \\(partitions of its topic\\) but ${addressOf(b)} has 8; ` +
          "nodes with different counts cannot work together\n$",
      ),
    );
    assert.deepEqual((await shardsOf(a, stream.group))?.shards, [0, 1, 2, 3]);
  });
});

Deno.test("totals stay exact while nodes join and leave gracefully under a steady stream", async () => {
  await withNodes("exact", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 16);
    const [a, b, c, d] = nodePorts(4);
    const seeds = [a, b];

    const nodeA = startProcessor(a, seeds, stream);
    const nodeB = startProcessor(b, seeds, stream);
    started.push(nodeA, nodeB);
    await coLocated([a, b], stream, 16);
    // One producer at a steady rate from before the first join to after the last: every handoff
    // happens while events for the moving shards keep arriving.
    const steady = new SteadyStream(stream.topic, { users: 64, perSecond: 300, seed: 7 });
    try {
      await steady.reach(600);
      started.push(startProcessor(c, seeds, stream));
      await coLocated([a, b, c], stream, 16);
      await steady.reach(steady.sent + 600);

      nodeB.kill("SIGTERM");
      assert.equal((await nodeB.exited(30_000)).code, 0, nodeB.stderr);
      assert.match(nodeB.stderr, /handed off \d+ shards in \d+ ms/);
      await steady.reach(steady.sent + 600);

      started.push(startProcessor(d, seeds, stream));
      await coLocated([a, c, d], stream, 16);
      await steady.reach(steady.sent + 600);
    } finally {
      console.log(`${await steady.stop()} events sent`);
    }
    await exactOnEveryNode(kafka, stream.topic, [a, c, d]);
  });
});

Deno.test("after kill -9 the lost shards restore from the changelog elsewhere: every total exact", async () => {
  await withNodes("crash", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 12);
    const before = knownPurchases(1200, 48, 3);
    const after = knownPurchases(600, 48, 4);
    const [a, b, c] = nodePorts(3);
    const seeds = [a, b];
    const nodes = [
      startProcessor(a, seeds, stream),
      startProcessor(b, seeds, stream),
      startProcessor(c, seeds, stream),
    ];
    started.push(...nodes);
    await coLocated([a, b, c], stream, 12);
    await producePurchases(kafka, stream.topic, before);
    await exactTotals([a, b, c], stream, before);

    nodes[2].kill("SIGKILL");
    await producePurchases(kafka, stream.topic, after);
    await coLocated([a, b], stream, 12, 90_000);
    // Counts and amounts, any difference: a lost shard that restarted empty, or counted an event twice, fails.
    await exactTotals([a, b], stream, [...before, ...after]);
    assert.match(nodes[0].stderr + nodes[1].stderr, /shards were lost with 127\.0\.0\.1:\d+/);
    assert.match(nodes[0].stderr + nodes[1].stderr, /restored shard \d+ from \S+-changelog: [1-9]\d* users/);
  });
});

Deno.test("malformed records are logged, counted, skipped and committed past; the rest is processed", async () => {
  await withNodes("malformed", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 4);
    const good = knownPurchases(40, 8, 5);
    await producePurchases(kafka, stream.topic, good.slice(0, 20));
    const value = (fields: { userId?: string; quantity?: bigint; price?: bigint }) =>
      Buffer.from(toBinary(UserPurchaseProtoSchema, create(UserPurchaseProtoSchema, { product: "rope", ...fields })));
    const wrongPartition = (partitionFor("1", 4) + 1) % 4;
    const bad = [
      { key: "1", value: Buffer.from("definitely not protobuf \u00ff\u00fe"), partition: partitionFor("1", 4) },
      { key: "", value: value({ userId: "", quantity: 1n, price: 1n }), partition: 0 },
      { key: "2", value: value({ userId: "2", quantity: -3n, price: 10n }), partition: partitionFor("2", 4) },
      { key: "3", value: value({ userId: "4", quantity: 1n, price: 10n }), partition: partitionFor("3", 4) },
      { key: "1", value: value({ userId: "1", quantity: 1n, price: 10n }), partition: wrongPartition },
    ];
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({ topic: stream.topic, messages: bad });
    await producer.disconnect();
    await producePurchases(kafka, stream.topic, good.slice(20));

    const [a] = nodePorts(1);
    const node = startProcessor(a, [a], stream);
    started.push(node);
    await exactTotals([a], stream, good);
    await node.waitForOutput(/((skipping malformed record [\s\S]*){5})/, 30_000);
    const reasons = [...node.stderr.matchAll(/skipping malformed record (\S+)@(\d+): (.*)/g)].map((m) => m[3]);
    assert.equal(reasons.length, 5, node.stderr);
    for (
      const reason of [
        /not a UserPurchaseProto/,
        /empty user id/,
        /quantity -3 is outside/,
        /key '3' differs from the value's user id '4'/,
        /user 1 belongs in partition \d, not \d/,
      ]
    ) assert.ok(reasons.some((r) => reason.test(r)), `no ${reason} in ${reasons}`);
    await node.waitForOutput(/5 malformed records skipped/, 20_000);

    const admin = kafka.admin();
    await admin.connect();
    try {
      const ends = await admin.fetchTopicOffsets(stream.topic);
      await eventually("offsets committed past every record", async () => {
        const [committed] = await admin.fetchOffsets({ groupId: stream.group, topics: [stream.topic] });
        return ends.every((end) =>
          committed.partitions.find((p) => p.partition === end.partition)?.offset === end.offset
        );
      }, 20_000);
    } finally {
      await admin.disconnect();
    }
    assert.equal((await fetch(`http://127.0.0.1:${a.mgmt}/ready`)).status, 200);
  });
});

Deno.test("a topic that grows while a node runs: the node stops with a clear error and skips nothing", async () => {
  await withNodes("resized", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 4);
    const before = knownPurchases(40, 20, 3);
    await producePurchases(kafka, stream.topic, before);
    const [a] = nodePorts(1);
    const node = startProcessor(a, [a], stream);
    started.push(node);
    await exactTotals([a], stream, before);

    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.createPartitions({ topicPartitions: [{ topic: stream.topic, count: 6 }] });
      // A producer that starts now partitions by the new count, so some users land in other partitions.
      await producePurchases(kafka, stream.topic, knownPurchases(40, 20, 4));
      const status = await node.exited(30_000);
      assert.equal(status.code, 1);
      assert.match(
        node.stderr,
        new RegExp(`usershard process: topic ${stream.topic} has 6 partitions now, not 4: .* restart every node\n$`),
      );
      const records = await readTopic(kafka, stream.topic);
      const [committed] = await admin.fetchOffsets({ groupId: stream.group, topics: [stream.topic] });
      for (const { partition, offset } of committed.partitions) {
        const misplaced = records.find((r) =>
          r.partition === partition && partitionFor(String(r.key), 4) !== partition
        );
        if (misplaced) {
          assert.ok(
            Number(offset) <= Number(misplaced.offset),
            `${partition}: committed ${offset} past ${misplaced.offset}`,
          );
        }
      }
    } finally {
      await admin.disconnect();
    }
    assert.doesNotMatch(node.stderr, /skipping malformed record/);
  });
});
