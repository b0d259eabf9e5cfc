// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { Refusal, RemotingError } from "./errors.ts";
import { MemoryNetwork } from "./memory_transport.ts";
import type { NodeId } from "./node.ts";
import type { Body, Inbound, Transport } from "./transport.ts";

const A: NodeId = { address: "10.0.0.1:2551", uid: 1 };
const B: NodeId = { address: "10.0.0.2:2551", uid: 2 };

function getUser(userId: string): Body {
  return { case: "getUser", value: { $typeName: "usershard.cluster.GetUser", userId, shard: 0 } };
}

/** Runs `body` on a fake clock with a network of seed 7; `received` holds what B was told. */
async function withNetwork(
  body: (
    net: MemoryNetwork,
    a: Transport,
    b: Transport,
    received: Inbound[],
    clock: FakeTimers.InstalledClock,
  ) => Promise<void>,
): Promise<void> {
  const clock = FakeTimers.install({ toFake: ["setTimeout", "clearTimeout", "Date", "performance"] });
  try {
    const net = new MemoryNetwork(7);
    const received: Inbound[] = [];
    const a = net.transport(A)(() => undefined);
    const b = net.transport(B)((message, isRequest) => {
      received.push(message);
      if (!isRequest || message.body.case !== "getUser") return undefined;
      if (message.body.value.userId === "refused") throw new RemotingError("not here", Refusal.NOT_THE_COORDINATOR);
      const userId = message.body.value.userId;
      return {
        case: "userTotals",
        value: { $typeName: "usershard.cluster.UserTotals", userId, totalPurchases: 1n, amountSpent: 2n },
      };
    });
    await body(net, a, b, received, clock);
    a.close();
    b.close();
  } finally {
    clock.uninstall();
  }
}

/** Settles `promise` while the fake clock runs. */
async function settle<T>(clock: FakeTimers.InstalledClock, promise: Promise<T>): Promise<T> {
  const result = promise.then((value) => ({ value }), (error) => ({ error }));
  await clock.tickAsync(10_000);
  const settled = await result;
  if ("error" in settled) throw settled.error;
  return settled.value;
}

Deno.test("an ask crosses the network encoded and back; a refusal keeps its code", () =>
  withNetwork(async (_net, a, _b, _received, clock) => {
    const reply = await settle(clock, a.ask(B, getUser("7"), 1000));
    assert.equal(reply.body.case, "userTotals");
    assert.deepEqual(reply.from, B);
    await assert.rejects(settle(clock, a.ask(B, getUser("refused"), 1000)), (error: unknown) => {
      assert.ok(error instanceof RemotingError && error.refusal === Refusal.NOT_THE_COORDINATOR);
      return true;
    });
  }));

Deno.test("a one-way cut drops what goes one way only; a frozen node's messages wait for it to thaw", () =>
  withNetwork(async (net, a, b, received, clock) => {
    net.cut(A.address, B.address);
    await assert.rejects(settle(clock, a.ask(B, getUser("1"), 500)), /did not answer/);
    b.tell(A, getUser("back"));
    net.heal(A.address, B.address);
    net.freeze(B.address);
    a.tell(B, getUser("held"));
    await clock.tickAsync(60_000);
    assert.deepEqual(received.map((m) => m.body.case === "getUser" && m.body.value.userId), []);
    net.thaw(B.address);
    await clock.tickAsync(100);
    assert.deepEqual(received.map((m) => m.body.case === "getUser" && m.body.value.userId), ["held"]);
  }));

Deno.test("loss drops, duplication delivers twice, and a restart at the same address refuses the old incarnation", () =>
  withNetwork(async (net, a, _b, received, clock) => {
    net.conditions.loss = 1;
    a.tell(B, getUser("lost"));
    await clock.tickAsync(100);
    assert.equal(received.length, 0);
    Object.assign(net.conditions, { loss: 0, duplication: 1 });
    a.tell(B, getUser("twice"));
    await clock.tickAsync(100);
    assert.equal(received.length, 2);
    net.conditions.duplication = 0;
    const restarted = net.transport({ address: B.address, uid: 3 })(() => undefined);
    await assert.rejects(settle(clock, a.ask(B, getUser("old"), 1000)), (error: unknown) => {
      assert.ok(error instanceof RemotingError && error.refusal === Refusal.WRONG_INCARNATION);
      return true;
    });
    restarted.close();
  }));
