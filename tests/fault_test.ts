/**
 * Fault tests: real broker, real processes. Each one runs a fault through a
 * live stream and then checks, on every live node, that every user's totals
 * are exactly what the topic's own records add up to.
 */
import assert from "node:assert/strict";
import { seededRandom } from "../cluster/seeded_random.ts";
import { nodeClientId } from "../kafka/assignment.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import {
  eventually,
  type NodePorts,
  nodePorts,
  ready,
  rebalanceAfter,
  rebalanceMark,
  shardsOf,
  startProcessor,
  type Stream,
  withNodes,
} from "./support/cluster.ts";
import { createTopic, producePurchases, testKafka } from "./support/kafka.ts";
import type { RunningUsershard } from "./support/process.ts";
import { askNode, exactOnEveryNode, SteadyStream, topicTotals } from "./support/totals.ts";

const SCRIPTS = new URL("../scripts/", import.meta.url).pathname;

/** Waits until `nodes` host every shard exactly once, each on the node that consumes its partition. */
async function settled(nodes: readonly NodePorts[], stream: Stream, shards: number, timeoutMs = 90_000) {
  let last = "";
  await eventually(
    "every shard hosted once, on its partition's consumer",
    async () => {
      const views = await Promise.all(nodes.map((node) => shardsOf(node, stream.group)));
      last = JSON.stringify(views.map((v) => v && { hosted: v.shards.length, consumed: v.consumed.length }));
      if (views.some((v) => v === undefined)) return false;
      const hosted = views.flatMap((v) => v!.shards);
      return hosted.length === shards && new Set(hosted).size === shards &&
        views.every((v) => JSON.stringify(v!.shards) === JSON.stringify(v!.consumed));
    },
    timeoutMs,
    () => `views: ${last}`,
  );
}

/**
 * A topic of 16 partitions for the test, three nodes' ports, and the first
 * `running` of them started, ready and hosting every shard.
 */
async function streamingCluster(started: RunningUsershard[], stream: Stream, running = 3) {
  const kafka = testKafka();
  await createTopic(stream.topic, 16);
  const ports = nodePorts(3);
  const nodes = await startCluster(ports.slice(0, running), stream, started);
  await settled(ports.slice(0, running), stream, 16);
  return { kafka, ports, nodes };
}

/** The stream the fault tests run their faults through: 200 users, about 400 events a second. */
function steadyStream(stream: Stream, seed?: number): SteadyStream {
  return new SteadyStream(stream.topic, { users: 200, perSecond: 400, seed });
}

/** Starts the nodes of `ports` (the first two are the seeds) and waits until every one is ready. */
async function startCluster(ports: readonly NodePorts[], stream: Stream, started: RunningUsershard[]) {
  const nodes = ports.map((port) => startProcessor(port, ports.slice(0, 2), stream));
  started.push(...nodes);
  await Promise.all(nodes.map((node, i) => ready(node, ports[i], 60_000)));
  return nodes;
}

Deno.test("kill -9 of a random node, three times during a steady stream: every total exact on every node", async () => {
  // FAULT_SEED replays a run: the seed picks the victims and the stream's events, and is printed.
  const seed = Number(Deno.env.get("FAULT_SEED") ?? Math.floor(Math.random() * 2 ** 31));
  console.log(`FAULT_SEED=${seed}`);
  const random = seededRandom(seed);
  await withNodes("fault-kill", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream);
    const steady = steadyStream(stream, seed);
    try {
      for (let round = 0; round < 3; round++) {
        await steady.reach(steady.sent + 800);
        const victim = Math.floor(random() * ports.length);
        console.log(`round ${round + 1}: kill -9 of node ${victim + 1} after ${steady.sent} events`);
        nodes[victim].kill("SIGKILL");
        await nodes[victim].exited();
        // The same address again: a new incarnation of the node.
        nodes[victim] = startProcessor(ports[victim], ports.slice(0, 2), stream);
        started.push(nodes[victim]);
        await ready(nodes[victim], ports[victim]);
      }
      await steady.reach(steady.sent + 800);
    } finally {
      console.log(`${await steady.stop()} events sent`);
    }
    await settled(ports, stream, 16);
    await exactOnEveryNode(kafka, stream.topic, ports);
  });
});

Deno.test("a node frozen with SIGSTOP past failure detection and the Kafka session, then resumed: totals exact", async () => {
  await withNodes("fault-freeze", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream);
    const steady = steadyStream(stream);
    try {
      await steady.reach(800);
      const frozenAt = Date.now();
      nodes[2].kill("SIGSTOP");
      // The others take every shard only once the frozen node is downed and Kafka has
      // ended its session: both have passed then.
      await settled(ports.slice(0, 2), stream, 16, 120_000);
      await steady.reach(steady.sent + 800);
      console.log(`resumed after ${Date.now() - frozenAt} ms`);
      nodes[2].kill("SIGCONT");
      // It finds itself downed: its writes are fenced, and it leaves.
      await nodes[2].exited(60_000);
      nodes[2] = startProcessor(ports[2], ports.slice(0, 2), stream);
      started.push(nodes[2]);
      await ready(nodes[2], ports[2]);
      await steady.reach(steady.sent + 800);
    } finally {
      await steady.stop();
    }
    await settled(ports, stream, 16);
    await exactOnEveryNode(kafka, stream.topic, ports);
  });
});

Deno.test("every node stopped with SIGTERM and started again: totals carry on from where they were", async () => {
  await withNodes("fault-restart", async (started, stream) => {
    const { kafka, ports, nodes: first } = await streamingCluster(started, stream);
    const steady = steadyStream(stream);
    await steady.reach(1000);
    await steady.stop();
    const before = await exactOnEveryNode(kafka, stream.topic, ports);

    for (const node of first) node.kill("SIGTERM");
    for (const node of first) assert.equal((await node.exited(60_000)).code, 0, node.stderr);

    const again = await startCluster(ports, stream, started);
    await settled(ports, stream, 16);
    const more = steadyStream(stream, 99);
    await more.reach(1000);
    await more.stop();
    const after = await exactOnEveryNode(kafka, stream.topic, ports);
    const grown = [...before].filter(([user, t]) => after.get(user)!.totalPurchases > t.totalPurchases);
    assert.ok(grown.length > 100, `only ${grown.length} users bought more after the restart`);
    assert.match(again.map((n) => n.stderr).join(""), /restored shard \d+ from \S+-changelog: [1-9]\d* users/);
    // The checks ask as users do: zeros for a user who never bought, INVALID_ARGUMENT for a bad id.
    assert.deepEqual(await askNode(ports[0], "nobody"), { totalPurchases: 0, amountSpent: 0 });
    assert.equal(await askNode(ports[0], " "), "the user id is empty (INVALID_ARGUMENT)");
  });
});

Deno.test("the broker restarted mid-stream: nodes reconnect by themselves, nothing lost or doubled", async () => {
  await withNodes("fault-broker", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream);
    const steady = steadyStream(stream);
    try {
      await steady.reach(800);
      const stop = await new Deno.Command("bash", { args: [`${SCRIPTS}kafka.sh`, "stop"] }).output();
      assert.equal(stop.code, 0, new TextDecoder().decode(stop.stderr));
      const down = Date.now();
      const start = await new Deno.Command("bash", { args: [`${SCRIPTS}kafka.sh`, "start"] }).output();
      assert.equal(start.code, 0, new TextDecoder().decode(start.stderr));
      console.log(`broker down for ${Date.now() - down} ms`);
      await steady.reach(steady.sent + 1200, 180_000);
    } finally {
      await steady.stop();
    }
    await settled(ports, stream, 16, 120_000);
    await exactOnEveryNode(kafka, stream.topic, ports, 120_000);
    for (const node of nodes) assert.ok(node.running, `a node exited:\n${node.stderr.slice(-3000)}`);
  });
});

Deno.test("the node running the coordinator killed while shards move: totals exact on every node", async () => {
  await withNodes("fault-coordinator", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream, 2);
    const seeds = ports.slice(0, 2);
    const steady = steadyStream(stream);
    try {
      await steady.reach(800);
      // The first seed is the oldest member, so it runs the coordinator; the third node's join moves shards.
      const mark = await rebalanceMark(ports[0]);
      nodes.push(startProcessor(ports[2], seeds, stream));
      started.push(nodes[2]);
      await rebalanceAfter(ports[0], mark);
      nodes[0].kill("SIGKILL");
      await nodes[0].exited();
      await settled(ports.slice(1), stream, 16, 120_000);
      await steady.reach(steady.sent + 800);
      nodes[0] = startProcessor(ports[0], seeds, stream);
      started.push(nodes[0]);
      await ready(nodes[0], ports[0]);
      await steady.reach(steady.sent + 800);
    } finally {
      await steady.stop();
    }
    await settled(ports, stream, 16);
    await exactOnEveryNode(kafka, stream.topic, ports);
  });
});

Deno.test("a shard whose state is far past one 16 MiB frame moves when a second node joins, exact on both", async () => {
  await withNodes("fault-large", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 2);
    const ports = nodePorts(2);
    await startCluster(ports.slice(0, 1), stream, started);
    await settled(ports.slice(0, 1), stream, 2);
    // User ids near the query front end's 256-character limit: 70,000 users in each shard come
    // to about 18 MiB of state, past what one frame could carry.
    const padding = "u".repeat(240);
    const users = 140_000;
    const purchases = Array.from({ length: users }, (_, i) => ({
      userId: `${padding}${i}`,
      product: "rope",
      quantity: 1 + (i % 3),
      price: 1 + (i % 9973),
    }));
    await producePurchases(kafka, stream.topic, purchases);
    const expected = await topicTotals(kafka, stream.topic);
    const perShard = [0, 1].map((shard) => [...expected.keys()].filter((u) => partitionFor(u, 2) === shard).length);
    await eventually(
      "node 1 holds every user",
      async () => (await shardsOf(ports[0], stream.group))?.entities === users,
      120_000,
    );

    const mark = await rebalanceMark(ports[0]);
    started.push(startProcessor(ports[1], ports.slice(0, 1), stream));
    await rebalanceAfter(ports[0], mark, { completed: true, timeoutMs: 120_000 });
    await settled(ports, stream, 2, 120_000);
    // The shard that moved counts its users once its restore is done.
    const views = await eventually("each node holds every user of its shard", async () => {
      const views = await Promise.all(ports.map((node) => shardsOf(node, stream.group)));
      return views.every((v) => v?.shards.length === 1 && v.entities === perShard[v.shards[0]]) && views;
    }, 120_000);
    assert.deepEqual(views.map((v) => v!.shards.length), [1, 1]);
    // A sample of users of both shards, asked on both nodes.
    const sample = [...expected.keys()].filter((_, i) => i % 3000 === 0);
    for (const node of ports) {
      for (const user of sample) {
        assert.deepEqual(await askNode(node, user), expected.get(user), `user …${user.slice(-6)} on :${node.mgmt}`);
      }
    }
  });
});

/** Sends `signal` to the broker that `scripts/kafka.sh` started. */
async function signalBroker(signal: "SIGSTOP" | "SIGCONT"): Promise<void> {
  const pid = await new Deno.Command("bash", { args: [`${SCRIPTS}kafka.sh`, "pid"], stdout: "piped" }).output();
  assert.equal(pid.code, 0, "the broker's pid");
  Deno.kill(Number(new TextDecoder().decode(pid.stdout).trim()), signal);
}

Deno.test("the broker frozen for 45 s while a node joins: the moves finish soon after it thaws, totals exact", async () => {
  await withNodes("fault-freeze", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream, 2);
    const steady = steadyStream(stream);
    let frozen = false;
    try {
      await steady.reach(800);
      const mark = await rebalanceMark(ports[0]);
      nodes.push(startProcessor(ports[2], ports.slice(0, 2), stream));
      started.push(nodes[2]);
      await rebalanceAfter(ports[0], mark, { timeoutMs: 90_000 });
      await signalBroker("SIGSTOP");
      frozen = true;
      // The fault itself lasts 45 s: a broker that stopped answering, with changelog writes in flight.
      await new Promise((resolve) => setTimeout(resolve, 45_000));
      await signalBroker("SIGCONT");
      frozen = false;
      const thawed = Date.now();
      await steady.stop();
      // A write waits 8 s at most, and then its shard is reopened: the moves and the events frozen with the
      // broker must not wait out the client's minutes of retries.
      await settled(ports, stream, 16, 60_000);
      await exactOnEveryNode(kafka, stream.topic, ports, 60_000);
      console.log(`every shard moved and every total exact ${Date.now() - thawed} ms after the broker thawed`);
    } finally {
      if (frozen) await signalBroker("SIGCONT");
      await steady.stop();
    }
    for (const node of nodes) assert.ok(node.running, `a node exited:\n${node.stderr.slice(-3000)}`);
  });
});

Deno.test("a node frozen past the failure detector is downed; thawed, it exits 1 at once, releasing the group and its ports", async () => {
  await withNodes("fault-downed", async (started, stream) => {
    const { kafka, ports, nodes } = await streamingCluster(started, stream);
    const steady = steadyStream(stream);
    const victim = nodes[2];
    try {
      await steady.reach(800);
      victim.kill("SIGSTOP");
      // Down after 3 s unreachable + 5 s: frozen well past it, while the stream goes on.
      await settled(ports.slice(0, 2), stream, 16, 60_000);
      victim.kill("SIGCONT");
      const thawed = Date.now();
      const { code } = await victim.exited(60_000);
      console.log(`the downed node exited ${Date.now() - thawed} ms after it thawed`);
      assert.equal(code, 1);
      assert.match(
        victim.stderr.trim().split("\n").at(-1) ?? "",
        /^usershard process: this node was downed by the rest of the cluster/,
      );
      for (const port of [ports[2].remoting, ports[2].mgmt, ports[2].grpc]) {
        Deno.listen({ hostname: "127.0.0.1", port }).close();
      }
      // It left the consumer group on its way out, rather than holding its partitions until its session expired.
      const admin = kafka.admin();
      await admin.connect();
      const { groups } = await admin.describeGroups([stream.group]).finally(() => admin.disconnect());
      const clients = groups[0].members.map((m) => m.clientId);
      assert.ok(!clients.includes(nodeClientId(`127.0.0.1:${ports[2].remoting}`)), `still in the group: ${clients}`);
      await steady.reach(steady.sent + 800);
    } finally {
      victim.kill("SIGCONT");
      await steady.stop();
    }
    await exactOnEveryNode(kafka, stream.topic, ports.slice(0, 2));
  });
});
