/**
 * What durable state costs and buys, on real processes and the local broker:
 * - the drain rate of a pre-filled topic through two nodes, with `--state
 *   kafka` and `--state memory`, next to raw kafkajs consuming the same
 *   topic in the same run, one Java consumer thread, and Kafka Streams doing
 *   the same aggregation (`jvm.ts`), for 10k users and for 1M users;
 * - the restore of a shard of a million users (entities/s);
 * - failover: from kill -9 of a node to every one of its shards answering
 *   its totals on the other node.
 *
 * @module
 */
import type { Admin } from "@platformatic/kafka";
import { createAdmin } from "../kafka/client.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { produce, PurchaseSender } from "../kafka/producer.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { UserStatsClient } from "../grpc/user_client.ts";
import { eventually, type NodePorts, nodePorts, shardsOf, startProcessor } from "../tests/support/cluster.ts";
import { kafkajsClient } from "../tests/support/kafka.ts";
import type { RunningUsershard } from "../tests/support/process.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";
import { rawConsume, rawPlatformaticConsume } from "./raw_consume.ts";
import { javaConsume, jvmClasspath, streamsDrain } from "./jvm.ts";

const SHARDS = 128;

/** A node's events acknowledged and its lag (`undefined` while it cannot say). */
async function progress(node: NodePorts): Promise<{ events: number; lag: number | undefined }> {
  try {
    const response = await fetch(`http://127.0.0.1:${node.mgmt}/stats`);
    const stats = (await response.json()) as { events: number; lag?: number | null };
    return { events: stats.events, lag: stats.lag ?? undefined };
  } catch {
    return { events: 0, lag: undefined };
  }
}

/**
 * Drains `topic` through two fresh nodes in a group of their own; events/s
 * from the first event processed to the last commit (lag 0 on both nodes),
 * polled every 200 ms. The second
 * node joins a second or two after the first has begun, so the rate includes
 * one rebalance and the move of half the shards, as a real start does; with
 * 2 million events that start is a small part of the drain (with 500,000 it
 * was most of it, and the figure varied by half from run to run).
 */
async function drain(topic: string, events: number, state: string): Promise<{ rate: number; nodes: Drained }> {
  const stream = { topic, group: uniqueTopic(`bench-${state}`) };
  const ports = nodePorts(2);
  const nodes = ports.map((p) => startProcessor(p, ports, stream, ["--state", state]));
  let first: { at: number; events: number } | undefined;
  await eventually(
    `${events} events drained (${state})`,
    async () => {
      const nodes = await Promise.all(ports.map(progress));
      const count = nodes.reduce((sum, node) => sum + node.events, 0);
      if (first === undefined && count > 0) first = { at: performance.now(), events: count };
      // Events a shard acknowledged twice (a partition that changed hands before its commit) count twice,
      // so the count alone can reach the total early: the drain ends when nothing is left to commit.
      return count >= events && nodes.every((node) => node.lag === 0);
    },
    900_000,
  );
  const rate = (events - first!.events) / ((performance.now() - first!.at) / 1000);
  return { rate, nodes: { ports, nodes, group: stream.group } };
}

interface Drained {
  readonly ports: NodePorts[];
  readonly nodes: RunningUsershard[];
  readonly group: string;
}

/** Runs the durability benchmarks. */
export async function benchDurability(context: BenchContext): Promise<void> {
  const kafka = kafkajsClient(context.brokers, "usershard-bench");
  // jvm.ts reads Kafka Streams' committed progress through kafkajs.
  const kafkajsAdmin = kafka.admin();
  await kafkajsAdmin.connect();
  const admin = createAdmin({ brokers: context.brokers, clientId: "usershard-bench" });
  const events = 2_000_000;
  const jvm = await jvmClasspath();
  try {
    for (const users of [10_000, 1_000_000]) {
      const topic = uniqueTopic(`bench-durability-${users}`);
      await ensureTopic(admin, topic, SHARDS);
      const sender = new PurchaseSender({ brokers: context.brokers, clientId: "usershard-bench" }, topic, SHARDS);
      await produce(sender, { users, rate: 0, count: events }, new AbortController().signal).finally(() =>
        sender.close()
      );
      const raw = await rawConsume(kafka, topic, events);
      context.report(`durability: raw kafkajs consume, ${users} users`, `${Math.round(raw)} events/s`, { events });
      const platformatic = await rawPlatformaticConsume(context.brokers, topic, events);
      context.report(
        `durability: raw @platformatic/kafka consume, ${users} users`,
        `${Math.round(platformatic)} events/s`,
        {
          ratio: `${(platformatic / raw).toFixed(2)} × raw`,
          client: "the one usershard consumes with",
        },
      );
      if ("classpath" in jvm) {
        const java = await javaConsume(jvm.classpath, context.brokers, topic, events);
        context.report(`durability: one Java consumer thread, ${users} users`, `${Math.round(java)} events/s`, {
          ratio: `${(java / raw).toFixed(2)} × raw`,
          parses: "each value",
        });
        const streams = await streamsDrain(jvm.classpath, context.brokers, kafkajsAdmin, topic);
        context.report(`durability: Kafka Streams, 2 instances, ${users} users`, `${Math.round(streams)} events/s`, {
          ratio: `${(streams / raw).toFixed(2)} × raw`,
          state: "RocksDB + changelog, exactly_once_v2",
          from: "the first committed progress",
        });
      } else {
        context.report(`durability: JVM contenders, ${users} users`, "not run", { reason: jvm.reason });
      }
      for (const state of ["memory", "kafka"]) {
        const { rate, nodes } = await drain(topic, events, state);
        context.report(`durability: 2 nodes, --state ${state}, ${users} users`, `${Math.round(rate)} events/s`, {
          ratio: `${(rate / raw).toFixed(2)} × raw kafkajs, ${(rate / platformatic).toFixed(2)} × raw platformatic`,
          from: "the first event processed",
        });
        if (state === "kafka" && users === 10_000) await failover(context, nodes);
        await Promise.all(nodes.nodes.map((n) => n.stop()));
      }
    }
    await restore(context, admin);
  } finally {
    await kafkajsAdmin.disconnect();
    await admin.close();
  }
}

/** kill -9 of one of two drained nodes, until every one of its shards answers on the other. */
async function failover(context: BenchContext, drained: Drained): Promise<void> {
  const [survivor, victim] = drained.ports;
  const lost = (await shardsOf(victim, drained.group))!.shards;
  // One user of each lost shard, with the totals it has before the crash.
  const users = lost.map((shard) => {
    for (let u = 0;; u++) if (partitionFor(String(u), SHARDS) === shard) return String(u);
  });
  const client = new UserStatsClient(`127.0.0.1:${survivor.grpc}`);
  try {
    const before = await Promise.all(users.map((u) => client.userStats(u, 10_000)));
    const killed = performance.now();
    drained.nodes[1].kill("SIGKILL");
    await eventually("every lost shard answers on the survivor", async () => {
      const now = await Promise.all(users.map((u) => client.userStats(u, 2000).catch(() => undefined)));
      return now.every((s, i) => s?.totalPurchases === before[i].totalPurchases);
    }, 120_000);
    context.report(
      "durability: failover, kill -9 → lost shards answer",
      `${Math.round(performance.now() - killed)} ms`,
      {
        shards: lost.length,
        bound: "membership downs after --unreachable-after + --down-after (3 s + 5 s)",
      },
    );
  } finally {
    client.close();
  }
}

/** One shard of a million users, restored by a node that starts after the only other one was killed. */
async function restore(context: BenchContext, admin: Admin): Promise<void> {
  const users = 1_000_000;
  const topic = uniqueTopic("bench-restore");
  await ensureTopic(admin, topic, 1);
  const producer = new PurchaseSender({ brokers: context.brokers, clientId: "usershard-bench" }, topic, 1);
  try {
    for (let i = 0; i < users; i += 2000) {
      await producer.send(
        Array.from(
          { length: Math.min(2000, users - i) },
          (_, j) => ({ userId: String(i + j), product: "rope", quantity: 1, price: 100 }),
        ),
      );
    }
  } finally {
    await producer.close();
  }
  const stream = { topic, group: uniqueTopic("bench-restore-group") };
  const [a, b] = nodePorts(2);
  const first = startProcessor(a, [a], stream);
  let second: RunningUsershard | undefined;
  try {
    await eventually("a million users in the shard", async () => (await progress(a)).events >= users, 900_000);
    first.kill("SIGKILL");
    await first.exited();
    second = startProcessor(b, [b], stream);
    const line = await second.waitForOutput(
      /restored shard 0 from \S+: (\d+) users up to offset \d+, (\d+) records read in (\d+) ms/,
      600_000,
    );
    const [entities, records, ms] = [Number(line[1]), Number(line[2]), Number(line[3])];
    context.report("durability: restore of a shard of 1M users", `${Math.round(entities / (ms / 1000))} entities/s`, {
      entities,
      records,
      seconds: (ms / 1000).toFixed(1),
    });
  } finally {
    first.kill("SIGKILL");
    await first.stop();
    await second?.stop();
  }
}
