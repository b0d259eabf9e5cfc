import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { PurchaseEventSchema } from "../../proto/gen/cluster_pb.ts";
import type { NodeId } from "../remoting/node.ts";
import { type ShardHomes, ShardHosting } from "./hosting.ts";
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
    coordinator: { setHome: () => {}, forgetHome: () => {}, resolve: () => Promise.reject(new Error("not asked")) },
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

const SELF: NodeId = { address: "127.0.0.1:2551", uid: 1 };

/** A durable store whose first write fails (a broker that stopped answering), counting its opens. */
class FailingOnceStorage implements ShardStorage {
  readonly durable = true;
  opens = 0;
  #failed = false;

  open(): Promise<ShardLog> {
    this.opens++;
    return Promise.resolve({
      restored: undefined,
      write: () => {
        if (this.#failed) return Promise.resolve();
        this.#failed = true;
        return Promise.reject(new Error("the write timed out"));
      },
      close: () => Promise.resolve(),
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** The coordinator's answers, held until the test gives them. */
class HeldHomes implements ShardHomes {
  readonly asked: PromiseWithResolvers<NodeId>[] = [];
  setHome(): void {}
  forgetHome(): void {}
  resolve(): Promise<NodeId> {
    const answer = Promise.withResolvers<NodeId>();
    this.asked.push(answer);
    return answer.promise;
  }
}

const event = (offset: number) =>
  create(PurchaseEventSchema, { offset: BigInt(offset), userId: "7", quantity: 1n, price: 5n });

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

Deno.test("a stop wins over a reopen that still waits for the coordinator's answer", async () => {
  const storage = new FailingOnceStorage();
  const homes = new HeldHomes();
  const hosting = new ShardHosting({
    self: SELF,
    shardCount: 8,
    storage,
    coordinator: homes,
    askTimeoutMs: 1000,
    handedOffTtlMs: 60_000,
  });
  hosting.start(3, undefined);
  await hosting.get(3)!.ready;
  // The write fails: the copy is dropped, and the node asks the coordinator whether to reopen it.
  const reply = await hosting.applyForwarded(3, [event(0)]);
  assert.equal(reply.case, "notHere");
  await settle();
  assert.equal(homes.asked.length, 1, "the reopen asks the coordinator");
  // The coordinator moved the shard away meanwhile: its stop arrives before the answer, which was given earlier.
  const stopped = await hosting.stop(3);
  assert.equal(stopped.case, "shardStopped");
  homes.asked[0].resolve(SELF);
  await settle();
  assert.equal(hosting.get(3), undefined, "no stale copy is reopened after the stop");
  assert.equal(storage.opens, 1);
  await hosting.close();
});

Deno.test("without a stop, a reopen the coordinator confirms opens the shard again", async () => {
  const storage = new FailingOnceStorage();
  const homes = new HeldHomes();
  const hosting = new ShardHosting({
    self: SELF,
    shardCount: 8,
    storage,
    coordinator: homes,
    askTimeoutMs: 1000,
    handedOffTtlMs: 60_000,
  });
  hosting.start(3, undefined);
  await hosting.get(3)!.ready;
  await hosting.applyForwarded(3, [event(0)]);
  await settle();
  homes.asked[0].resolve(SELF);
  await settle();
  assert.ok(hosting.get(3), "reopened");
  assert.equal(storage.opens, 2);
  await hosting.close();
});

/** One shard's store shared by two copies: each open restores what the last write left. */
class SharedStore implements ShardStorage {
  readonly durable = true;
  opens = 0;
  stored: { lastOffset: number; totals: [string, { totalPurchases: number; amountSpent: number }][] } | undefined;

  open(shard: number): Promise<ShardLog> {
    this.opens++;
    const stored = this.stored;
    return Promise.resolve({
      restored: stored && { shard, lastOffset: stored.lastOffset, entities: stored.totals },
      write: (changed, lastOffset) => {
        this.stored = { lastOffset, totals: changed.map(([user, totals]) => [user, { ...totals }]) };
        return Promise.resolve();
      },
      close: () => Promise.resolve(),
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("a copy behind the offset its partition is taken over from is reopened from the store; one up to date is kept", async () => {
  // Found by cluster/sharding/cluster_sim_test.ts (seed 140): the two halves of a split cluster each hosted the
  // shard; the other half stored its last events and died, and this copy answered queries from before them.
  const store = new SharedStore();
  const homes = new HeldHomes();
  const options = { shardCount: 8, storage: store, askTimeoutMs: 1000, handedOffTtlMs: 60_000 };
  const here = new ShardHosting({ ...options, self: SELF, coordinator: homes });
  const other = new ShardHosting({
    ...options,
    self: { address: "127.0.0.1:2552", uid: 2 },
    coordinator: new HeldHomes(),
  });
  try {
    here.start(3, undefined);
    await here.get(3)!.ready;
    await here.applyForwarded(3, [event(0), event(1)]);
    other.start(3, undefined);
    await other.get(3)!.ready;
    await other.applyForwarded(3, [event(2), event(3)]);
    await other.close();

    assert.equal(here.reopenIfBehind(3, 2), false, "read from offset 2 on: this copy applied up to 1");
    assert.equal(store.opens, 2);
    assert.equal(here.reopenIfBehind(3, 4), true, "read from offset 4 on: events 2 and 3 were stored elsewhere");
    assert.equal(here.get(3), undefined, "the stale copy is gone at once");
    await settle();
    homes.asked.at(-1)!.resolve(SELF);
    await settle();
    await here.get(3)!.ready;
    assert.deepEqual(here.get(3)!.snapshot()?.entities, [["7", { totalPurchases: 4, amountSpent: 20 }]]);
  } finally {
    await here.close();
  }
});
