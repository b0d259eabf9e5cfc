import assert from "node:assert/strict";
import { FetchedBatches } from "./fetched_batches.ts";
import type { ReadRecord } from "./fetched_records.ts";

const records = (from: number, next: number): ReadRecord[] =>
  Array.from({ length: next - from }, (_, i) => ({ offset: from + i, key: null, value: null }));
const offsets = (taken: ReadRecord[] | undefined) => taken?.map((r) => r.offset);

Deno.test("held batches come out as one, in offset order", () => {
  const fetched = new FetchedBatches();
  fetched.keep(3, 1, 0, records(0, 2));
  fetched.keep(3, 1, 4, records(4, 6));
  fetched.keep(3, 1, 2, records(2, 4));
  assert.deepEqual(offsets(fetched.take(3, 1, 0, 6)), [0, 1, 2, 3, 4, 5]);
  assert.equal(fetched.take(3, 1, 0, 6), undefined, "taken once");
});

Deno.test("a batch an earlier run fetched after its refusal never joins the batch fetched again", () => {
  // Run 1 delivered [80, 104) and had [358, 362) in flight when the sink refused; run 2 reads from 80 again.
  const fetched = new FetchedBatches();
  fetched.drop(13);
  fetched.keep(13, 1, 358, records(358, 362));
  fetched.keep(13, 2, 80, records(80, 388));
  const taken = offsets(fetched.take(13, 2, 80, 388))!;
  assert.equal(taken.length, 308);
  assert.deepEqual([taken[0], taken.at(-1)], [80, 387]);
  // Kept in the other order, the old run's batch is refused outright.
  const later = new FetchedBatches();
  later.keep(13, 2, 80, records(80, 388));
  later.keep(13, 1, 358, records(358, 362));
  assert.deepEqual(offsets(later.take(13, 2, 80, 388))?.length, 308);
});

Deno.test("overlapping batches give each offset once", () => {
  const fetched = new FetchedBatches();
  fetched.keep(0, 1, 10, records(10, 20));
  fetched.keep(0, 1, 15, records(15, 25));
  assert.deepEqual(offsets(fetched.take(0, 1, 10, 25)), Array.from({ length: 15 }, (_, i) => 10 + i));
});
