import assert from "node:assert/strict";
import {
  COMMAND_RETRY_MS,
  Coordinator,
  type CoordinatorAction,
  LEAVING_GRACE_MS,
  type MemberInfo,
  REGISTRATION_GRACE_MS,
  WAITER_TTL_MS,
} from "./coordinator.ts";
import { create } from "@bufbuild/protobuf";
import { PurchaseEventSchema } from "../../proto/gen/cluster_pb.ts";
import { type NodeId, sameNode } from "../remoting/node.ts";
import { ShardHosting } from "./hosting.ts";
import { MEMORY_STORAGE } from "./shard_storage.ts";
import { snapshotFromProto, snapshotToProto } from "./sharding_codec.ts";

const A: NodeId = { address: "127.0.0.1:2551", uid: 1 };
const B: NodeId = { address: "127.0.0.1:2552", uid: 2 };
const C: NodeId = { address: "127.0.0.1:2553", uid: 3 };

const up = (...nodes: NodeId[]): MemberInfo[] => nodes.map((node) => ({ node, status: "Up" }));

/**
 * The coordinator's rules, one scenario at a time: the pure state machine fed
 * the inputs a test writes, and regions that are the real `ShardHosting`
 * (state in memory, moved as a snapshot), carrying out its commands when the
 * test lets them, in any order. A shard's state stands for its users'
 * totals by the last offset its copy applied. A dead region fails every
 * command; its state is gone.
 */
class World {
  now = 0;
  readonly coordinator: Coordinator;
  readonly #regions = new Map<string, ShardHosting>();
  readonly dead = new Set<string>();
  pending: CoordinatorAction[] = [];
  readonly log: CoordinatorAction[] = [];
  #request = 0;

  constructor(readonly shards: number, regions: NodeId[]) {
    this.coordinator = new Coordinator(shards, this.now);
    for (const r of regions) this.#regions.set(r.address, this.#hosting(r));
  }

  #hosting(region: NodeId): ShardHosting {
    return new ShardHosting({
      self: region,
      shardCount: this.shards,
      storage: MEMORY_STORAGE,
      // The coordinator's answers are the test's to give: the region asks it nothing here.
      coordinator: { setHome: () => {}, forgetHome: () => {}, resolve: () => Promise.reject(new Error("not asked")) },
      askTimeoutMs: 1000,
      handedOffTtlMs: 60_000,
    });
  }

  #region(region: NodeId): ShardHosting {
    return this.#regions.get(region.address)!;
  }

  feed(input: Parameters<Coordinator["step"]>[0]): void {
    for (const action of this.coordinator.step(input)) {
      this.log.push(action);
      if (action.type === "stopShard" || action.type === "startShard") this.pending.push(action);
    }
  }

  register(region: NodeId): void {
    this.feed({
      type: "register",
      region,
      shards: this.homes(region),
      shardCount: this.shards,
      durableState: true,
      requestId: ++this.#request,
      now: this.now,
    });
  }

  /** Has `region` host `shard` with its events applied up to `lastOffset`, as an earlier coordinator left it. */
  async seed(region: NodeId, shard: number, lastOffset: number): Promise<void> {
    const hosting = this.#region(region);
    if (!hosting.get(shard)) hosting.start(shard, undefined);
    await hosting.get(shard)!.ready;
    const from = (hosting.get(shard)!.snapshot()?.lastOffset ?? -1) + 1;
    const events = Array.from({ length: lastOffset + 1 - from }, (_, i) => event(from + i));
    if (events.length > 0) await hosting.applyForwarded(shard, events);
  }

  /** The offset `region`'s copy of `shard` has applied up to; `undefined` where it does not run. */
  offsetOf(region: NodeId, shard: number): number | undefined {
    return this.#region(region).get(shard)?.snapshot()?.lastOffset;
  }

  /** The region dies: it fails every command from now on, and its state is gone. */
  async kill(region: NodeId): Promise<void> {
    this.dead.add(region.address);
    await this.#region(region).close();
    this.#regions.set(region.address, this.#hosting(region));
  }

  /** Carries out one pending command (chosen by `pick`), as the region would. */
  async complete(pick = 0): Promise<void> {
    const [command] = this.pending.splice(pick, 1);
    if (!command || (command.type !== "stopShard" && command.type !== "startShard")) return;
    const { shard, at } = command;
    if (this.dead.has(at.address)) {
      this.feed(
        command.type === "stopShard"
          ? { type: "stopFailed", shard, from: at, command: command.command, now: this.now }
          : { type: "startFailed", shard, at, command: command.command, now: this.now },
      );
      return;
    }
    const region = this.#region(at);
    if (command.type === "stopShard") {
      const reply = await region.stop(shard);
      const stopped = reply.case === "shardStopped" ? reply.value : undefined;
      const snapshot = stopped?.hosted && stopped.snapshot ? snapshotFromProto(stopped.snapshot) : undefined;
      this.feed({ type: "stopped", shard, from: at, snapshot, command: command.command, now: this.now });
    } else {
      for (const [address, other] of this.#regions) {
        if (address !== at.address && other.get(shard) && !this.dead.has(address)) {
          assert.fail(`shard ${shard} started on ${at.address} while ${address} still hosts it`);
        }
      }
      region.start(shard, command.snapshot && snapshotToProto(command.snapshot));
      await region.get(shard)!.ready;
      this.feed({ type: "started", shard, at, command: command.command, now: this.now });
    }
  }

  async settle(): Promise<void> {
    for (let i = 0; this.pending.length > 0; i++) {
      if (i > 10_000) assert.fail("commands never settle");
      await this.complete();
      if (this.pending.length === 0) this.tick(1000);
    }
  }

  tick(ms: number): void {
    this.now += ms;
    this.feed({ type: "tick", now: this.now });
  }

  homes(region: NodeId): number[] {
    return this.#region(region).ids().sort((a, b) => a - b);
  }

  async close(): Promise<void> {
    for (const region of this.#regions.values()) await region.close();
  }
}

/** One purchase of user 7 at `offset`, as a region receives it. */
const event = (offset: number) =>
  create(PurchaseEventSchema, { offset: BigInt(offset), userId: "7", quantity: 1n, price: 5n });

/** Runs `scenario` with a world of `shards` and `regions`, closing its regions after. */
async function inWorld(shards: number, regions: NodeId[], scenario: (w: World) => Promise<void> | void): Promise<void> {
  const w = new World(shards, regions);
  try {
    await scenario(w);
  } finally {
    await w.close();
  }
}

function placement(shards: number, owners: NodeId[]): Map<number, string> {
  return new Map(Array.from({ length: shards }, (_, s) => [s, owners[s % owners.length].address]));
}

/** Runs `scenario` in a world of regions A and B, both registered, with the shards settled alternately on A and B. */
function settledOnAB(shards: number, scenario: (w: World) => Promise<void> | void): Promise<void> {
  return inWorld(shards, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "placement", desired: placement(shards, [A, B]), now: 0 });
    await w.settle();
    await scenario(w);
  });
}

Deno.test("a fresh coordinator starts every shard on the node consuming its partition", () =>
  inWorld(8, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    assert.equal(w.coordinator.isActive, false, "waits for B's region");
    w.register(B);
    assert.equal(w.coordinator.isActive, true);
    w.feed({ type: "placement", desired: placement(8, [A, B]), now: 0 });
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 2, 4, 6]);
    assert.deepEqual(w.homes(B), [1, 3, 5, 7]);
  }));

Deno.test("shards follow a new placement, and their state moves with them", () =>
  inWorld(6, [A, B, C], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "placement", desired: placement(6, [A]), now: 0 });
    await w.settle();
    for (const shard of w.homes(A)) await w.seed(A, shard, 100 + shard);

    w.feed({ type: "placement", desired: placement(6, [A, B]), now: 1 });
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 2, 4]);
    assert.deepEqual(w.homes(B), [1, 3, 5]);
    assert.deepEqual([1, 3, 5].map((shard) => w.offsetOf(B, shard)), [101, 103, 105], "each moved with its state");
    const started = w.log.filter((a) => a.type === "rebalanceStarted");
    const last = started.at(-1);
    assert.deepEqual(
      last?.type === "rebalanceStarted" && last.moves,
      [1, 3, 5].map((shard) => ({ shard, from: A, to: B })),
    );
    assert.ok(w.log.some((a) => a.type === "rebalanceCompleted" && a.shards === 3));
  }));

Deno.test("a leaving node's shards go where Kafka sends its partitions, or anywhere after a grace period", () =>
  settledOnAB(4, async (w) => {
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Leaving" }], now: w.now });
    w.feed({
      type: "placement",
      desired: new Map([[0, A.address], [1, A.address], [2, A.address], [3, B.address]]),
      now: w.now,
    });
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 1, 2]);
    assert.deepEqual(w.homes(B), [3], "waits for Kafka to move partition 3 first");
    w.tick(LEAVING_GRACE_MS);
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 1, 2, 3]);
    assert.deepEqual(w.homes(B), []);
  }));

Deno.test("the shards of a node that died are lost and start empty where Kafka now sends their partitions", () =>
  settledOnAB(4, async (w) => {
    await w.kill(B);
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: 1 });
    assert.deepEqual(w.log.filter((a) => a.type === "shardsLost"), [{
      type: "shardsLost",
      shards: [1, 3],
      region: B,
      clusterDown: false,
    }]);
    w.feed({ type: "placement", desired: placement(4, [A]), now: 2 });
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 1, 2, 3]);
  }));

Deno.test("when every member is stopping, a region's shards stop with it rather than count as lost", () =>
  settledOnAB(2, (w) => {
    w.feed({ type: "members", members: [{ node: A, status: "Leaving" }, { node: B, status: "Exiting" }], now: w.now });
    w.feed({ type: "members", members: [{ node: A, status: "Leaving" }], now: w.now });
    assert.deepEqual(w.log.filter((a) => a.type === "shardsLost"), [
      { type: "shardsLost", shards: [1], region: B, clusterDown: true },
    ]);
  }));

Deno.test("an unallocated shard asked for goes to the consumer of its partition, else to the asker", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "getHome", shard: 1, requester: A, requestId: 77, now: 0 });
    assert.equal(w.log.some((a) => a.type === "homeReply"), false, "no answer before the shard runs");
    await w.complete();
    assert.deepEqual(w.log.at(-1), { type: "homeReply", requestId: 77, shard: 1, home: A });
    w.feed({ type: "placement", desired: new Map([[0, B.address]]), now: 1 });
    w.feed({ type: "getHome", shard: 0, requester: A, requestId: 78, now: 1 });
    await w.settle();
    assert.ok(w.log.some((a) => a.type === "homeReply" && a.requestId === 78 && sameNode(a.home, B)));
  }));

Deno.test("requests for a home that stays unknown are forgotten after a while, not piled up", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "getHome", shard: 1, requester: A, requestId: 77, now: 0 });
    w.tick(WAITER_TTL_MS + 1);
    assert.deepEqual(w.log.at(-1), { type: "requestRefused", requestId: 77, why: "expired" }, "its asker hears so");
    w.feed({ type: "getHome", shard: 1, requester: A, requestId: 78, now: w.now });
    await w.complete();
    assert.deepEqual(w.log.filter((a) => a.type === "homeReply").map((a) => a.type === "homeReply" && a.requestId), [
      78,
    ]);
  }));

Deno.test("a home asked by a region that has not registered with this instance is refused: it must register first", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    // B registered with the previous coordinator; this one cannot know what B hosts until B tells it.
    w.feed({ type: "getHome", shard: 0, requester: B, requestId: 5, now: 0 });
    assert.deepEqual(w.log.at(-1), { type: "requestRefused", requestId: 5, why: "registerFirst" });
    w.register(B);
    w.feed({ type: "getHome", shard: 0, requester: B, requestId: 6, now: 0 });
    await w.settle();
    assert.ok(w.log.some((a) => a.type === "homeReply" && a.requestId === 6));
  }));

Deno.test("each tick calls the regions of Up and Leaving members that have not registered, and only those", () =>
  inWorld(2, [A, B, C], (w) => {
    w.feed({
      type: "members",
      members: [{ node: A, status: "Up" }, { node: B, status: "Leaving" }, { node: C, status: "Joining" }],
      now: 0,
    });
    w.register(A);
    const called = () => w.coordinator.step({ type: "tick", now: 1 }).filter((a) => a.type === "callRegion");
    assert.deepEqual(called(), [{ type: "callRegion", region: B }], "not A (registered) nor C (Joining)");
    w.register(B);
    assert.deepEqual(called(), []);
  }));

Deno.test("a request whose asker is gone is answered as expired at once", () =>
  inWorld(2, [A, B], (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "placement", desired: new Map([[0, B.address]]), now: 0 });
    w.pending = [];
    w.feed({ type: "getHome", shard: 1, requester: B, requestId: 9, now: 0 });
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: 1 });
    assert.ok(w.log.some((a) => a.type === "requestRefused" && a.requestId === 9 && a.why === "expired"));
  }));

Deno.test("a late repeat of a region's registration does not make the coordinator forget a shard it started there", () =>
  settledOnAB(2, async (w) => {
    await w.seed(A, 0, 42);
    // Sent before shard 0 started on A (the first reply was lost), received after.
    w.feed({ type: "register", region: A, shards: [], shardCount: 2, durableState: true, requestId: 900, now: w.now });
    w.feed({ type: "placement", desired: new Map([[0, B.address], [1, B.address]]), now: w.now });
    await w.settle();
    assert.deepEqual(w.homes(A), []);
    assert.equal(w.offsetOf(B, 0), 42, "shard 0 moved with its state");
  }));

Deno.test("a new coordinator rebuilds its table from the regions and moves nothing that is in place", () =>
  inWorld(4, [A, B], async (w) => {
    for (const shard of [0, 2]) await w.seed(A, shard, 5);
    for (const shard of [1, 3]) await w.seed(B, shard, 5);
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.feed({ type: "placement", desired: placement(4, [A, B]), now: 0 });
    w.register(B);
    w.tick(1000);
    assert.deepEqual(w.pending, [], "nothing allocated while A has not registered");
    w.register(A);
    assert.deepEqual(w.pending, []);
    assert.equal(w.coordinator.allocation.size, 4);
  }));

Deno.test("a coordinator stops waiting for a region that never registers after the grace period", () =>
  inWorld(2, [A, B], (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.tick(REGISTRATION_GRACE_MS);
    assert.ok(w.log.some((a) => a.type === "activated" && a.missing.length === 1 && sameNode(a.missing[0], B)));
  }));

Deno.test("a region with another shard count is refused", () =>
  inWorld(128, [A], (w) => {
    w.feed({ type: "members", members: up(A), now: 0 });
    w.feed({ type: "register", region: A, shards: [], shardCount: 64, durableState: true, requestId: 1, now: 0 });
    const reply = w.log.find((a) => a.type === "registerReply");
    assert.match(reply?.type === "registerReply" && reply.error || "", /this cluster has 128 shards .* has 64/);
  }));

Deno.test("a region that keeps shard state another way (--state) is refused, and takes no shard", () =>
  inWorld(4, [A], (w) => {
    w.feed({ type: "members", members: up(A), now: 0 });
    w.feed({ type: "register", region: A, shards: [], shardCount: 4, durableState: false, requestId: 1, now: 0 });
    const reply = w.log.find((a) => a.type === "registerReply");
    assert.match(
      reply?.type === "registerReply" && reply.error || "",
      /this cluster keeps shard state durably \(--state kafka\) but 127\.0\.0\.1:\d+ keeps it in memory only \(--state memory\); nodes with different --state cannot work together/,
    );
    w.tick(REGISTRATION_GRACE_MS);
    assert.equal(w.coordinator.allocation.size, 0);
  }));

Deno.test("no shard starts empty while an Up member's region has not registered, even after the grace period", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.tick(REGISTRATION_GRACE_MS);
    assert.equal(w.coordinator.isActive, true);
    w.feed({ type: "getHome", shard: 0, requester: A, requestId: 1, now: w.now });
    w.feed({ type: "placement", desired: placement(2, [A]), now: w.now });
    w.tick(1000);
    assert.deepEqual(w.pending, [], "B may host shard 0 or 1 already");
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Removed" }], now: w.now });
    await w.settle();
    assert.deepEqual(w.homes(A), [0, 1]);
  }));

Deno.test("state a region reports as handed off (the coordinator that moved it is gone) starts the shard again", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    await w.seed(A, 0, 1);
    w.register(A);
    w.feed({
      type: "register",
      region: B,
      shards: [],
      handedOff: [{ shard: 1, lastOffset: 41, entities: [["7", { totalPurchases: 3, amountSpent: 30 }]] }],
      shardCount: 2,
      durableState: true,
      requestId: 9,
      now: 0,
    });
    w.feed({ type: "placement", desired: placement(2, [A]), now: 0 });
    await w.settle();
    assert.deepEqual([w.offsetOf(A, 0), w.offsetOf(A, 1)], [1, 41], "shard 1 resumed at offset 41");
  }));

Deno.test("a handed-off snapshot waits like a fresh start for every member's region: a slow one may hold a newer copy", () =>
  inWorld(2, [A, B], async (w) => {
    // After a failover: B handed shard 1 to A at offset 10 and still keeps that state; A has applied up to 50 since.
    await w.seed(A, 1, 50);
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.feed({ type: "placement", desired: new Map([[0, B.address], [1, B.address]]), now: 0 });
    w.feed({
      type: "register",
      region: B,
      shards: [],
      handedOff: [{ shard: 1, lastOffset: 10, entities: [] }],
      shardCount: 2,
      durableState: true,
      requestId: 1,
      now: 0,
    });
    w.tick(REGISTRATION_GRACE_MS);
    assert.equal(w.coordinator.isActive, true);
    assert.deepEqual(w.pending, [], "A may host a newer copy of shard 1");
    w.feed({ type: "getHome", shard: 1, requester: B, requestId: 2, now: w.now });
    assert.deepEqual(w.pending, [], "A may host a newer copy of shard 1, whoever asks");
    w.register(A);
    await w.settle();
    assert.deepEqual(w.homes(A), []);
    assert.equal(w.offsetOf(B, 1), 50, "shard 1 moved from A with its state");
  }));

Deno.test("a start answered by an incarnation already known to be gone does not put the shard there", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    w.feed({ type: "getHome", shard: 0, requester: B, requestId: 1, now: 0 });
    assert.deepEqual(w.pending.map((c) => c.type === "startShard" && [c.shard, c.at]), [[0, B]]);
    const start = w.pending[0].type === "startShard" ? w.pending[0].command : 0;
    // B starts the shard and dies; its answer comes in after the news of its death.
    w.pending = [];
    await w.kill(B);
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: 1 });
    w.feed({ type: "started", shard: 0, at: B, command: start, now: 2 });
    await w.settle();
    assert.deepEqual(w.homes(A), [0], "shard 0 starts again on a live node");
    assert.ok(w.coordinator.allocation.get(0) && sameNode(w.coordinator.allocation.get(0)!, A));
  }));

Deno.test("a late repeat of a registration does not claim back a shard that moved away and was lost since", () =>
  settledOnAB(2, async (w) => {
    // Sent while A still hosted shard 0 (its first reply was lost), received after 0 moved to B and B died.
    const late = {
      type: "register",
      region: A,
      shards: [0],
      shardCount: 2,
      durableState: true,
      requestId: 901,
    } as const;
    w.feed({ type: "placement", desired: new Map([[0, B.address], [1, B.address]]), now: w.now });
    await w.settle();
    assert.deepEqual(w.homes(A), []);
    await w.kill(B);
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: w.now });
    w.feed({ ...late, now: w.now });
    w.feed({ type: "getHome", shard: 0, requester: A, requestId: 5, now: w.now });
    await w.settle();
    assert.ok(w.log.some((a) => a.type === "homeReply" && a.requestId === 5 && sameNode(a.home, A)));
    assert.deepEqual(w.homes(A), [0], "shard 0 runs where the coordinator says it does");
  }));

Deno.test("a registration from an incarnation known to be gone is refused and claims nothing", () =>
  inWorld(2, [A, B], async (w) => {
    w.feed({ type: "members", members: [{ node: A, status: "Up" }, { node: B, status: "Down" }], now: 0 });
    w.register(A);
    await w.seed(B, 1, 7);
    w.register(B);
    const reply = w.log.findLast((a) => a.type === "registerReply");
    assert.match(reply?.type === "registerReply" && reply.error || "", /127\.0\.0\.1:2552 .* no longer a member/);
    assert.equal(w.coordinator.allocation.has(1), false);
  }));

Deno.test("an answer naming an earlier command (a duplicate, or one a retry overtook) is ignored", () =>
  inWorld(1, [A, B], (w) => {
    w.feed({ type: "members", members: up(A, B), now: 0 });
    w.register(A);
    w.register(B);
    const take = (): Extract<CoordinatorAction, { type: "stopShard" | "startShard" }> => {
      assert.equal(w.pending.length, 1);
      const [command] = w.pending.splice(0, 1);
      assert.ok(command.type === "stopShard" || command.type === "startShard");
      return command;
    };
    w.feed({ type: "getHome", shard: 0, requester: A, requestId: 1, now: 0 });
    const first = take();
    w.feed({ type: "startFailed", shard: 0, at: A, command: first.command, now: 0 });
    w.tick(1000);
    const retry = take();
    w.feed({ type: "startFailed", shard: 0, at: A, command: first.command, now: w.now });
    w.tick(1000);
    assert.deepEqual(w.pending, [], "the retry is still in flight: no second command beside it");
    w.feed({ type: "started", shard: 0, at: A, command: retry.command, now: w.now });

    w.feed({ type: "placement", desired: new Map([[0, B.address]]), now: w.now });
    const stopA = take();
    w.feed({
      type: "stopped",
      shard: 0,
      from: A,
      snapshot: { shard: 0, lastOffset: 3, entities: [] },
      command: stopA.command,
      now: w.now,
    });
    const startB = take();
    w.feed({ type: "started", shard: 0, at: B, command: startB.command, now: w.now });
    w.feed({ type: "placement", desired: new Map([[0, A.address]]), now: w.now });
    const stopB = take();
    w.feed({
      type: "stopped",
      shard: 0,
      from: B,
      snapshot: { shard: 0, lastOffset: 5, entities: [] },
      command: stopB.command,
      now: w.now,
    });
    take();
    // The answer to the first start at A, once more, while the shard is on its way back to A.
    w.feed({ type: "started", shard: 0, at: A, command: retry.command, now: w.now });
    assert.equal(w.coordinator.allocation.has(0), false, "shard 0 has not started on A yet");
    assert.equal(w.coordinator.movesInFlight, 1);
  }));

Deno.test("a conflict's stop is sent again until the region that claimed the shard answers it", () => {
  const coordinator = new Coordinator(8, 0);
  const register = (region: NodeId, shards: number[], requestId: number, now: number) =>
    coordinator.step({ type: "register", region, shards, shardCount: 8, durableState: true, requestId, now });
  coordinator.step({ type: "members", members: up(A, B), now: 0 });
  register(A, [5], 1, 0);
  const first = register(B, [5], 2, 0).filter((a) => a.type === "stopShard");
  assert.equal(first.length, 1);
  assert.ok(first[0].type === "stopShard" && sameNode(first[0].at, B) && first[0].shard === 5);
  const command = first[0].type === "stopShard" ? first[0].command : 0;
  // B refuses: our registration reply had not reached it yet.
  coordinator.step({ type: "stopFailed", shard: 5, from: B, command, now: 10 });
  assert.deepEqual(
    coordinator.step({ type: "tick", now: 10 + COMMAND_RETRY_MS / 2 }).filter((a) => a.type === "stopShard"),
    [],
  );
  const again = coordinator.step({ type: "tick", now: 10 + COMMAND_RETRY_MS }).filter((a) => a.type === "stopShard");
  assert.equal(again.length, 1, "the stop goes out again");
  const retry = again[0].type === "stopShard" ? again[0].command : 0;
  assert.notEqual(retry, command);
  coordinator.step({ type: "stopped", shard: 5, from: B, command: retry, now: 2000 });
  assert.deepEqual(
    coordinator.step({ type: "tick", now: 60_000 }).filter((a) => a.type === "stopShard"),
    [],
    "answered: never again",
  );
  assert.ok(sameNode(coordinator.allocation.get(5)!, A), "A keeps the shard");
});
