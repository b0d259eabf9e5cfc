/**
 * Sharding throughput and placement on real processes and the local broker:
 * - end-to-end events/s through a 2-node cluster on a pre-filled topic, next
 *   to the raw kafkajs consume rate of the same topic (the ratio matters);
 * - the share of events processed on the node that consumed them, after
 *   settling;
 * - the time from a third node's start to every shard sitting with its
 *   partition's consumer.
 *
 * @module
 */
import { createAdmin } from "../kafka/client.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { groupPlacement } from "../kafka/assignment.ts";
import { produce, PurchaseSender } from "../kafka/producer.ts";
import { addressOf, eventually, nodePorts, shardsOf, startProcessor } from "../tests/support/cluster.ts";
import { kafkajsClient } from "../tests/support/kafka.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";
import { rawConsume } from "./raw_consume.ts";

interface Stats {
  events: number;
  local: number;
  malformed: number;
}

async function stats(mgmt: number): Promise<Stats> {
  const response = await fetch(`http://127.0.0.1:${mgmt}/stats`);
  return await response.json();
}

/** Runs the sharding benchmarks with a topic pre-filled with `events` purchases. */
export async function benchSharding(context: BenchContext, events = 400_000): Promise<void> {
  const kafka = kafkajsClient(context.brokers, "usershard-bench");
  const admin = createAdmin({ brokers: context.brokers, clientId: "usershard-bench" });
  const topic = uniqueTopic("bench-sharding");
  await ensureTopic(admin, topic, 128);
  const producer = new PurchaseSender({ brokers: context.brokers, clientId: "usershard-bench" }, topic, 128);
  await produce(producer, { users: 10_000, rate: 0, count: events }, new AbortController().signal);

  const started = performance.now();
  const rawRate = await rawConsume(kafka, topic, events);
  const rawSeconds = (performance.now() - started) / 1000;

  // The same topic end to end through two nodes, from the first node's start.
  const stream = { topic, group: uniqueTopic("bench-group") };
  const [a, b, c] = nodePorts(3);
  const nodes = [startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream)];
  try {
    const start = performance.now();
    let first: { at: number; events: number } | undefined;
    await eventually("all events processed", async () => {
      const s = await Promise.all([a, b].map((n) => stats(n.mgmt).catch(() => ({ events: 0 }))));
      const processed = s.reduce((sum, x) => sum + x.events, 0);
      if (first === undefined && processed > 0) first = { at: performance.now(), events: processed };
      return processed >= events;
    }, 600_000);
    const end = performance.now();
    const e2eSeconds = (end - start) / 1000;
    const e2eRate = events / e2eSeconds;
    const steadyRate = (events - first!.events) / ((end - first!.at) / 1000);
    context.report("sharding: raw kafkajs consume", `${Math.round(rawRate)} events/s`, {
      events,
      seconds: rawSeconds.toFixed(1),
    });
    context.report("sharding: end to end, 2 nodes", `${Math.round(e2eRate)} events/s`, {
      seconds: e2eSeconds.toFixed(1),
      ratio: `${(e2eRate / rawRate * 100).toFixed(0)}% of raw`,
      includes: "cluster start, group joins, rebalance",
    });
    context.report("sharding: end to end, 2 nodes, once flowing", `${Math.round(steadyRate)} events/s`, {
      ratio: `${(steadyRate / rawRate * 100).toFixed(0)}% of raw`,
      from: "the first event processed",
    });

    // After settling: what share of new events is processed where it was consumed?
    const settled = await coLocated([a, b]);
    const before = await Promise.all([a, b].map((n) => stats(n.mgmt)));
    await produce(producer, { users: 10_000, rate: 0, count: 20_000 }, new AbortController().signal);
    await eventually("new events processed", async () => {
      const now = await Promise.all([a, b].map((n) => stats(n.mgmt)));
      return now.reduce((s, x) => s + x.events, 0) - before.reduce((s, x) => s + x.events, 0) >= 20_000;
    }, 120_000);
    const after = await Promise.all([a, b].map((n) => stats(n.mgmt)));
    const delta = (key: "events" | "local") =>
      after.reduce((s, x) => s + x[key], 0) - before.reduce((s, x) => s + x[key], 0);
    context.report(
      "sharding: processed locally after settling",
      `${(100 * delta("local") / delta("events")).toFixed(1)} %`,
      {
        events: delta("events"),
      },
    );

    const third = performance.now();
    nodes.push(startProcessor(c, [a, b], stream));
    const three = await coLocated([a, b, c]);
    context.report("sharding: third node start → 100 % co-located", `${Math.round(performance.now() - third)} ms`);
    const moved = settled.reduce((sum, before, i) => sum + before.filter((s) => !three[i].includes(s)).length, 0);
    context.report("sharding: shards moved when a third node joins", `${moved} of 128`, {
      fewest: three[2].length,
    });
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    await producer.close();
    await admin.close();
  }

  /** Waits for every shard to sit on its partition's consumer; each node's shards then. */
  async function coLocated(ports: { mgmt: number; remoting: number; grpc: number }[]): Promise<number[][]> {
    return await eventually("co-location", async () => {
      const views = await Promise.all(ports.map((p) => shardsOf(p, stream.group)));
      const placement = await groupPlacement(admin, stream.group, topic);
      if (!placement || views.some((v) => !v || v.consumed.length === 0)) return undefined;
      const hosted = views.flatMap((v) => v!.shards);
      const ok = hosted.length === 128 &&
        ports.every((p, i) =>
          views[i]!.shards.every((s) => placement.get(s) === addressOf(p)) &&
          JSON.stringify(views[i]!.shards) === JSON.stringify(views[i]!.consumed)
        );
      return ok ? views.map((v) => v!.shards) : undefined;
    }, 120_000);
  }
}
