/**
 * The production topology: three brokers, every topic three times
 * replicated, writes taken once two copies hold them. Brokers die and
 * restart under a steady stream; the nodes carry on by themselves, and
 * every user's totals end exactly what the topic's records add up to, on
 * every node.
 */
import assert from "node:assert/strict";
import { nodePorts, ready, shardsOf, startProcessor, type Stream, withNodes } from "../support/cluster.ts";
import { createTopic, testKafka } from "../support/kafka.ts";
import type { RunningUsershard } from "../support/process.ts";
import { exactOnEveryNode, SteadyStream } from "../support/totals.ts";
import { eventually } from "../support/wait.ts";
import { fullyReplicated, killBroker, leaders, startBrokers, stopBroker } from "./brokers.ts";

const SHARDS = 16;

/** Three nodes on a fresh topic, ready, every shard on its partition's consumer. */
async function threeNodes(started: RunningUsershard[], stream: Stream) {
  const kafka = testKafka();
  await createTopic(stream.topic, SHARDS);
  const ports = nodePorts(3);
  const nodes = ports.map((p) => startProcessor(p, ports.slice(0, 2), stream));
  started.push(...nodes);
  await Promise.all(nodes.map((node, i) => ready(node, ports[i])));
  await settled(ports, stream);
  return { kafka, ports, nodes };
}

async function settled(ports: ReturnType<typeof nodePorts>, stream: Stream, timeoutMs = 120_000) {
  await eventually("every shard hosted once, on its partition's consumer", async () => {
    const views = await Promise.all(ports.map((p) => shardsOf(p, stream.group)));
    if (views.some((v) => v === undefined)) return false;
    const hosted = views.flatMap((v) => v!.shards);
    return hosted.length === SHARDS && new Set(hosted).size === SHARDS &&
      views.every((v) => JSON.stringify(v!.shards) === JSON.stringify(v!.consumed));
  }, timeoutMs);
}

/**
 * Three nodes under a steady stream while `brokers` does what it does to the
 * brokers (given the stream, and the input and changelog topics); then every
 * broker runs again, and every node is alive and exact.
 */
function underSteadyStream(
  name: string,
  brokers: (steady: SteadyStream, topics: { readonly input: string; readonly changelog: string }) => Promise<void>,
): Promise<void> {
  return withNodes(name, async (started, stream) => {
    const { kafka, ports, nodes } = await threeNodes(started, stream);
    const steady = new SteadyStream(stream.topic, { users: 200, perSecond: 400 });
    try {
      await brokers(steady, { input: stream.topic, changelog: `${stream.group}-changelog` });
      await steady.reach(steady.sent + 800, 120_000);
    } finally {
      await steady.stop();
      await startBrokers();
    }
    await settled(ports, stream);
    await exactOnEveryNode(kafka, stream.topic, ports, 120_000);
    for (const node of nodes) assert.ok(node.running, `a node exited:\n${node.stderr.slice(-3000)}`);
  });
}

Deno.test("kill -9 of the broker leading most changelog partitions mid-stream, then its restart: exact", async () => {
  await underSteadyStream("replicated-leader", async (steady, { input, changelog }) => {
    await steady.reach(1000);
    const [[victim, led]] = await leaders(changelog);
    console.log(`kill -9 of broker ${victim}, which leads ${led} of ${SHARDS} changelog partitions`);
    await killBroker(victim);
    await steady.reach(steady.sent + 1500, 180_000);
    await startBrokers();
    await fullyReplicated([input, changelog]);
  });
});

Deno.test("a rolling restart of all three brokers under a steady stream: the nodes carry on, exact", async () => {
  await underSteadyStream("replicated-rolling", async (steady, { input, changelog }) => {
    await steady.reach(800);
    for (const broker of [1, 2, 3]) {
      console.log(`restarting broker ${broker}`);
      await stopBroker(broker);
      await steady.reach(steady.sent + 400, 120_000);
      await startBrokers();
      // The next broker goes only once this one caught up, as an operator's rolling restart waits.
      await fullyReplicated([input, changelog]);
    }
  });
});
