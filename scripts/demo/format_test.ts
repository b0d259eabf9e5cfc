import assert from "node:assert/strict";
import { bracketed, describeUser, percent, placementProblem, rebalanceStarted, seconds } from "./format.ts";

const view = (shards: number[], consumed: number[]) => ({
  regions: shards.map((s) => ({ shardId: String(s), numEntities: 1 })),
  consumedPartitions: consumed,
});

Deno.test("figures: times, shares and shard sets", () => {
  assert.equal(seconds(250), "250 ms");
  assert.equal(seconds(1520), "1.5 s");
  assert.equal(percent(2, 3), "66.6 %");
  assert.equal(percent(0, 0), "100 %");
  assert.equal(bracketed([5, 0, 1, 2, 7]), "[0-2,5,7]");
  assert.equal(describeUser({ totalPurchases: 1, amountSpent: 30 }), "1 purchase, 30p");
  assert.equal(describeUser(undefined), "no answer");
});

Deno.test("a placement is settled once each node hosts exactly what it consumes, every shard once", () => {
  assert.equal(placementProblem([view([0, 1], [0, 1]), view([2, 3], [2, 3])], 4), undefined);
  assert.equal(
    placementProblem([view([0, 1, 2], [0, 1]), view([3], [2, 3])], 4),
    "node 1 hosts 3 shards and consumes 2 partitions; node 2 hosts 1 shards and consumes 2 partitions",
  );
  assert.notEqual(placementProblem([view([0, 1, 2, 3], [0, 1, 2, 3]), view([], [])], 4), undefined, "a node idle");
});

Deno.test("a rebalance in a line: its moves grouped by where from and to", () => {
  const line = rebalanceStarted({
    epoch: "1",
    rebalance: 2,
    startedAt: 0,
    moves: [
      { shard: 3, from: "127.0.0.1:2551", to: "127.0.0.1:2552" },
      { shard: 1, from: "127.0.0.1:2551", to: "127.0.0.1:2552" },
      { shard: 9, to: "127.0.0.1:2551" },
    ],
  });
  assert.equal(line, "rebalance started for 3 shards: 127.0.0.1:2551 → 127.0.0.1:2552 [1,3]; new → 127.0.0.1:2551 [9]");
});
