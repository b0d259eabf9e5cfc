import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  RegionRegisteredSchema,
  ShardStoppedSchema,
  StartShardSchema,
  StopShardSchema,
} from "../../proto/gen/cluster_pb.ts";
import type { Member } from "../membership/members.ts";
import type { NodeId } from "../remoting/node.ts";
import { Remoting } from "../remoting/remoting.ts";
import type { Body, InboundHandler } from "../remoting/transport.ts";
import { REGISTRATION_GRACE_MS } from "./coordinator.ts";
import { CoordinatorRunner } from "./coordinator_runner.ts";
import type { PurchaseEvent } from "./entity.ts";
import { ShardRegion } from "./region.ts";
import { MEMORY_STORAGE } from "./shard_storage.ts";
import type { ClusterSnapshot } from "../membership/cluster_node.ts";
import { freePort } from "../../tests/support/process.ts";
import { eventually } from "../../tests/support/wait.ts";

const SHARDS = 4;
let uids = 5000;

function remoting(handler: InboundHandler): Remoting {
  const port = freePort();
  return Remoting.start({
    self: { address: `127.0.0.1:${port}`, uid: ++uids },
    bindHost: "127.0.0.1",
    bindPort: port,
    clusterName: "test",
  }, handler);
}

function events(shard: number, from: number, count: number): PurchaseEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    offset: from + i,
    userId: `user-${shard}`,
    product: "skis",
    quantity: 1,
    price: 10,
  }));
}

function snapshot(members: readonly { node: NodeId; status: Member["status"]; upNumber: number }[], oldest: NodeId) {
  const view: ClusterSnapshot = {
    self: oldest,
    members: members.map((m) => ({ ...m, management: "" })),
    removed: [],
    unreachable: [],
    oldest,
    leader: oldest,
  };
  return view;
}

/** Runs `body`, then closes what it registered, whatever happens. */
async function using(body: (closing: (() => unknown)[]) => Promise<void>): Promise<void> {
  const closing: (() => unknown)[] = [];
  try {
    await body(closing);
  } finally {
    for (const close of closing.reverse()) await close();
  }
}

/** One node running both the coordinator and a region, as the oldest member does. */
function coordinatorNode(closing: (() => unknown)[], clock?: () => number) {
  // Messages may arrive once the remoting is up, before the parts that answer them exist.
  const parts: { region?: ShardRegion; runner?: CoordinatorRunner } = {};
  const node = remoting((message) => {
    const kind = message.body.case ?? "";
    if (["registerRegion", "getShardHome", "assignmentChanged"].includes(kind)) return parts.runner!.handle(message);
    return parts.region!.handle(message);
  });
  closing.push(() => node.close());
  const self = node.self;
  const view = { oldest: self as NodeId | undefined };
  const runner = parts.runner = new CoordinatorRunner({
    self,
    shardCount: SHARDS,
    durableState: MEMORY_STORAGE.durable,
    remoting: node,
    askTimeoutMs: 2000,
    // Only shard 0 is consumed anywhere: the others start only when asked for.
    placement: () => Promise.resolve(new Map([[0, self.address]])),
    clock,
  });
  closing.push(() => runner.close());
  const region = parts.region = new ShardRegion({
    self,
    shardCount: SHARDS,
    remoting: node,
    coordinator: () => view.oldest,
    askTimeoutMs: 3000,
    shardOf: () => 0,
    storage: MEMORY_STORAGE,
  });
  closing.push(() => region.close());
  // What Sharding's tick does.
  const ticker = setInterval(() => void region.register(), 100);
  closing.push(() => clearInterval(ticker));
  return { self, view, runner, region };
}

Deno.test("a coordinator that moves away and back starts a new epoch, and the region registers with it again", () =>
  using(async (closing) => {
    const { self, view, runner, region } = coordinatorNode(closing);
    const other = { address: "127.0.0.1:1", uid: 1 };
    runner.update(snapshot([{ node: self, status: "Up", upNumber: 1 }], self));
    await eventually("the region registers", () => region.isRegistered);
    assert.equal((await region.applyEvents(0, events(0, 0, 3))).lastOffset, 2);
    assert.equal(region.shardState(1), undefined);

    // A transient view in which another member looked older, then this node again.
    view.oldest = other;
    runner.update(
      snapshot([{ node: self, status: "Up", upNumber: 2 }, { node: other, status: "Up", upNumber: 1 }], other),
    );
    view.oldest = self;
    runner.update(snapshot([{ node: self, status: "Up", upNumber: 1 }], self));
    // A region whose work is all local asks nothing: the new instance calls it to register.
    await eventually("the new instance activating with the region registered again", () => runner.isActive, 3000);

    // The new instance knows nothing until the region tells it; a shard nobody hosts yet starts
    // long before its registration grace would have let it start without the region.
    assert.equal((await region.applyEvents(1, events(1, 0, 2))).lastOffset, 1);
    assert.equal((await region.applyEvents(0, events(0, 3, 1))).lastOffset, 3);
    assert.equal(region.shardState(0)?.lastOffset, 3, "shard 0 kept its state here");
  }));

Deno.test("the coordinator's registration grace runs on the monotonic clock it is given", () =>
  using(async (closing) => {
    let now = 0;
    const { self, runner, region } = coordinatorNode(closing, () => now);
    // A member whose region never registers holds fresh starts back until the grace is over.
    const silent = { address: "127.0.0.1:1", uid: 1 };
    const members = [{ node: self, status: "Up" as const, upNumber: 1 }, {
      node: silent,
      status: "Up" as const,
      upNumber: 2,
    }];
    runner.update(snapshot(members, self));
    await eventually("the region registers", () => region.isRegistered);
    assert.equal(runner.isActive, false, "the coordinator waits for the silent member's region");
    now += REGISTRATION_GRACE_MS;
    await eventually("the coordinator activating once its clock says the grace is over", () => runner.isActive, 3000);
  }));

Deno.test("a region takes commands only from its coordinator's epoch; a repeated start keeps state, a repeated stop returns the kept snapshot", () =>
  using(async (closing) => {
    let epoch = 5n;
    const coordinator = remoting((message): Body | undefined =>
      message.body.case === "registerRegion"
        ? { case: "regionRegistered", value: create(RegionRegisteredSchema, { epoch }) }
        : undefined
    );
    const stranger = remoting(() => undefined);
    const parts: { region?: ShardRegion } = {};
    const node = remoting((message) => parts.region!.handle(message));
    closing.push(() => coordinator.close(), () => stranger.close(), () => node.close());
    const region = parts.region = new ShardRegion({
      self: node.self,
      shardCount: SHARDS,
      remoting: node,
      coordinator: () => coordinator.self,
      askTimeoutMs: 3000,
      shardOf: () => 2,
      storage: MEMORY_STORAGE,
    });
    closing.push(() => region.close());
    await region.register();
    assert.ok(region.isRegistered);

    const start = (e: bigint): Body => ({
      case: "startShard",
      value: create(StartShardSchema, { shard: 2, epoch: e }),
    });
    const stop = (e: bigint): Body => ({ case: "stopShard", value: create(StopShardSchema, { shard: 2, epoch: e }) });
    assert.equal((await coordinator.ask(node.self, start(5n), 2000)).body.case, "shardStarted");
    await region.applyEvents(2, events(2, 0, 4));
    assert.equal((await coordinator.ask(node.self, start(5n), 2000)).body.case, "shardStarted");
    assert.equal(region.shardState(2)?.lastOffset, 3, "a repeated start keeps the state");

    await assert.rejects(stranger.ask(node.self, stop(5n), 2000), /is not the shard coordinator this node knows/);
    await assert.rejects(coordinator.ask(node.self, stop(4n), 2000), /not registered with coordinator epoch 4/);
    assert.equal(region.shardState(2)?.lastOffset, 3, "refused commands changed nothing");

    const first = await coordinator.ask(node.self, stop(5n), 2000);
    const again = await coordinator.ask(node.self, stop(5n), 2000);
    for (const reply of [first, again]) {
      assert.equal(reply.body.case, "shardStopped");
      const stopped = reply.body.case === "shardStopped" ? reply.body.value : create(ShardStoppedSchema);
      assert.equal(stopped.hosted, true);
      assert.equal(stopped.snapshot?.lastOffset, 3n);
      assert.equal(stopped.snapshot?.entities[0]?.totalPurchases, 4n);
    }
    assert.equal(region.shardState(2), undefined);

    // A newer epoch than the region registered with: refused, and the region registers again.
    epoch = 6n;
    await assert.rejects(coordinator.ask(node.self, start(6n), 2000), /not registered with coordinator epoch 6/);
    assert.equal(region.isRegistered, false);
    await region.register();
    assert.equal((await coordinator.ask(node.self, start(6n), 2000)).body.case, "shardStarted");
  }));
