import assert from "node:assert/strict";
import { mustRejoin, waitBounded } from "./bounded_wait.ts";

const rebalancing = Object.assign(new Error("The group is rebalancing"), { type: "REBALANCE_IN_PROGRESS" });
const options = { heartbeat: () => Promise.resolve(), heartbeatEveryMs: 5, giveUpAfterMs: 10_000 };

/** A heartbeat that counts its beats, each answered by `answer`, and says when `beats` of them have happened. */
function countedHeartbeat(beats: number, answer: () => Promise<void>) {
  const reached = Promise.withResolvers<void>();
  let count = 0;
  const heartbeat = () => {
    if (++count === beats) reached.resolve();
    return answer();
  };
  return { heartbeat, reached: reached.promise };
}

Deno.test("mustRejoin() knows the group errors that need a rejoin, and nothing else", () => {
  assert.ok(mustRejoin(rebalancing));
  assert.ok(mustRejoin({ type: "UNKNOWN_MEMBER_ID" }));
  assert.ok(!mustRejoin(Object.assign(new Error("timeout"), { type: "REQUEST_TIMED_OUT" })));
  assert.ok(!mustRejoin(new Error("Connection closed")));
  assert.ok(!mustRejoin("REBALANCE_IN_PROGRESS"));
  assert.ok(!mustRejoin(undefined));
});

Deno.test("waitBounded() gives the work's value, heartbeating while it waits", async () => {
  const { heartbeat, reached } = countedHeartbeat(2, () => Promise.resolve());
  const work = Promise.withResolvers<number>();
  const waited = waitBounded(work.promise, { ...options, heartbeat });
  await reached;
  work.resolve(7);
  assert.deepEqual(await waited, { kind: "settled", value: 7 });
});

Deno.test("waitBounded() gives the work's error", async () => {
  const error = new Error("shard 3 is moving");
  assert.deepEqual(await waitBounded(Promise.reject(error), options), { kind: "failed", error });
});

Deno.test("waitBounded() gives up after giveUpAfterMs and leaves the work running", async () => {
  const work = Promise.withResolvers<string>();
  assert.deepEqual(await waitBounded(work.promise, { ...options, giveUpAfterMs: 20 }), { kind: "slow" });
  work.resolve("done later");
  assert.equal(await work.promise, "done later");
});

Deno.test("waitBounded() stops at once when a heartbeat says the group is rebalancing", async () => {
  const work = Promise.withResolvers<void>();
  const waited = await waitBounded(work.promise, { ...options, heartbeat: () => Promise.reject(rebalancing) });
  assert.deepEqual(waited, { kind: "rejoin", error: rebalancing });
});

Deno.test("waitBounded() keeps waiting through other heartbeat errors", async () => {
  const { heartbeat, reached } = countedHeartbeat(3, () => Promise.reject(new Error("Connection closed")));
  const work = Promise.withResolvers<string>();
  const waited = waitBounded(work.promise, { ...options, heartbeat });
  await reached;
  work.resolve("applied");
  assert.deepEqual(await waited, { kind: "settled", value: "applied" });
});
