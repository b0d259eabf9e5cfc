import assert from "node:assert/strict";
import { DEFAULT_NODE_TIMINGS, type NodeTimings, timingProblems } from "./timings.ts";

const t = DEFAULT_NODE_TIMINGS;

function with_(change: { membership?: object; sharding?: object; kafka?: object }): NodeTimings {
  return {
    membership: { ...t.membership, ...change.membership },
    sharding: { ...t.sharding, ...change.sharding },
    kafka: { ...t.kafka, ...change.kafka },
  };
}

Deno.test("the default timings keep every relation", () => {
  assert.deepEqual(timingProblems(t), []);
});

Deno.test("timingProblems() names the flags to change and says why", () => {
  assert.deepEqual(timingProblems(with_({ membership: { unreachableAfterMs: 1000 } })), [
    "--unreachable-after (1s) must be at least 3 heartbeat intervals (1.5s): otherwise one late heartbeat marks " +
    "a member unreachable",
  ]);
  const slowAsks = timingProblems(with_({ sharding: { askTimeoutMs: 90_000 } }));
  assert.equal(slowAsks.length, 3);
  assert.match(slowAsks[0], /^--ask-timeout \(90s\) must be at most the coordinator's memory of a request \(60s\)/);
  assert.match(slowAsks[1], /^--handoff-timeout \(20s\) must be at least the leaving grace \(5s\) plus --ask-timeout/);
  assert.match(slowAsks[2], /half the time a region keeps a handed-off shard \(120s\)/);
  assert.match(
    timingProblems(with_({ membership: { downAfterMs: 70_000 } }))[0],
    /^--unreachable-after \(3s\) plus --down-after \(70s\) must be at most the time a removed member is remembered/,
  );
  assert.match(
    timingProblems(with_({ kafka: { sessionTimeoutMs: 2000 } }))[0],
    /^the Kafka session timeout \(2s\) must be at least 3 consumer heartbeats \(3s\)/,
  );
  assert.deepEqual(timingProblems(with_({ sharding: { askTimeoutMs: 5000, handoffTimeoutMs: 10_000 } })), [
    "--ask-timeout (5s) must be longer than a changelog write may take (8s): a shard being stopped waits for its " +
    "write in flight, and the coordinator waits that long for the stop",
  ]);
  assert.match(
    timingProblems(with_({ kafka: { transactionTimeoutMs: 8000 } }))[0],
    /^the changelog transaction timeout \(8s\) must be longer than a changelog write may take \(8s\)/,
  );
});
