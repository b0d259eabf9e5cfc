import assert from "node:assert/strict";
import { changelogTopicFor, decodeChangelogValue, encodeChangelogValue } from "./changelog.ts";

Deno.test("a changelog value reads back exactly, up to the largest exact totals", () => {
  for (
    const value of [
      { totals: { totalPurchases: 0, amountSpent: 0 }, shardOffset: 0 },
      { totals: { totalPurchases: 2, amountSpent: 3096 }, shardOffset: 41 },
      { totals: { totalPurchases: 2 ** 32 + 5, amountSpent: Number.MAX_SAFE_INTEGER }, shardOffset: 2 ** 40 + 1 },
    ]
  ) {
    const bytes = encodeChangelogValue(value);
    assert.equal(bytes.length, 25);
    assert.deepEqual(decodeChangelogValue(bytes), value);
  }
});

Deno.test("a changelog value of another version or length is not read as totals", () => {
  const bytes = encodeChangelogValue({ totals: { totalPurchases: 1, amountSpent: 1 }, shardOffset: 1 });
  assert.equal(decodeChangelogValue(bytes.subarray(0, 24)), undefined);
  assert.equal(decodeChangelogValue(Uint8Array.of(2, ...bytes.subarray(1))), undefined);
});

Deno.test("the changelog is named after the consumer group", () => {
  assert.equal(changelogTopicFor("user-processing"), "user-processing-changelog");
});
