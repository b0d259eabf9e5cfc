import assert from "node:assert/strict";
import type { Admin } from "kafkajs";
import { ConsumerLag, lagOf } from "./lag.ts";

Deno.test("lagOf(): log end minus committed, from the log start when nothing (or a deleted offset) is committed", () => {
  const ends = [
    { partition: 0, low: "0", high: "10" },
    { partition: 1, low: "4", high: "9" },
    { partition: 2, low: "5", high: "8" },
    { partition: 3, low: "0", high: "6" },
  ];
  const committed = [
    { partition: 0, offset: "10" },
    { partition: 1, offset: "-1" },
    { partition: 2, offset: "2" },
    { partition: 3, offset: "4" },
  ];
  // Partition 7 is not listed by Kafka; partition 3 is not this node's.
  assert.deepEqual(lagOf(ends, committed, [0, 1, 2, 7]), new Map([[0, 0], [1, 5], [2, 3]]));
  assert.deepEqual(lagOf(ends, [], [3]), new Map([[3, 6]]));
});

/** An admin whose answers the test hands out. */
function fakeAdmin() {
  let calls = 0;
  const answers: PromiseWithResolvers<void>[] = [];
  const admin = {
    fetchTopicOffsets: async () => {
      calls++;
      const answer = Promise.withResolvers<void>();
      answers.push(answer);
      await answer.promise;
      return [{ partition: 0, offset: "10", low: "0", high: "10" }];
    },
    fetchOffsets: () => Promise.resolve([{ topic: "t", partitions: [{ partition: 0, offset: "8", metadata: null }] }]),
  };
  return { admin: admin as unknown as Admin, answers, calls: () => calls };
}

Deno.test("ConsumerLag: callers at once share one reading; a reading past the timeout is unknown", async () => {
  const { admin, answers, calls } = fakeAdmin();
  const lag = new ConsumerLag({ admin, group: "g", topic: "t", partitions: () => [0], timeoutMs: 50 });
  const [first, second] = [lag.read(), lag.read()];
  await new Promise((resolve) => setTimeout(resolve, 0));
  answers[0].resolve();
  assert.deepEqual(await first, new Map([[0, 2]]));
  assert.deepEqual(await second, new Map([[0, 2]]));
  assert.equal(calls(), 1);

  const late = lag.read();
  assert.equal(await late, undefined);
  // The late reading is still shared: a scrape meanwhile does not ask Kafka again.
  const meanwhile = lag.read();
  assert.equal(calls(), 2);
  answers[1].resolve();
  assert.deepEqual(await meanwhile, new Map([[0, 2]]));
});

Deno.test("ConsumerLag: a node consuming nothing has no lag, without asking Kafka", async () => {
  const { admin, calls } = fakeAdmin();
  const lag = new ConsumerLag({ admin, group: "g", topic: "t", partitions: () => [] });
  assert.deepEqual(await lag.read(), new Map());
  assert.equal(calls(), 0);
});
