/**
 * The shard region with the parts it works with: real nodes (`ClusterNode`
 * and `Sharding`, which routes each message to the region or the
 * coordinator runner and ticks them) on the in-memory network under a fake
 * clock, and a region alone, commanded by hand, for the rules of its
 * coordinator's authority.
 *
 * @module
 */
// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  RegionRegisteredSchema,
  ShardStoppedSchema,
  StartShardSchema,
  StopShardSchema,
} from "../../proto/gen/cluster_pb.ts";
import { ClusterNode } from "../membership/cluster_node.ts";
import { Refusal, RemotingError } from "../remoting/errors.ts";
import { MemoryNetwork } from "../remoting/memory_transport.ts";
import type { NodeId } from "../remoting/node.ts";
import type { Body } from "../remoting/transport.ts";
import { DEFAULT_SHARDING_TIMINGS, DEFAULT_TIMINGS } from "../timings.ts";
import type { PurchaseEvent } from "./entity.ts";
import { ShardRegion } from "./region.ts";
import { Sharding } from "./sharding.ts";
import { MEMORY_STORAGE } from "./shard_storage.ts";
import { settleTicking, tickUntil } from "../../tests/support/fake_clock.ts";

const SHARDS = 4;
const A = "10.0.0.1:2551";
const B = "10.0.0.2:2551";

function events(shard: number, from: number, count: number): PurchaseEvent[] {
  return Array.from(
    { length: count },
    (_, i) => ({ offset: from + i, userId: `user-${shard}`, quantity: 1, price: 10 }),
  );
}

/** Real nodes on an in-memory network, under a fake clock that only the test moves. */
class Nodes {
  readonly network = new MemoryNetwork(7, { minDelayMs: 1, maxDelayMs: 5 });
  readonly started: { node: ClusterNode; sharding?: Sharding }[] = [];
  /** Which node consumes each partition, as the coordinator reads it from the group. */
  placement = new Map<number, string>();
  #uid = 0;

  constructor(readonly clock: FakeTimers.InstalledClock) {}

  /** A node at `address`; with `sharding: false`, a member whose region never registers. */
  start(address: string, { sharding = true } = {}): { node: ClusterNode; sharding?: Sharding } {
    const self: NodeId = { address, uid: ++this.#uid };
    const node = ClusterNode.start({
      self,
      bindHost: "unused",
      bindPort: 0,
      seeds: [A, B],
      clusterName: "test",
      timings: DEFAULT_TIMINGS,
      transport: this.network.transport(self),
    });
    const started = {
      node,
      sharding: sharding
        ? new Sharding({
          node,
          typeName: "test",
          shardCount: SHARDS,
          askTimeoutMs: DEFAULT_SHARDING_TIMINGS.askTimeoutMs,
          placement: () => Promise.resolve(this.placement),
          shardOf: (userId) => Number(userId.slice("user-".length)),
          storage: MEMORY_STORAGE,
        })
        : undefined,
    };
    this.started.push(started);
    return started;
  }

  /** Moves the clock on, 50 ms at a time, until `condition` holds; fails after `limitMs` of simulated time. */
  until(condition: () => boolean, limitMs: number, what: string): Promise<number> {
    return tickUntil(this.clock, condition, limitMs, what);
  }

  /** Settles `promise` while the clock moves on. */
  settle<T>(promise: Promise<T>, limitMs = 30_000): Promise<T> {
    return settleTicking(this.clock, promise, limitMs);
  }

  async close(): Promise<void> {
    for (const { node, sharding } of this.started) {
      node.close();
      await sharding?.close().catch(() => {});
    }
  }
}

async function withNodes(body: (nodes: Nodes) => Promise<void>): Promise<void> {
  const clock = FakeTimers.install({
    now: 1_000_000,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date", "performance"],
  });
  const nodes = new Nodes(clock);
  try {
    await body(nodes);
  } finally {
    await nodes.close();
    await clock.tickAsync(10_000).catch(() => {});
    clock.uninstall();
  }
}

const TEST = { sanitizeOps: false, sanitizeResources: false } as const;

Deno.test({
  ...TEST,
  name: "the coordinator fails over: the survivor's region registers with the new instance at once, its shards kept",
  fn: () =>
    withNodes(async (nodes) => {
      const a = nodes.start(A);
      const b = nodes.start(B);
      nodes.placement = new Map([[0, A], [1, B], [2, A], [3, B]]);
      await nodes.until(() => a.sharding!.isReady() && b.sharding!.isReady(), 30_000, "both nodes ready");
      assert.equal((await nodes.settle(b.sharding!.region.applyEvents(1, events(1, 0, 3)))).lastOffset, 2);
      const before = a.sharding!.coordinatorView?.epoch;
      assert.ok(before, "the coordinator runs on A, the oldest");

      a.node.close();
      await a.sharding!.close();
      nodes.placement = new Map([[0, B], [1, B], [2, B], [3, B]]);
      await nodes.until(() => b.sharding!.coordinatorView?.active === true, 60_000, "B's coordinator active");
      const failedOver = nodes.clock.now;
      // B's own region registered with B's new instance (it was told to): no wait for a registration grace.
      await nodes.until(() => b.sharding!.region.isRegistered, 5000, "B's region registered with B's instance");
      assert.ok(nodes.clock.now - failedOver < DEFAULT_SHARDING_TIMINGS.registrationGraceMs);
      assert.equal((await nodes.settle(b.sharding!.region.applyEvents(0, events(0, 0, 2)))).lastOffset, 1);
      assert.equal((await nodes.settle(b.sharding!.region.applyEvents(1, events(1, 3, 1)))).lastOffset, 3);
      assert.equal(b.sharding!.region.shardState(1)?.lastOffset, 3, "shard 1 kept its state on B");
    }),
});

Deno.test({
  ...TEST,
  name: "a member whose region never registers holds fresh starts back until the registration grace is over",
  fn: () =>
    withNodes(async (nodes) => {
      const a = nodes.start(A);
      nodes.start(B, { sharding: false });
      nodes.placement = new Map([[0, A], [1, A], [2, A], [3, A]]);
      await nodes.until(() => a.node.snapshot().members.filter((m) => m.status === "Up").length === 2, 30_000, "B Up");
      await nodes.until(() => a.sharding!.region.isRegistered, 5000, "A's region registered");
      const since = nodes.clock.now;
      assert.equal(a.sharding!.coordinatorView?.active, false, "the coordinator waits for B's region");
      await nodes.until(
        () => a.sharding!.coordinatorView?.active === true,
        2 * DEFAULT_SHARDING_TIMINGS.registrationGraceMs,
        "the coordinator active",
      );
      assert.ok(nodes.clock.now - since >= DEFAULT_SHARDING_TIMINGS.registrationGraceMs - 1000, "not before the grace");
    }),
});

Deno.test({
  ...TEST,
  name:
    "a region takes commands only from its coordinator's epoch; a repeated start keeps state, a repeated stop returns the kept snapshot",
  fn: () =>
    withNodes(async (nodes) => {
      const network = nodes.network;
      let epoch = 5n;
      const coordinator = network.transport({ address: A, uid: 1 })((message): Body | undefined =>
        message.body.case === "registerRegion"
          ? { case: "regionRegistered", value: create(RegionRegisteredSchema, { epoch }) }
          : undefined
      );
      const stranger = network.transport({ address: "10.0.0.9:2551", uid: 9 })(() => undefined);
      const self: NodeId = { address: B, uid: 2 };
      const parts: { region?: ShardRegion } = {};
      const transport = network.transport(self)((message) => parts.region!.handle(message));
      const region = parts.region = new ShardRegion({
        self,
        shardCount: SHARDS,
        remoting: transport,
        coordinator: () => coordinator.self,
        askTimeoutMs: 3000,
        shardOf: () => 2,
        storage: MEMORY_STORAGE,
      });
      try {
        await nodes.settle(region.register());
        assert.ok(region.isRegistered);

        const start = (e: bigint): Body => ({
          case: "startShard",
          value: create(StartShardSchema, { shard: 2, epoch: e }),
        });
        const stop = (e: bigint): Body => ({
          case: "stopShard",
          value: create(StopShardSchema, { shard: 2, epoch: e }),
        });
        const ask = (from: typeof coordinator, body: Body) => nodes.settle(from.ask(self, body, 2000));
        const refusal = (from: typeof coordinator, body: Body) =>
          ask(from, body).then(
            () => "accepted",
            (error) => error instanceof RemotingError ? error.refusal : String(error),
          );
        assert.equal((await ask(coordinator, start(5n))).body.case, "shardStarted");
        await nodes.settle(region.applyEvents(2, events(2, 0, 4)));
        assert.equal((await ask(coordinator, start(5n))).body.case, "shardStarted");
        assert.equal(region.shardState(2)?.lastOffset, 3, "a repeated start keeps the state");

        assert.equal(await refusal(stranger, stop(5n)), Refusal.NOT_THE_COORDINATOR, "another node");
        assert.equal(await refusal(coordinator, stop(4n)), Refusal.WRONG_EPOCH, "an older epoch");
        assert.equal(region.shardState(2)?.lastOffset, 3, "refused commands changed nothing");

        for (let i = 0; i < 2; i++) {
          const reply = await ask(coordinator, stop(5n));
          assert.equal(reply.body.case, "shardStopped");
          const stopped = reply.body.case === "shardStopped" ? reply.body.value : create(ShardStoppedSchema);
          assert.equal(stopped.hosted, true);
          assert.equal(stopped.snapshot?.lastOffset, 3n);
          assert.equal(stopped.snapshot?.entities[0]?.totalPurchases, 4n);
        }
        assert.equal(region.shardState(2), undefined);

        // A newer epoch than the region registered with: refused, and the region registers again.
        epoch = 6n;
        assert.equal(await refusal(coordinator, start(6n)), Refusal.WRONG_EPOCH, "a newer instance");
        assert.equal(region.isRegistered, false);
        await nodes.settle(region.register());
        assert.equal((await ask(coordinator, start(6n))).body.case, "shardStarted");
      } finally {
        coordinator.close();
        stranger.close();
        transport.close();
        await region.close();
      }
    }),
});
