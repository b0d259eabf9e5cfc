import assert from "node:assert/strict";
import { Shard } from "./shard.ts";

const purchase = (offset: number, userId: string, quantity = 1, price = 100) => ({
  offset,
  userId,
  product: "skis",
  quantity,
  price,
});

Deno.test("Shard.apply() counts each offset once, whatever is redelivered", () => {
  const shard = new Shard(5);
  assert.deepEqual(shard.apply([purchase(0, "7", 2, 1548), purchase(1, "8")]), {
    applied: 2,
    skipped: 0,
    lastOffset: 1,
  });
  assert.deepEqual(shard.apply([purchase(0, "7", 2, 1548), purchase(1, "8"), purchase(2, "7", 1, 4)]), {
    applied: 1,
    skipped: 2,
    lastOffset: 2,
  });
  assert.deepEqual(shard.get("7"), { totalPurchases: 2, amountSpent: 3100 });
  assert.deepEqual(shard.get("8"), { totalPurchases: 1, amountSpent: 100 });
  assert.equal(shard.get("9"), undefined);
  assert.equal(shard.numEntities, 2);
});

Deno.test("a shard restored from its snapshot carries on where the original stopped", () => {
  const original = new Shard(5);
  original.apply([purchase(10, "7"), purchase(11, "8")]);
  const moved = new Shard(5, original.snapshot());
  assert.deepEqual(moved.apply([purchase(11, "8"), purchase(12, "8")]), { applied: 1, skipped: 1, lastOffset: 12 });
  assert.deepEqual(moved.get("8"), { totalPurchases: 2, amountSpent: 200 });
  assert.deepEqual(moved.get("7"), { totalPurchases: 1, amountSpent: 100 });
  assert.throws(() => new Shard(6, original.snapshot()), /snapshot of shard 5 given to shard 6/);
});

Deno.test("Shard.apply() reports each changed user once, with the totals it had before the batch", () => {
  const shard = new Shard(5);
  shard.apply([purchase(0, "7", 1, 10)]);
  const changed = new Map();
  shard.apply([purchase(1, "7", 1, 5), purchase(2, "8"), purchase(3, "7", 2, 1)], changed);
  assert.deepEqual([...changed], [["7", { totalPurchases: 1, amountSpent: 10 }], ["8", undefined]]);
  assert.deepEqual(shard.get("7"), { totalPurchases: 3, amountSpent: 17 });
  assert.deepEqual(shard.get("8"), { totalPurchases: 1, amountSpent: 100 });
});

Deno.test("Shard.apply() moves past a purchase that would make a total inexact, counting nothing of it", () => {
  const shard = new Shard(5, {
    shard: 5,
    lastOffset: 0,
    entities: [["7", { totalPurchases: 5, amountSpent: Number.MAX_SAFE_INTEGER - 10 }]],
  });
  assert.deepEqual(shard.apply([purchase(1, "7", 1, 11), purchase(2, "7", 1, 10)]), {
    applied: 2,
    skipped: 0,
    lastOffset: 2,
  });
  assert.deepEqual(shard.get("7"), { totalPurchases: 6, amountSpent: Number.MAX_SAFE_INTEGER });
});
