import assert from "node:assert/strict";
import {
  Coordinator,
  type CoordinatorAction,
  LEAVING_GRACE_MS,
  type MemberInfo,
  REGISTRATION_GRACE_MS,
  WAITER_TTL_MS,
} from "./coordinator.ts";
import { type NodeId, sameNode } from "../remoting/node.ts";
import type { ShardSnapshot } from "./shard.ts";

const A: NodeId = { address: "127.0.0.1:2551", uid: 1 };
const B: NodeId = { address: "127.0.0.1:2552", uid: 2 };
const C: NodeId = { address: "127.0.0.1:2553", uid: 3 };

const up = (...nodes: NodeId[]): MemberInfo[] => nodes.map((node) => ({ node, status: "Up" }));

/**
 * Regions simulated in memory: they host what they are told to, keep a counter
 * per shard (standing for its users' totals), and answer commands when the
 * test lets them, in any order.
 */
class World {
  now = 0;
  readonly coordinator: Coordinator;
  readonly hosted = new Map<string, Map<number, number>>();
  readonly dead = new Set<string>();
  pending: CoordinatorAction[] = [];
  readonly log: CoordinatorAction[] = [];
  #request = 0;

  constructor(readonly shards: number, regions: NodeId[]) {
    this.coordinator = new Coordinator(shards, this.now);
    for (const r of regions) this.hosted.set(r.address, new Map());
  }

  feed(input: Parameters<Coordinator["step"]>[0]): void {
    for (const action of this.coordinator.step(input)) {
      this.log.push(action);
      if (action.type === "stopShard" || action.type === "startShard") this.pending.push(action);
    }
  }

  register(region: NodeId): void {
    const shards = [...this.hosted.get(region.address)!.keys()];
    this.feed({ type: "register", region, shards, shardCount: this.shards, requestId: ++this.#request, now: this.now });
  }

  /** Carries out one pending command (chosen by `pick`), as a region would. */
  complete(pick = 0): void {
    const [command] = this.pending.splice(pick, 1);
    if (!command || (command.type !== "stopShard" && command.type !== "startShard")) return;
    const region = this.hosted.get(command.at.address)!;
    if (this.dead.has(command.at.address)) {
      const type = command.type === "stopShard" ? "stopFailed" : "startFailed";
      this.feed(
        type === "stopFailed"
          ? { type, shard: command.shard, from: command.at, now: this.now }
          : { type, shard: command.shard, at: command.at, now: this.now },
      );
      return;
    }
    if (command.type === "stopShard") {
      const count = region.get(command.shard);
      region.delete(command.shard);
      const snapshot: ShardSnapshot | undefined = count === undefined
        ? undefined
        : { shard: command.shard, lastOffset: count, entities: [] };
      this.feed({ type: "stopped", shard: command.shard, from: command.at, snapshot, now: this.now });
    } else {
      for (const [address, other] of this.hosted) {
        if (other.has(command.shard) && !this.dead.has(address)) {
          assert.fail(`shard ${command.shard} started on ${command.at.address} while ${address} still hosts it`);
        }
      }
      region.set(command.shard, command.snapshot?.lastOffset ?? 0);
      this.feed({ type: "started", shard: command.shard, at: command.at, now: this.now });
    }
  }

  settle(random?: () => number): void {
    for (let i = 0; this.pending.length > 0; i++) {
      if (i > 10_000) assert.fail("commands never settle");
      this.complete(random ? Math.floor(random() * this.pending.length) : 0);
      if (this.pending.length === 0) this.tick(1000);
    }
  }

  tick(ms: number): void {
    this.now += ms;
    this.feed({ type: "tick", now: this.now });
  }

  homes(region: NodeId): number[] {
    return [...this.hosted.get(region.address)!.keys()].sort((a, b) => a - b);
  }
}

function placement(shards: number, owners: NodeId[]): Map<number, string> {
  return new Map(Array.from({ length: shards }, (_, s) => [s, owners[s % owners.length].address]));
}

/** A world of regions A and B, both registered, with the shards settled alternately on A and B. */
function settledOnAB(shards: number): World {
  const w = new World(shards, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.register(B);
  w.feed({ type: "placement", desired: placement(shards, [A, B]), now: 0 });
  w.settle();
  return w;
}

Deno.test("a fresh coordinator starts every shard on the node consuming its partition", () => {
  const w = new World(8, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  assert.equal(w.coordinator.isActive, false, "waits for B's region");
  w.register(B);
  assert.equal(w.coordinator.isActive, true);
  w.feed({ type: "placement", desired: placement(8, [A, B]), now: 0 });
  w.settle();
  assert.deepEqual(w.homes(A), [0, 2, 4, 6]);
  assert.deepEqual(w.homes(B), [1, 3, 5, 7]);
});

Deno.test("shards follow a new placement, and their state moves with them", () => {
  const w = new World(6, [A, B, C]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.register(B);
  w.feed({ type: "placement", desired: placement(6, [A]), now: 0 });
  w.settle();
  for (const shard of w.homes(A)) w.hosted.get(A.address)!.set(shard, 100 + shard);

  w.feed({ type: "placement", desired: placement(6, [A, B]), now: 1 });
  w.settle();
  assert.deepEqual(w.homes(A), [0, 2, 4]);
  assert.deepEqual(w.homes(B), [1, 3, 5]);
  assert.deepEqual([...w.hosted.get(B.address)!], [[1, 101], [3, 103], [5, 105]]);
  const started = w.log.filter((a) => a.type === "rebalanceStarted");
  assert.deepEqual(started.at(-1), {
    type: "rebalanceStarted",
    moves: [1, 3, 5].map((shard) => ({ shard, from: A, to: B })),
  });
  assert.ok(w.log.some((a) => a.type === "rebalanceCompleted" && a.shards === 3));
});

Deno.test("a leaving node's shards go where Kafka sends its partitions, or anywhere after a grace period", () => {
  const w = settledOnAB(4);
  w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Leaving" }], now: w.now });
  w.feed({
    type: "placement",
    desired: new Map([[0, A.address], [1, A.address], [2, A.address], [3, B.address]]),
    now: w.now,
  });
  w.settle();
  assert.deepEqual(w.homes(A), [0, 1, 2]);
  assert.deepEqual(w.homes(B), [3], "waits for Kafka to move partition 3 first");
  w.tick(LEAVING_GRACE_MS);
  w.settle();
  assert.deepEqual(w.homes(A), [0, 1, 2, 3]);
  assert.deepEqual(w.homes(B), []);
});

Deno.test("the shards of a node that died are lost and start empty where Kafka now sends their partitions", () => {
  const w = settledOnAB(4);
  w.dead.add(B.address);
  w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: 1 });
  assert.deepEqual(w.log.filter((a) => a.type === "shardsLost"), [{
    type: "shardsLost",
    shards: [1, 3],
    region: B,
    clusterDown: false,
  }]);
  w.feed({ type: "placement", desired: placement(4, [A]), now: 2 });
  w.settle();
  assert.deepEqual(w.homes(A), [0, 1, 2, 3]);
});

Deno.test("when every member is stopping, a region's shards stop with it rather than count as lost", () => {
  const w = settledOnAB(2);
  w.feed({ type: "members", members: [{ node: A, status: "Leaving" }, { node: B, status: "Exiting" }], now: w.now });
  w.feed({ type: "members", members: [{ node: A, status: "Leaving" }], now: w.now });
  assert.deepEqual(w.log.filter((a) => a.type === "shardsLost"), [
    { type: "shardsLost", shards: [1], region: B, clusterDown: true },
  ]);
});

Deno.test("an unallocated shard asked for goes to the consumer of its partition, else to the asker", () => {
  const w = new World(2, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.register(B);
  w.feed({ type: "getHome", shard: 1, requester: A, requestId: 77, now: 0 });
  assert.equal(w.log.some((a) => a.type === "homeReply"), false, "no answer before the shard runs");
  w.complete();
  assert.deepEqual(w.log.at(-1), { type: "homeReply", requestId: 77, shard: 1, home: A });
  w.feed({ type: "placement", desired: new Map([[0, B.address]]), now: 1 });
  w.feed({ type: "getHome", shard: 0, requester: A, requestId: 78, now: 1 });
  w.settle();
  assert.ok(w.log.some((a) => a.type === "homeReply" && a.requestId === 78 && sameNode(a.home, B)));
});

Deno.test("requests for a home that stays unknown are forgotten after a while, not piled up", () => {
  const w = new World(2, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.register(B);
  w.feed({ type: "getHome", shard: 1, requester: A, requestId: 77, now: 0 });
  w.tick(WAITER_TTL_MS + 1);
  w.feed({ type: "getHome", shard: 1, requester: A, requestId: 78, now: w.now });
  w.complete();
  assert.deepEqual(w.log.filter((a) => a.type === "homeReply").map((a) => a.type === "homeReply" && a.requestId), [78]);
});

Deno.test("a late repeat of a region's registration does not make the coordinator forget a shard it started there", () => {
  const w = settledOnAB(2);
  w.hosted.get(A.address)!.set(0, 42);
  // Sent before shard 0 started on A (the first reply was lost), received after.
  w.feed({ type: "register", region: A, shards: [], shardCount: 2, requestId: 900, now: w.now });
  w.feed({ type: "placement", desired: new Map([[0, B.address], [1, B.address]]), now: w.now });
  w.settle();
  assert.deepEqual(w.homes(A), []);
  assert.equal(w.hosted.get(B.address)!.get(0), 42, "shard 0 moved with its state");
});

Deno.test("a new coordinator rebuilds its table from the regions and moves nothing that is in place", () => {
  const w = new World(4, [A, B]);
  w.hosted.get(A.address)!.set(0, 5).set(2, 5);
  w.hosted.get(B.address)!.set(1, 5).set(3, 5);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.feed({ type: "placement", desired: placement(4, [A, B]), now: 0 });
  w.register(B);
  w.tick(1000);
  assert.deepEqual(w.pending, [], "nothing allocated while A has not registered");
  w.register(A);
  assert.deepEqual(w.pending, []);
  assert.equal(w.coordinator.allocation.size, 4);
});

Deno.test("a coordinator stops waiting for a region that never registers after the grace period", () => {
  const w = new World(2, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.tick(REGISTRATION_GRACE_MS);
  assert.ok(w.log.some((a) => a.type === "activated" && a.missing.length === 1 && sameNode(a.missing[0], B)));
});

Deno.test("a region with another shard count is refused", () => {
  const w = new World(128, [A]);
  w.feed({ type: "members", members: up(A), now: 0 });
  w.feed({ type: "register", region: A, shards: [], shardCount: 64, requestId: 1, now: 0 });
  const reply = w.log.find((a) => a.type === "registerReply");
  assert.match(reply?.type === "registerReply" && reply.error || "", /this cluster has 128 shards .* has 64/);
});

Deno.test("random interleavings never start a shard on two live nodes and converge to the placement", () => {
  for (let seed = 1; seed <= 300; seed++) {
    let state = seed;
    const random = () => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) / 2 ** 32);
    const nodes = [A, B, C];
    const w = new World(16, nodes);
    w.feed({ type: "members", members: up(...nodes), now: 0 });
    for (const n of nodes) w.register(n);
    for (let round = 0; round < 6; round++) {
      const owners = nodes.filter(() => random() < 0.7);
      w.feed({ type: "placement", desired: placement(16, owners.length > 0 ? owners : [A]), now: w.now });
      for (let i = 0; i < 5 && w.pending.length > 0; i++) w.complete(Math.floor(random() * w.pending.length));
      if (random() < 0.3) {
        w.feed({
          type: "getHome",
          shard: Math.floor(random() * 16),
          requester: nodes[round % 3],
          requestId: round,
          now: w.now,
        });
      }
      w.tick(10);
    }
    const finalOwners = [A, C];
    w.feed({ type: "placement", desired: placement(16, finalOwners), now: w.now });
    w.settle(random);
    for (let shard = 0; shard < 16; shard++) {
      const owner = finalOwners[shard % 2];
      assert.ok(w.hosted.get(owner.address)!.has(shard), `seed ${seed}: shard ${shard} not on ${owner.address}`);
    }
    assert.deepEqual(w.homes(B), [], `seed ${seed}: B still hosts shards`);
  }
});

Deno.test("no shard starts empty while an Up member's region has not registered, even after the grace period", () => {
  const w = new World(2, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.register(A);
  w.tick(REGISTRATION_GRACE_MS);
  assert.equal(w.coordinator.isActive, true);
  w.feed({ type: "getHome", shard: 0, requester: A, requestId: 1, now: w.now });
  w.feed({ type: "placement", desired: placement(2, [A]), now: w.now });
  w.tick(1000);
  assert.deepEqual(w.pending, [], "B may host shard 0 or 1 already");
  w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Removed" }], now: w.now });
  w.settle();
  assert.deepEqual(w.homes(A), [0, 1]);
});

Deno.test("state a region reports as handed off (the coordinator that moved it is gone) starts the shard again", () => {
  const w = new World(2, [A, B]);
  w.feed({ type: "members", members: up(A, B), now: 0 });
  w.hosted.get(A.address)!.set(0, 1);
  w.register(A);
  w.feed({
    type: "register",
    region: B,
    shards: [],
    handedOff: [{ shard: 1, lastOffset: 41, entities: [["7", { totalPurchases: 3, amountSpent: 30 }]] }],
    shardCount: 2,
    requestId: 9,
    now: 0,
  });
  w.feed({ type: "placement", desired: placement(2, [A]), now: 0 });
  w.settle();
  assert.deepEqual([...w.hosted.get(A.address)!], [[0, 1], [1, 41]], "shard 1 resumed at offset 41");
});
