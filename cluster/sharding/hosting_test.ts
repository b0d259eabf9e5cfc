import assert from "node:assert/strict";
import type { CoordinatorClient } from "./coordinator_client.ts";
import { ShardHosting } from "./hosting.ts";
import type { ShardLog, ShardStorage } from "./shard_storage.ts";

/** A durable storage whose opens (the restore) wait for the test. */
function slowStorage(): ShardStorage & { restore: PromiseWithResolvers<void> } {
  const restore = Promise.withResolvers<void>();
  return {
    durable: true,
    restore,
    open: async (): Promise<ShardLog> => {
      await restore.promise;
      return { restored: undefined, write: () => Promise.resolve(), close: () => Promise.resolve() };
    },
    close: () => Promise.resolve(),
  };
}

Deno.test("ShardHosting reports a shard moving in once it is ready (its restore included), and moving out once stopped", async () => {
  const moves: { direction: string; seconds: number }[] = [];
  const storage = slowStorage();
  const hosting = new ShardHosting({
    self: { address: "127.0.0.1:2551", uid: 1 },
    shardCount: 4,
    storage,
    // Start and stop only tell the client where the shard is now.
    coordinator: { setHome: () => {}, forgetHome: () => {} } as unknown as CoordinatorClient,
    askTimeoutMs: 1000,
    handedOffTtlMs: 60_000,
    observer: { shardMoved: (direction, seconds) => moves.push({ direction, seconds }) },
  });
  try {
    hosting.start(2, undefined);
    hosting.start(2, undefined); // a repeated start is not a second move
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(moves.length, 0, "not ready yet: still restoring");
    storage.restore.resolve();
    await hosting.get(2)!.ready;
    await hosting.stop(2);
    await hosting.stop(2); // nor is a repeated stop
    assert.deepEqual(moves.map((m) => m.direction), ["in", "out"]);
    assert.ok(moves[0].seconds >= 0.05, `in took ${moves[0].seconds} s, the restore alone 50 ms`);
  } finally {
    await hosting.close();
  }
});
