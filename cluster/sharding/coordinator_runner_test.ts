// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { GetShardHomeSchema, RegisterRegionSchema, ShardStartedSchema } from "../../proto/gen/cluster_pb.ts";
import type { ClusterSnapshot } from "../membership/cluster_node.ts";
import { MemoryNetwork } from "../remoting/memory_transport.ts";
import { nodeFromProto, type NodeId } from "../remoting/node.ts";
import type { Body, Inbound } from "../remoting/transport.ts";
import { DEFAULT_SHARDING_TIMINGS } from "../timings.ts";
import { CoordinatorRunner } from "./coordinator_runner.ts";
import { settleTicking } from "../../tests/support/fake_clock.ts";

const COORDINATOR: NodeId = { address: "10.0.0.1:2551", uid: 1 };
const REGION: NodeId = { address: "10.0.0.2:2551", uid: 2 };
const SHARDS = 4;

/** A cluster of the coordinator's node and one region, both Up, the coordinator's node the oldest. */
function snapshot(): ClusterSnapshot {
  return {
    self: COORDINATOR,
    members: [COORDINATOR, REGION].map((node, i) => ({ node, status: "Up", upNumber: i + 1, management: "" })),
    removed: [],
    unreachable: [],
    oldest: COORDINATOR,
    leader: COORDINATOR,
  };
}

/**
 * The runner on the coordinator's node and a region's end on the in-memory
 * network, under a fake clock; the region answers what `regionAnswers` says
 * and keeps what it was told.
 */
async function withRunner(
  body: (parts: {
    runner: CoordinatorRunner;
    told: Inbound[];
    ask: (body: Body) => Promise<Body>;
    wait: (ms: number) => Promise<void>;
  }) => Promise<void>,
  regionAnswers: (message: Inbound) => Body | undefined = () => undefined,
): Promise<void> {
  const clock = FakeTimers.install({
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date", "performance"],
  });
  const network = new MemoryNetwork(11);
  const parts: { runner?: CoordinatorRunner } = {};
  const coordinator = network.transport(COORDINATOR)((message) => parts.runner!.handle(message));
  const told: Inbound[] = [];
  const region = network.transport(REGION)((message) => {
    told.push(message);
    return regionAnswers(message);
  });
  const runner = parts.runner = new CoordinatorRunner({
    self: COORDINATOR,
    shardCount: SHARDS,
    durableState: true,
    remoting: coordinator,
    askTimeoutMs: 1000,
    placement: () => Promise.resolve(new Map([[0, REGION.address]])),
  });
  const ask = (question: Body): Promise<Body> =>
    settleTicking(clock, region.ask(COORDINATOR, question, 120_000).then((inbound) => inbound.body), 120_000);
  try {
    runner.update(snapshot());
    // The coordinator's own node has a region too, registered: fresh starts wait for every Up member's.
    await coordinator.ask(COORDINATOR, register, 1000);
    await body({ runner, told, ask, wait: (ms) => clock.tickAsync(ms).then(() => {}) });
  } finally {
    runner.close();
    coordinator.close();
    region.close();
    await clock.tickAsync(1000);
    clock.uninstall();
  }
}

const register: Body = {
  case: "registerRegion",
  value: create(RegisterRegionSchema, { shardCount: SHARDS, durableState: true, shards: [] }),
};
const homeOf = (shard: number): Body => ({ case: "getShardHome", value: create(GetShardHomeSchema, { shard }) });

Deno.test({
  name:
    "a region that has not registered with this instance is told to register first; once registered, it is answered",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withRunner(async ({ runner, ask }) => {
      const epoch = BigInt(runner.view!.epoch);
      const refused = await ask(homeOf(0));
      assert.deepEqual(refused.case === "registerFirst" && refused.value.epoch, epoch);
      const registered = await ask(register);
      assert.deepEqual(registered.case === "regionRegistered" && registered.value.epoch, epoch);
      const home = await ask(homeOf(0));
      assert.equal(home.case, "shardHome");
      assert.deepEqual(home.case === "shardHome" && nodeFromProto(home.value.node!), REGION, "where its partition is");
    }, (message) =>
      message.body.case === "startShard" ? { case: "shardStarted", value: create(ShardStartedSchema) } : undefined),
});

Deno.test({
  name: "an Up member whose region has not registered is told to, every tick, until it does",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withRunner(async ({ told, ask, wait }) => {
      const calls = () => told.filter((m) => m.body.case === "registerFirst").length;
      await wait(2000);
      assert.ok(calls() >= 2, `told ${calls()} times in 2 s`);
      await ask(register);
      await wait(100);
      const after = calls();
      await wait(2000);
      assert.equal(calls(), after, "registered: told no more");
    }),
});

Deno.test({
  name: "a home the coordinator cannot give in time fails its request rather than keeping it",
  sanitizeOps: false,
  sanitizeResources: false,
  fn: () =>
    withRunner(async ({ ask }) => {
      await ask(register);
      // Shard 1 is consumed nowhere, so it would start at the asker, which never answers the start.
      const since = performance.now();
      await assert.rejects(ask(homeOf(1)), /no answer in time/);
      assert.ok(performance.now() - since >= DEFAULT_SHARDING_TIMINGS.waiterTtlMs, "held as long as a waiter lives");
    }),
});
