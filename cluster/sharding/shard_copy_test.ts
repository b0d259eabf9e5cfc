import assert from "node:assert/strict";
import type { UserTotals } from "./entity.ts";
import { ShardClosedError, ShardCopy } from "./shard_copy.ts";
import type { ShardSnapshot } from "./shard.ts";
import { MEMORY_STORAGE, type ShardLog, type ShardStorage } from "./shard_storage.ts";

/** Hooks for a test that does not look at them. */
const IGNORED = { broken: () => {}, refused: () => {} };

const purchase = (offset: number, userId: string) => ({ offset, userId, product: "rope", quantity: 1, price: 100 });

/** A durable storage in memory whose writes the test holds and fails at will. */
class TestStorage implements ShardStorage {
  readonly durable = true;
  readonly writes: { changed: [string, UserTotals][]; lastOffset: number }[] = [];
  opens = 0;
  failOpens = 0;
  failWrites = false;
  gate: Promise<void> = Promise.resolve();
  writing = Promise.withResolvers<void>();
  stored: ShardSnapshot | undefined;

  open(shard: number): Promise<ShardLog> {
    this.opens++;
    if (this.failOpens-- > 0) return Promise.reject(new Error("broker unreachable"));
    return Promise.resolve({
      restored: this.stored && { ...this.stored, shard },
      write: async (changed, lastOffset) => {
        this.writing.resolve();
        await this.gate;
        if (this.failWrites) throw new Error("transaction timed out");
        this.writes.push({ changed: changed.map(([u, t]) => [u, t]), lastOffset });
      },
      close: () => Promise.resolve(),
    });
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("a batch is answered only once the store holds it, with every user it changed", async () => {
  const storage = new TestStorage();
  const shard = new ShardCopy(3, storage, {
    broken: () => assert.fail("not broken"),
    refused: () => assert.fail("not refused"),
  });
  const release = Promise.withResolvers<void>();
  storage.gate = release.promise;
  let answered = false;
  const applying = shard.apply([purchase(0, "7"), purchase(1, "8"), purchase(2, "7")]).then((r) => {
    answered = true;
    return r;
  });
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(answered, false, "answered before the write was stored");
  release.resolve();
  assert.deepEqual(await applying, { applied: 3, skipped: 0, lastOffset: 2 });
  assert.deepEqual(storage.writes, [{
    changed: [["7", { totalPurchases: 2, amountSpent: 200 }], ["8", { totalPurchases: 1, amountSpent: 100 }]],
    lastOffset: 2,
  }]);
  // A redelivered batch changes nobody and writes nothing.
  assert.deepEqual(await shard.apply([purchase(2, "7")]), { applied: 0, skipped: 1, lastOffset: 2 });
  assert.equal(storage.writes.length, 1);
});

Deno.test("a query sees a batch only once its write has committed, and never a write that failed", async () => {
  const storage = new TestStorage();
  const shard = new ShardCopy(3, storage, IGNORED);
  await shard.apply([purchase(0, "7")]);
  const release = Promise.withResolvers<void>();
  storage.gate = release.promise;
  storage.writing = Promise.withResolvers<void>();
  const applying = shard.apply([purchase(1, "7"), purchase(2, "9")]);
  await storage.writing.promise;
  // The transaction is under way: it may yet fail, so the batch does not show.
  assert.deepEqual(await shard.get("7"), { totalPurchases: 1, amountSpent: 100 });
  assert.equal(await shard.get("9"), undefined);
  release.resolve();
  await applying;
  assert.deepEqual(await shard.get("7"), { totalPurchases: 2, amountSpent: 200 });
  assert.deepEqual(await shard.get("9"), { totalPurchases: 1, amountSpent: 100 });

  const failing = Promise.withResolvers<void>();
  storage.gate = failing.promise;
  storage.failWrites = true;
  storage.writing = Promise.withResolvers<void>();
  const lost = shard.apply([purchase(3, "7")]);
  await storage.writing.promise;
  assert.deepEqual(await shard.get("7"), { totalPurchases: 2, amountSpent: 200 });
  failing.resolve();
  await assert.rejects(lost);
  assert.deepEqual(await shard.get("7"), { totalPurchases: 2, amountSpent: 200 }, "a failed write never showed");
});

Deno.test("a shard restores from its store before it applies or answers", async () => {
  const storage = new TestStorage();
  storage.stored = { shard: 3, lastOffset: 41, entities: [["7", { totalPurchases: 5, amountSpent: 500 }]] };
  const shard = new ShardCopy(3, storage, IGNORED);
  assert.deepEqual(await shard.get("7"), { totalPurchases: 5, amountSpent: 500 });
  assert.deepEqual(await shard.apply([purchase(41, "7"), purchase(42, "7")]), {
    applied: 1,
    skipped: 1,
    lastOffset: 42,
  });
  assert.deepEqual(await shard.get("7"), { totalPurchases: 6, amountSpent: 600 });
});

Deno.test("opening retries while the store cannot be reached", async () => {
  const storage = new TestStorage();
  storage.failOpens = 1;
  const shard = new ShardCopy(3, storage, IGNORED);
  assert.equal(shard.isReady, false);
  await shard.ready;
  assert.equal(storage.opens, 2);
});

Deno.test("a failed write breaks the copy: the caller is refused, the owner told once, later batches refused", async () => {
  const storage = new TestStorage();
  const broken: unknown[] = [];
  const shard = new ShardCopy(3, storage, { broken: (error) => broken.push(error), refused: () => {} });
  storage.failWrites = true;
  await assert.rejects(shard.apply([purchase(0, "7")]), /transaction timed out/);
  assert.equal(broken.length, 1);
  // Memory is ahead of the store now: nothing more may be applied or handed over from it.
  await assert.rejects(shard.apply([purchase(1, "7")]), ShardClosedError);
  assert.equal(shard.snapshot(), undefined);
  assert.equal(broken.length, 1);
});

Deno.test("closing waits for the write in flight, and refuses what comes after", async () => {
  const storage = new TestStorage();
  const shard = new ShardCopy(3, storage, IGNORED);
  await shard.ready;
  const release = Promise.withResolvers<void>();
  storage.gate = release.promise;
  const inFlight = shard.apply([purchase(0, "7")]);
  await storage.writing.promise;
  const closing = shard.close();
  const late = shard.apply([purchase(1, "7")]);
  let closed = false;
  closing.then(() => (closed = true));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.equal(closed, false, "closed while a write was in flight");
  release.resolve();
  await inFlight;
  await closing;
  await assert.rejects(late, ShardClosedError);
  assert.equal(storage.writes.length, 1);
});

Deno.test("without durable storage a shard starts from the state handed over, and hands its own on close", async () => {
  const handed: ShardSnapshot = { shard: 3, lastOffset: 9, entities: [["7", { totalPurchases: 1, amountSpent: 100 }]] };
  const shard = new ShardCopy(3, MEMORY_STORAGE, IGNORED, handed);
  await shard.apply([purchase(10, "7")]);
  assert.deepEqual(await shard.close(), {
    shard: 3,
    lastOffset: 10,
    entities: [["7", { totalPurchases: 2, amountSpent: 200 }]],
  });
});
