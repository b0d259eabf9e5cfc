import assert from "node:assert/strict";
import { EventLoopLag, type MetricsSources, NodeMetrics } from "./metrics.ts";
import { parseMetrics, promtoolCheck, samplesOf, sumOf } from "../tests/support/prometheus.ts";
import { eventually } from "../tests/support/wait.ts";

const sources = (lag: () => ReadonlyMap<number, number> | undefined): MetricsSources => ({
  members: () => [
    { node: { address: "127.0.0.1:2551" }, status: "Up" },
    { node: { address: "127.0.0.1:2552" }, status: "Leaving" },
  ],
  hostedShards: () => [{ numEntities: 3 }, { numEntities: 4 }],
  pendingAsks: () => 2,
  consumerLag: () => Promise.resolve(lag()),
});

Deno.test("EventLoopLag keeps the worst lateness of its window", () => {
  const lag = new EventLoopLag(10_000);
  assert.equal(lag.worstSeconds(0), 0);
  lag.record(100, 100);
  lag.record(200, 150); // early: no lag
  lag.record(300, 600);
  lag.record(700, 720);
  assert.equal(lag.worstSeconds(1000), 0.3);
  assert.equal(lag.worstSeconds(10_600), 0.3);
  assert.equal(lag.worstSeconds(10_601), 0.02);
  assert.equal(lag.worstSeconds(20_000), 0);
});

Deno.test("NodeMetrics: what the parts report, what a scrape reads, on a page promtool accepts", async () => {
  const metrics = new NodeMetrics();
  try {
    let lag: ReadonlyMap<number, number> | undefined = new Map([[0, 5], [3, 0]]);
    metrics.readFrom(sources(() => lag));
    metrics.applied(10, true);
    metrics.applied(4, false);
    metrics.malformed("key_mismatch");
    metrics.shardMoved("in", 0.2);
    metrics.restored({ shard: 1, entities: 7, records: 9, seconds: 0.1 });
    metrics.answered("OK", "local", 0.001);
    metrics.answered("UNAVAILABLE", "forwarded", 10);
    metrics.frame("127.0.0.1:2552", "out", 100);
    metrics.frame("127.0.0.1:2552", "out", 50);
    metrics.frame("127.0.0.1:2552", "in", 30);

    const response = await metrics.response();
    assert.match(response.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
    const page = await response.text();
    await promtoolCheck(page);
    const samples = parseMetrics(page);
    const value = (name: string, labels: Record<string, string> = {}) => {
      const found = samplesOf(samples, name, labels);
      assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${JSON.stringify(found)}`);
      return found[0].value;
    };
    assert.equal(value("usershard_events_applied_total", { where: "local" }), 10);
    assert.equal(value("usershard_events_applied_total", { where: "forwarded" }), 4);
    assert.equal(value("usershard_malformed_records_total", { reason: "key_mismatch" }), 1);
    // Every reason is there from the start, so that rate() sees the first one.
    assert.equal(value("usershard_malformed_records_total", { reason: "wrong_partition" }), 0);
    assert.equal(value("usershard_shard_moves_total", { direction: "in" }), 1);
    assert.equal(value("usershard_shard_moves_total", { direction: "out" }), 0);
    assert.equal(value("usershard_shard_move_duration_seconds_bucket", { direction: "in", le: "0.25" }), 1);
    assert.equal(value("usershard_shard_move_duration_seconds_bucket", { direction: "in", le: "0.1" }), 0);
    assert.equal(value("usershard_restores_total"), 1);
    assert.equal(value("usershard_restored_entities_total"), 7);
    assert.equal(value("usershard_restore_records_read_total"), 9);
    assert.equal(value("usershard_restore_duration_seconds_count"), 1);
    assert.equal(value("usershard_queries_total", { code: "OK", where: "local" }), 1);
    assert.equal(value("usershard_queries_total", { code: "UNAVAILABLE", where: "forwarded" }), 1);
    assert.equal(value("usershard_query_duration_seconds_count", { where: "forwarded" }), 1);
    assert.equal(value("usershard_remoting_frames_total", { peer: "127.0.0.1:2552", direction: "out" }), 2);
    assert.equal(value("usershard_remoting_bytes_total", { peer: "127.0.0.1:2552", direction: "out" }), 150);
    assert.equal(value("usershard_remoting_bytes_total", { peer: "127.0.0.1:2552", direction: "in" }), 30);
    assert.equal(value("usershard_remoting_pending_asks"), 2);
    assert.equal(value("usershard_shards_hosted"), 2);
    assert.equal(value("usershard_entities_hosted"), 7);
    assert.equal(value("usershard_consumer_lag_records", { partition: "0" }), 5);
    assert.equal(value("usershard_consumer_lag_records", { partition: "3" }), 0);
    assert.equal(value("usershard_member_status", { member: "127.0.0.1:2551", status: "Up" }), 1);
    assert.equal(value("usershard_member_status", { member: "127.0.0.1:2552", status: "Up" }), 0);
    assert.equal(sumOf(samples, "usershard_member_status", { member: "127.0.0.1:2552" }), 1);
    assert.ok(value("usershard_process_resident_memory_bytes") > 0);
    assert.ok(value("usershard_process_heap_used_bytes") > 0);

    // Kafka not answering in time leaves the lag as it was; a new reading replaces it whole.
    lag = undefined;
    const unknown = parseMetrics(await metrics.text());
    assert.equal(sumOf(unknown, "usershard_consumer_lag_records", { partition: "0" }), 5);
    lag = new Map([[3, 1]]);
    const moved = parseMetrics(await metrics.text());
    assert.deepEqual(samplesOf(moved, "usershard_consumer_lag_records").map((s) => s.labels.partition), ["3"]);
  } finally {
    metrics.close();
  }
});

Deno.test("NodeMetrics: the event-loop lag gauge sees a blocked loop", async () => {
  const metrics = new NodeMetrics();
  try {
    const blockedUntil = performance.now() + 400;
    while (performance.now() < blockedUntil) {
      // Blocking the loop, as a long synchronous task would.
    }
    await eventually("the event-loop lag gauge reports the stall", async () => {
      const samples = parseMetrics(await metrics.text());
      return sumOf(samples, "usershard_event_loop_lag_seconds") >= 0.25;
    }, 5_000);
  } finally {
    metrics.close();
  }
});
