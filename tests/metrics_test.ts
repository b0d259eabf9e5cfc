import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { partitionFor } from "../kafka/partitioner.ts";
import { encodePurchase, MALFORMED_KINDS } from "../kafka/purchase.ts";
import { runUsershard } from "./support/cli.ts";
import {
  addressOf,
  eventually,
  type NodePorts,
  nodePorts,
  shardsOf,
  startProcessor,
  type Stream,
  withNodes,
} from "./support/cluster.ts";
import { createTopic, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";
import { parseMetrics, promtoolCheck, type Sample, samplesOf, sumOf } from "./support/prometheus.ts";

const PARTITIONS = 8;
const EVENTS = 1200;
const USERS = 150;

/** Waits until the nodes host every shard once, each on the node consuming its partition; resolves with their shards. */
async function settledPlacement(nodes: readonly NodePorts[], stream: Stream): Promise<number[][]> {
  return await eventually("every shard hosted once, on its partition's consumer", async () => {
    const views = await Promise.all(nodes.map((n) => shardsOf(n, stream.group)));
    if (views.some((v) => v === undefined || v.consumed.length === 0)) return undefined;
    const hosted = views.flatMap((v) => v!.shards);
    const placed = hosted.length === PARTITIONS && new Set(hosted).size === PARTITIONS &&
      views.every((v) => JSON.stringify(v!.shards) === JSON.stringify(v!.consumed));
    return placed ? views.map((v) => v!.shards) : undefined;
  }, 60_000);
}

/** Waits until the group has committed every partition up to its end. */
async function committedToTheEnd(stream: Stream): Promise<void> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(stream.topic);
    let behind = "";
    await eventually(
      "the group committed every partition to its end",
      async () => {
        const [committed] = await admin.fetchOffsets({ groupId: stream.group, topics: [stream.topic] });
        behind = ends.filter((end) =>
          committed.partitions.find((p) => p.partition === end.partition)?.offset !== end.offset
        ).map((end) => `${end.partition}@${end.offset}`).join(", ");
        return behind === "";
      },
      60_000,
      () => `not yet: ${behind}`,
    );
  } finally {
    await admin.disconnect();
  }
}

/** A node's `/metrics`, checked by promtool, as samples. */
async function scrape(node: NodePorts): Promise<Sample[]> {
  const response = await fetch(`http://127.0.0.1:${node.mgmt}/metrics`);
  const page = await response.text();
  assert.equal(response.status, 200, page);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  await promtoolCheck(page);
  return parseMetrics(page);
}

Deno.test("GET /metrics on two nodes: promtool accepts it, and it adds up to what was produced and placed", async () => {
  await withNodes("metrics", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, PARTITIONS);
    const [a, b] = nodePorts(2);
    started.push(startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream));
    // Placement settles before anything is produced, so no event is redelivered by a rebalance.
    const [shardsOfA, shardsOfB] = await settledPlacement([a, b], stream);
    await producePurchases(kafka, stream.topic, knownPurchases(EVENTS, USERS));
    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: stream.topic,
      messages: [
        { key: "1", value: Buffer.from("not protobuf \u00ff"), partition: partitionFor("1", PARTITIONS) },
        {
          key: "3",
          value: Buffer.from(encodePurchase({ userId: "4", product: "rope", quantity: 1, price: 1 })),
          partition: 0,
        },
      ],
    });
    await producer.disconnect();
    await committedToTheEnd(stream);

    // One query answered on a's own shard, one forwarded to b's.
    const userIn = (shards: number[]) =>
      String(
        Array.from({ length: USERS }, (_, u) => u).find((u) => shards.includes(partitionFor(String(u), PARTITIONS))),
      );
    const query = await runUsershard(["query", "--grpc", `127.0.0.1:${a.grpc}`, userIn(shardsOfA), userIn(shardsOfB)]);
    assert.equal(query.code, 0, query.stderr);

    const pages = [await scrape(a), await scrape(b)];
    const applied = pages.map((p) => sumOf(p, "usershard_events_applied_total"));
    assert.equal(applied[0] + applied[1], EVENTS, `events applied per node: ${applied}`);
    assert.equal(pages.reduce((n, p) => n + sumOf(p, "usershard_events_applied_total", { where: "local" }), 0), EVENTS);
    assert.deepEqual(pages.map((p) => sumOf(p, "usershard_shards_hosted")), [shardsOfA.length, shardsOfB.length]);
    assert.equal(pages.reduce((n, p) => n + sumOf(p, "usershard_entities_hosted"), 0), USERS);
    assert.ok(
      pages.reduce((n, p) => n + sumOf(p, "usershard_shard_moves_total", { direction: "in" }), 0) >= PARTITIONS,
    );
    assert.ok(pages.reduce((n, p) => n + sumOf(p, "usershard_restores_total"), 0) >= PARTITIONS);
    for (const [i, page] of pages.entries()) {
      const up = samplesOf(page, "usershard_member_status", { status: "Up" }).filter((s) => s.value === 1);
      assert.deepEqual(up.map((s) => s.labels.member).sort(), [addressOf(a), addressOf(b)].sort(), `node ${i}`);
      const lag = samplesOf(page, "usershard_consumer_lag_records");
      assert.deepEqual(lag.map((s) => Number(s.labels.partition)).sort((x, y) => x - y), [shardsOfA, shardsOfB][i]);
      assert.ok(lag.every((s) => s.value === 0), `node ${i} lag: ${JSON.stringify(lag)}`);
      const other = addressOf([b, a][i]);
      assert.ok(sumOf(page, "usershard_remoting_frames_total", { peer: other, direction: "out" }) > 0);
      assert.ok(sumOf(page, "usershard_remoting_bytes_total", { peer: other, direction: "in" }) > 0);
    }
    const malformed = (reason: string) =>
      pages.reduce((n, p) => n + sumOf(p, "usershard_malformed_records_total", { reason }), 0);
    assert.deepEqual(MALFORMED_KINDS.map(malformed), [1, 0, 1, 0], `${MALFORMED_KINDS}`);
    const queries = (where: string) => sumOf(pages[0], "usershard_queries_total", { code: "OK", where });
    assert.deepEqual([queries("local"), queries("forwarded")], [1, 1]);
    assert.equal(sumOf(pages[0], "usershard_query_duration_seconds_count"), 2);

    const stats = await Promise.all([a, b].map(async (n) => (await fetch(`http://127.0.0.1:${n.mgmt}/stats`)).json()));
    assert.deepEqual(stats.map((s) => s.lag), [0, 0]);
    console.log(
      `metrics: ${EVENTS} events applied (${applied.join(" + ")}), shards ${shardsOfA.length} + ${shardsOfB.length}, ` +
        `2 malformed skipped, 2 Up members seen by each node, lag 0 on ${PARTITIONS} partitions, ` +
        "promtool check metrics passed on both pages",
    );
  });
});
