/**
 * Memory per user: one node with durable state drains 1.5 million events by
 * up to a million users (about 777,000 distinct), then its resident memory
 * (from `/metrics`, the runtime included) is divided by the users it holds,
 * once the node has collected its garbage on going quiet, and as it was at
 * lag 0 before that. Also the same node's resident memory before any event,
 * for the runtime's share. Prints figures; asserts nothing.
 *
 * @module
 */
import { ensureTopic } from "../kafka/admin.ts";
import { createAdmin } from "../kafka/client.ts";
import { produce, PurchaseSender } from "../kafka/producer.ts";
import { eventually, nodePorts, shardsOf, startProcessor } from "../tests/support/cluster.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";

const SHARDS = 128;
const EVENTS = 1_500_000;
const USERS = 1_000_000;

/** A node's resident memory, JavaScript heap in use, and its idle collections and their pauses so far, from its `/metrics`. */
async function memoryOf(mgmt: number): Promise<{ rss: number; heap: number; collections: number; paused: number }> {
  const text = await (await fetch(`http://127.0.0.1:${mgmt}/metrics`)).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
  return {
    rss: value("usershard_process_resident_memory_bytes"),
    heap: value("usershard_process_heap_used_bytes"),
    collections: value("usershard_idle_collections_total"),
    paused: value("usershard_idle_collection_seconds_total"),
  };
}

/** Runs the memory benchmark. */
export async function benchMemory(context: BenchContext): Promise<void> {
  const admin = createAdmin({ brokers: context.brokers, clientId: "usershard-bench" });
  const topic = uniqueTopic("bench-memory");
  await ensureTopic(admin, topic, SHARDS).finally(() => admin.close());
  const [ports] = nodePorts(1);
  const stream = { topic, group: uniqueTopic("bench-memory-group") };
  const node = startProcessor(ports, [ports], stream);
  try {
    await node.waitForOutput(/node ready/, 120_000);
    const idle = await memoryOf(ports.mgmt);
    const sender = new PurchaseSender({ brokers: context.brokers, clientId: "usershard-bench" }, topic, SHARDS);
    await produce(sender, { users: USERS, rate: 0, count: EVENTS }, new AbortController().signal).finally(() =>
      sender.close()
    );
    const stats = () => fetch(`http://127.0.0.1:${ports.mgmt}/stats`).then((r) => r.json());
    await eventually(
      "every event drained",
      async () => {
        const { events, lag } = await stats();
        return events >= EVENTS && lag === 0;
      },
      900_000,
      undefined,
      1000,
    );
    const users = (await shardsOf(ports, stream.group))!.entities;
    const drained = await memoryOf(ports.mgmt);
    // The node collects by itself once its events have stopped for a while (node/memory_reducer.ts).
    const held = await eventually(
      "the node's idle collection",
      async () => {
        const now = await memoryOf(ports.mgmt);
        return now.collections > drained.collections && now;
      },
      60_000,
    );
    const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(0)} MiB`;
    context.report("memory: resident bytes per user held, 1 node", `${Math.round(held.rss / users)} B/user`, {
      users,
      resident: mib(held.rss),
      heap: mib(held.heap),
      idle: `${mib(idle.rss)} before any event`,
      beyondIdle: `${Math.round((held.rss - idle.rss) / users)} B/user`,
      drained: `${Math.round(drained.rss / users)} B/user (${mib(drained.rss)}, heap ${mib(drained.heap)}) at lag 0`,
      collection: `${Math.round((held.paused - drained.paused) * 1000)} ms paused`,
    });
  } finally {
    await node.stop();
  }
}
