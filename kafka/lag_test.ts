import assert from "node:assert/strict";
import { ConsumerLag, lagOf } from "./lag.ts";

Deno.test("lagOf(): log end minus committed, from the log start when nothing (or a deleted offset) is committed", () => {
  const bounds = new Map([
    [0, { start: 0, end: 10 }],
    [1, { start: 4, end: 9 }],
    [2, { start: 5, end: 8 }],
    [3, { start: 0, end: 6 }],
  ]);
  const committed = new Map([[0, 10], [2, 2], [3, 4]]);
  // Partition 7 is not listed by Kafka; partition 3 is not this node's.
  assert.deepEqual(lagOf(bounds, committed, [0, 1, 2, 7]), new Map([[0, 0], [1, 5], [2, 3]]));
  assert.deepEqual(lagOf(bounds, new Map(), [3]), new Map([[3, 6]]));
});

/** Offsets whose answers the test hands out. */
function fakeOffsets() {
  let calls = 0;
  const answers: PromiseWithResolvers<void>[] = [];
  const offsets = {
    bounds: async () => {
      calls++;
      const answer = Promise.withResolvers<void>();
      answers.push(answer);
      await answer.promise;
      return new Map([[0, { start: 0, end: 10 }]]);
    },
    committed: () => Promise.resolve(new Map([[0, 8]])),
  };
  return { offsets, answers, calls: () => calls };
}

Deno.test("ConsumerLag: callers at once share one reading; a reading past the timeout is unknown", async () => {
  const { offsets, answers, calls } = fakeOffsets();
  const lag = new ConsumerLag({ offsets, group: "g", topic: "t", partitions: () => [0], timeoutMs: 50 });
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
  const { offsets, calls } = fakeOffsets();
  const lag = new ConsumerLag({ offsets, group: "g", topic: "t", partitions: () => [] });
  assert.deepEqual(await lag.read(), new Map());
  assert.equal(calls(), 0);
});
