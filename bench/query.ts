/**
 * Query latency and throughput through one node's gRPC front end, at a fixed
 * concurrency, for users whose shard is on that node (local) and for users
 * whose shard is on the other node (forwarded over remoting); the load comes
 * from this project's own client and from grpcio (Debian's python3-grpcio),
 * an independent one, in turn.
 *
 * @module
 */
import { createAdmin } from "../kafka/client.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { UserStatsClient } from "../grpc/user_client.ts";
import { eventually, nodePorts, shardsOf, startProcessor } from "../tests/support/cluster.ts";
import { kafkajsClient, knownPurchases, producePurchases } from "../tests/support/kafka.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";

const CONCURRENCY = 16;
const GRPCIO_LOAD = new URL("./grpcio_load.py", import.meta.url).pathname;

/** Runs `queries` queries per kind and client at {@linkcode CONCURRENCY} and reports p50/p99 and queries/s. */
export async function benchQuery(context: BenchContext, queries = 20_000): Promise<void> {
  const admin = createAdmin({ brokers: context.brokers, clientId: "usershard-bench" });
  const stream = { topic: uniqueTopic("bench-query"), group: uniqueTopic("bench-query-group") };
  await ensureTopic(admin, stream.topic, 128).finally(() => admin.close());
  await producePurchases(
    kafkajsClient(context.brokers, "usershard-bench"),
    stream.topic,
    knownPurchases(2000, 200),
  );
  const [a, b] = nodePorts(2);
  const nodes = [startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream)];
  const target = `127.0.0.1:${a.grpc}`;
  const client = new UserStatsClient(target);
  try {
    const local = await eventually("both nodes host their shards", async () => {
      const [va, vb] = await Promise.all([shardsOf(a, stream.group), shardsOf(b, stream.group)]);
      if (!va || !vb || va.shards.length === 0 || vb.shards.length === 0) return undefined;
      return va.shards.length + vb.shards.length === 128 ? new Set(va.shards) : undefined;
    }, 120_000);
    const users = Array.from({ length: 200 }, (_, i) => String(i));
    const here = users.filter((u) => local.has(partitionFor(u, 128)));
    const there = users.filter((u) => !local.has(partitionFor(u, 128)));
    await run(client, here, 500);
    for (const [kind, ids] of [["local", here], ["forwarded", there]] as const) {
      const { latencies, seconds } = await run(client, ids, queries);
      latencies.sort((x, y) => x - y);
      const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))];
      context.report(
        `query: ${kind} users, ${CONCURRENCY} in flight, Deno client`,
        `${Math.round(queries / seconds)} queries/s`,
        {
          p50: `${at(0.5).toFixed(2)} ms`,
          p99: `${at(0.99).toFixed(2)} ms`,
        },
      );
      const grpcio = await grpcioLoad(target, ids, queries);
      context.report(`query: ${kind} users, ${CONCURRENCY} in flight, grpcio`, grpcio.qps, grpcio.details);
    }
  } finally {
    client.close();
    await Promise.all(nodes.map((n) => n.stop()));
  }
}

async function run(client: UserStatsClient, ids: readonly string[], total: number) {
  const latencies: number[] = [];
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < total) {
      const id = ids[next++ % ids.length];
      const t = performance.now();
      await client.userStats(id, 15_000);
      latencies.push(performance.now() - t);
    }
  }));
  return { latencies, seconds: (performance.now() - started) / 1000 };
}

/** The same load from grpcio in its own process, or why it could not run. */
async function grpcioLoad(
  target: string,
  ids: readonly string[],
  total: number,
): Promise<{ qps: string; details: Record<string, string | number> }> {
  const output = await new Deno.Command("/usr/bin/python3", {
    args: [GRPCIO_LOAD, target, ids.join(","), String(total), String(CONCURRENCY)],
    cwd: "/",
    stdout: "piped",
    stderr: "piped",
  }).output().catch((error: Error) => ({ success: false, stdout: new Uint8Array(), stderr: error.message }));
  if (!output.success) {
    const why = typeof output.stderr === "string" ? output.stderr : new TextDecoder().decode(output.stderr);
    return { qps: "not run", details: { reason: why.trim().split("\n").at(-1) ?? "" } };
  }
  const result: { qps: number; p50: number; p99: number; failed: number } = JSON.parse(
    new TextDecoder().decode(output.stdout),
  );
  return {
    qps: `${result.qps} queries/s`,
    details: { p50: `${result.p50} ms`, p99: `${result.p99} ms`, failed: result.failed },
  };
}
