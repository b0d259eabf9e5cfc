// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { RegionRegisteredSchema, ShardHomeSchema } from "../../proto/gen/cluster_pb.ts";
import { Refusal, RemotingError } from "../remoting/errors.ts";
import { MemoryNetwork } from "../remoting/memory_transport.ts";
import { type NodeId, nodeToProto } from "../remoting/node.ts";
import type { Body, Inbound } from "../remoting/transport.ts";
import { CoordinatorClient } from "./coordinator_client.ts";

const REGION: NodeId = { address: "10.0.0.1:2551", uid: 1 };
const COORDINATOR: NodeId = { address: "10.0.0.2:2551", uid: 2 };

/**
 * A region's client and a coordinator that answers with `answer`, on an
 * in-memory network under a fake clock; `asked` holds what it was asked.
 */
async function withClient(
  answer: (message: Inbound) => Body,
  body: (client: CoordinatorClient, asked: Inbound[], settle: <T>(p: Promise<T>) => Promise<T>) => Promise<void>,
): Promise<void> {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
  try {
    const network = new MemoryNetwork(3);
    const asked: Inbound[] = [];
    const coordinator = network.transport(COORDINATOR)((message) => {
      asked.push(message);
      return answer(message);
    });
    const client = new CoordinatorClient({
      remoting: network.transport(REGION)(() => undefined),
      coordinator: () => COORDINATOR,
      shardCount: 8,
      durableState: true,
      askTimeoutMs: 1000,
      waiterTtlMs: 5000,
      claims: () => ({ shards: [3], handedOff: [] }),
    });
    const settle = async <T>(promise: Promise<T>) => {
      const settled = promise.then((value) => ({ value }), (error) => ({ error }));
      await clock.tickAsync(5000);
      const outcome = await settled;
      if ("error" in outcome) throw outcome.error;
      return outcome.value;
    };
    await body(client, asked, settle);
    coordinator.close();
  } finally {
    clock.uninstall();
  }
}

const registered = (epoch: bigint): Body => ({
  case: "regionRegistered",
  value: create(RegionRegisteredSchema, { epoch }),
});

Deno.test("a region registers with the coordinator, saying what it hosts, and then knows its epoch", () =>
  withClient(() => registered(7n), async (client, asked, settle) => {
    assert.equal(client.isRegistered, false);
    assert.equal(await settle(client.register()), undefined);
    assert.equal(client.isRegistered, true);
    const request = asked[0].body;
    assert.ok(request.case === "registerRegion");
    assert.deepEqual([request.value.shardCount, request.value.durableState, request.value.shards], [8, true, [3]]);
    assert.doesNotThrow(() => client.checkAuthority(COORDINATOR, 7n));
  }));

Deno.test("a command from another node or another epoch is refused with its code; a newer epoch asks to register again", () =>
  withClient(() => registered(7n), async (client, _asked, settle) => {
    await settle(client.register());
    const refusal = (from: NodeId, epoch: bigint) => {
      try {
        client.checkAuthority(from, epoch);
      } catch (error) {
        return error instanceof RemotingError ? error.refusal : "another error";
      }
      return "accepted";
    };
    assert.equal(refusal(REGION, 7n), Refusal.NOT_THE_COORDINATOR, "not the coordinator's node");
    assert.equal(refusal(COORDINATOR, 6n), Refusal.WRONG_EPOCH, "an older epoch");
    assert.equal(refusal(COORDINATOR, 8n), Refusal.WRONG_EPOCH, "a newer instance, not registered with");
    assert.equal(client.isRegistered, false, "the newer epoch makes the region register again");
  }));

Deno.test("a coordinator that refuses the node as incompatible makes register() say why; any other failure is retried", async () => {
  const refusing = (error: Error) => () => {
    throw error;
  };
  const incompatible = new RemotingError(
    "… has 8; nodes with different counts cannot work together",
    Refusal.INCOMPATIBLE_NODE,
  );
  await withClient(refusing(incompatible), async (client, _asked, settle) => {
    assert.equal(await settle(client.register()), incompatible.message);
    assert.equal(client.isRegistered, false);
  });
  await withClient(refusing(new Error("the coordinator is busy")), async (client, _asked, settle) => {
    assert.equal(await settle(client.register()), undefined, "nothing fatal: the next tick registers again");
    assert.equal(client.isRegistered, false);
  });
});

Deno.test("asking where a shard lives: one question for callers at once, the answer remembered until forgotten", () =>
  withClient((message) => {
    if (message.body.case === "registerRegion") return registered(1n);
    return {
      case: "shardHome",
      value: create(ShardHomeSchema, { shard: 5, node: nodeToProto(COORDINATOR), epoch: 1n }),
    };
  }, async (client, asked, settle) => {
    const [first, second] = await settle(Promise.all([client.resolve(5, 1000), client.resolve(5, 1000)]));
    assert.deepEqual([first, second], [COORDINATOR, COORDINATOR]);
    assert.equal(asked.filter((m) => m.body.case === "getShardHome").length, 1);
    assert.deepEqual(client.knownHome(5), COORDINATOR);
    client.forgetHome(5);
    assert.equal(client.knownHome(5), undefined);
  }));
