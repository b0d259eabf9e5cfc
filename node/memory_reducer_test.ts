import assert from "node:assert/strict";
import { fullCollection, MemoryReducer } from "./memory_reducer.ts";

const MiB = 1 << 20;
const options = { quietMs: 5000, minGrowthBytes: 64 * MiB };

Deno.test("MemoryReducer: a node that goes quiet after a burst collects once", () => {
  const reducer = new MemoryReducer(options);
  assert.equal(reducer.step(0, 0, 50 * MiB), false, "nothing happened yet");
  assert.equal(reducer.step(1000, 500_000, 300 * MiB), false, "events arrive");
  assert.equal(reducer.step(4000, 1_500_000, 600 * MiB), false, "events still arrive");
  assert.equal(reducer.step(8999, 1_500_000, 600 * MiB), false, "quiet for less than 5 s");
  assert.equal(reducer.step(9000, 1_500_000, 600 * MiB), true, "quiet for 5 s, 550 MiB grown");
  reducer.collected(90 * MiB);
  assert.equal(reducer.step(10_000, 1_500_000, 92 * MiB), false, "collected already");
  assert.equal(reducer.step(60_000, 1_500_000, 100 * MiB), false, "idle: timers allocate a little");
});

Deno.test("MemoryReducer: a node under steady load leaves collecting to V8", () => {
  const reducer = new MemoryReducer(options);
  reducer.step(0, 0, 50 * MiB);
  for (let t = 1000; t <= 120_000; t += 1000) {
    assert.equal(reducer.step(t, t * 100, 500 * MiB), false, `at ${t} ms`);
  }
});

Deno.test("MemoryReducer: a quiet node whose heap grew little does not pause for it", () => {
  const reducer = new MemoryReducer(options);
  reducer.step(0, 0, 50 * MiB);
  reducer.step(1000, 20, 60 * MiB);
  assert.equal(reducer.step(30_000, 20, 100 * MiB), false, "50 MiB grown");
  assert.equal(reducer.step(31_000, 20, 114 * MiB), true, "64 MiB grown");
});

Deno.test("MemoryReducer: the next burst is collected after it too", () => {
  const reducer = new MemoryReducer(options);
  reducer.step(0, 0, 50 * MiB);
  reducer.step(1000, 100, 400 * MiB);
  assert.ok(reducer.step(6000, 100, 400 * MiB));
  reducer.collected(80 * MiB);
  reducer.step(7000, 200, 300 * MiB);
  assert.equal(reducer.step(11_999, 200, 300 * MiB), false);
  assert.equal(reducer.step(12_000, 200, 300 * MiB), true);
});

Deno.test("MemoryReducer: heap that grows while no event arrives (a restore) is no reason to collect", () => {
  const reducer = new MemoryReducer(options);
  reducer.step(0, 0, 50 * MiB);
  for (let t = 1000; t <= 60_000; t += 1000) {
    assert.equal(reducer.step(t, 0, 50 * MiB + t * 10_000), false, `at ${t} ms`);
  }
});

Deno.test("MemoryReducer: growth counts from the lowest heap since the last collection", () => {
  const reducer = new MemoryReducer(options);
  reducer.step(0, 0, 300 * MiB);
  reducer.step(1000, 100, 120 * MiB);
  assert.equal(reducer.step(6000, 100, 150 * MiB), false, "30 MiB over the 120 MiB V8 itself left");
  assert.equal(reducer.step(7000, 100, 184 * MiB), true, "64 MiB over it");
});

Deno.test("fullCollection frees what nothing holds any more", () => {
  const collect = fullCollection();
  if (!collect) throw new Error("Deno offers no full collection");
  let garbage: { n: number; s: string }[] | undefined = Array.from({ length: 1_000_000 }, (_, n) => ({ n, s: `${n}` }));
  const held = Deno.memoryUsage().heapUsed;
  assert.equal(garbage.length, 1_000_000);
  garbage = undefined;
  collect();
  const after = Deno.memoryUsage().heapUsed;
  assert.ok(after < held - 32 * MiB, `heap ${Math.round(held / MiB)} MiB → ${Math.round(after / MiB)} MiB`);
});
