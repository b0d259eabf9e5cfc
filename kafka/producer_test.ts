import assert from "node:assert/strict";
import type { Purchase } from "./purchase.ts";
import { produce, ProduceFailed, SendFailed } from "./producer.ts";

Deno.test("produce counts what a failed batch still got acknowledged among what was sent", async () => {
  let batches = 0;
  const sender = {
    send(purchases: readonly Purchase[]): Promise<void> {
      // The third batch: its first 5 events' partitions were acknowledged, the others' were not.
      if (++batches === 3) return Promise.reject(new SendFailed(5, new Error("broker gone")));
      assert.equal(purchases.length, 2000, "batches as large as allowed when the rate is unbounded");
      return Promise.resolve();
    },
  };
  await assert.rejects(
    produce(sender, { users: 10, rate: 0, count: 10_000 }, new AbortController().signal),
    (error: ProduceFailed) => {
      assert.ok(error instanceof ProduceFailed);
      assert.equal(error.sent, 2 * 2000 + 5);
      assert.equal((error.cause as Error).message, "broker gone");
      return true;
    },
  );
});
