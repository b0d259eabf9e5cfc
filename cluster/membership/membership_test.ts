import assert from "node:assert/strict";
import { DEFAULT_TIMINGS } from "../timings.ts";
import { leaderOf, liveMembers, mergeGossip, oldestOf, sameGossip, unreachableMembers } from "./gossip.ts";
import { Membership, type MembershipEvent, type MembershipMessage } from "./membership.ts";
import { type NodeId } from "../remoting/node.ts";

const SEEDS = ["127.0.0.1:2551", "127.0.0.1:2552"];

/** An in-memory network of Membership state machines with a manual clock. */
class SimCluster {
  now = 1_000_000;
  readonly nodes = new Map<string, Membership>();
  readonly events = new Map<string, MembershipEvent[]>();
  readonly cut = new Set<string>();
  #queue: { from: NodeId; to: string; message: MembershipMessage }[] = [];
  #uid = 0;

  start(address: string, seeds: readonly string[] = SEEDS): Membership {
    const node = new Membership({ self: { address, uid: ++this.#uid }, seeds, timings: DEFAULT_TIMINGS }, this.now);
    this.nodes.set(address, node);
    this.events.set(address, []);
    return node;
  }

  kill(address: string): void {
    this.nodes.delete(address);
  }

  /** Stops traffic between two addresses, both ways. */
  partition(a: string, b: string): void {
    this.cut.add(`${a}|${b}`).add(`${b}|${a}`);
  }

  input(address: string, type: "leave" | "exit"): void {
    const node = this.nodes.get(address)!;
    this.#carryOut(node, node.step({ type, now: this.now }));
  }

  #carryOut(node: Membership, actions: ReturnType<Membership["step"]>): void {
    for (const action of actions) {
      if (action.type === "send") this.#queue.push({ from: node.self, to: action.to, message: action.message });
      else this.events.get(node.self.address)!.push(action.event);
    }
  }

  /** Advances the clock in 100 ms ticks, delivering every message after each tick. */
  advance(ms: number): void {
    for (let t = 0; t < ms; t += 100) {
      this.now += 100;
      for (const node of [...this.nodes.values()]) this.#carryOut(node, node.step({ type: "tick", now: this.now }));
      for (let rounds = 0; this.#queue.length > 0 && rounds < 100; rounds++) {
        const queue = this.#queue;
        this.#queue = [];
        for (const { from, to, message } of queue) {
          const target = this.nodes.get(to);
          if (!target || this.cut.has(`${from.address}|${to}`) || !this.nodes.has(from.address)) continue;
          this.#carryOut(target, target.step({ type: "message", from, message, now: this.now }));
        }
      }
    }
  }

  /** Advances until `condition` holds; fails after `limitMs` of simulated time. */
  advanceUntil(condition: () => boolean, limitMs: number, what: string): number {
    const start = this.now;
    while (!condition()) {
      if (this.now - start > limitMs) assert.fail(`${what} did not happen within ${limitMs} ms (simulated)`);
      this.advance(100);
    }
    return this.now - start;
  }

  statuses(address: string): Record<string, string> {
    const node = this.nodes.get(address)!;
    return Object.fromEntries(liveMembers(node.state).map((m) => [m.node.address, m.status]));
  }

  allSee(expected: Record<string, string>): boolean {
    return [...this.nodes.keys()].every((a) => JSON.stringify(this.statuses(a)) === JSON.stringify(expected));
  }
}

const A = "127.0.0.1:2551";
const B = "127.0.0.1:2552";
const C = "127.0.0.1:2553";
const allUp = { [A]: "Up", [B]: "Up", [C]: "Up" };

for (const order of [[A, B, C], [C, B, A], [B, C, A], [C, A, B]]) {
  Deno.test(`three nodes started in order ${order.map((a) => a.slice(-4)).join(",")} converge to three Up members`, () => {
    const sim = new SimCluster();
    for (const address of order) {
      sim.start(address);
      sim.advance(700);
    }
    sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
    const leaders = [...sim.nodes.values()].map((n) => leaderOf(n.state)?.node.address);
    assert.deepEqual(leaders, [A, A, A]);
    const oldest = new Set([...sim.nodes.values()].map((n) => oldestOf(n.state)?.node.address));
    assert.equal(oldest.size, 1, "everyone agrees on the oldest");
  });
}

Deno.test("non-first seeds wait for the first seed; when it comes, one cluster forms", () => {
  const sim = new SimCluster();
  sim.start(B);
  sim.start(C);
  sim.advance(15_000);
  assert.equal(sim.nodes.get(B)!.isMember, false);
  assert.equal(sim.nodes.get(C)!.isMember, false);
  const waiting = sim.events.get(C)!.find((e) => e.type === "seedsWaiting");
  assert.deepEqual(waiting, { type: "seedsWaiting", silent: [A], notInCluster: [B] });
  sim.start(A);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "one cluster of three");
  assert.equal(sim.events.get(A)!.filter((e) => e.type === "formedCluster").length, 1);
  assert.equal(sim.events.get(B)!.some((e) => e.type === "formedCluster"), false);
});

Deno.test("the first seed forms a cluster at once when every other seed answers 'not in a cluster'", () => {
  const sim = new SimCluster();
  sim.start(B);
  sim.advance(500);
  sim.start(A);
  const took = sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "first seed forming");
  assert.ok(took < DEFAULT_TIMINGS.seedTimeoutMs, `took ${took} ms`);
  sim.advanceUntil(() => sim.allSee({ [A]: "Up", [B]: "Up" }), 10_000, "second seed joining");
});

Deno.test("a lone first seed forms a cluster after the seed timeout", () => {
  const sim = new SimCluster();
  sim.start(A);
  const took = sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "forming");
  assert.ok(took >= DEFAULT_TIMINGS.seedTimeoutMs, `took ${took} ms`);
  assert.deepEqual(sim.statuses(A), { [A]: "Up" });
});

Deno.test("a killed member is seen unreachable, downed, removed; its restart joins as a new incarnation", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  const oldUid = sim.nodes.get(C)!.self.uid;
  sim.kill(C);
  const tookUnreachable = sim.advanceUntil(
    () => [A, B].every((a) => unreachableMembers(sim.nodes.get(a)!.state).has(C)),
    10_000,
    "unreachable",
  );
  assert.ok(tookUnreachable >= DEFAULT_TIMINGS.unreachableAfterMs);
  sim.advanceUntil(() => sim.allSee({ [A]: "Up", [B]: "Up" }), 20_000, "removal");
  for (const a of [A, B]) {
    const kinds = sim.events.get(a)!.filter((e) => e.type === "memberStatus" && e.member.node.address === C)
      .map((e) => e.type === "memberStatus" && e.member.status);
    assert.deepEqual(kinds.slice(-2), ["Down", "Removed"], `${a} saw ${kinds}`);
  }
  assert.ok(sameGossip(sim.nodes.get(A)!.state, sim.nodes.get(B)!.state), "A and B hold the same view");

  const restarted = sim.start(C);
  assert.ok(restarted.self.uid !== oldUid);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "rejoin");
  assert.equal(sim.nodes.get(A)!.state.members.get(C)!.node.uid, restarted.self.uid);
});

for (const victim of [A, B]) {
  Deno.test(`in a two-node cluster the survivor downs a killed ${victim.slice(-4)} and carries on`, () => {
    const sim = new SimCluster();
    sim.start(A);
    sim.start(B);
    sim.advanceUntil(() => sim.allSee({ [A]: "Up", [B]: "Up" }), 20_000, "convergence");
    sim.kill(victim);
    const survivor = victim === A ? B : A;
    sim.advanceUntil(() => sim.allSee({ [survivor]: "Up" }), 20_000, "removal of the killed node");
    assert.equal(leaderOf(sim.nodes.get(survivor)!.state)?.node.address, survivor);
    assert.equal(oldestOf(sim.nodes.get(survivor)!.state)?.node.address, survivor);
  });
}

Deno.test("a restart at the same address before the old incarnation is downed replaces it", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  const old = sim.nodes.get(C)!.self;
  sim.kill(C);
  sim.advance(500);
  const fresh = sim.start(C);
  sim.advanceUntil(
    () => sim.allSee(allUp) && sim.nodes.get(A)!.state.members.get(C)!.node.uid === fresh.self.uid,
    20_000,
    "replacement",
  );
  const removedOld = sim.events.get(A)!.some((e) =>
    e.type === "memberStatus" && e.member.node.uid === old.uid && e.member.status === "Removed"
  );
  assert.ok(removedOld, "the old incarnation is reported removed");
});

Deno.test("a graceful leave goes Leaving, Exiting, Removed and nobody sees it unreachable", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  for (const leaver of [B, A]) {
    sim.input(leaver, "leave");
    sim.advanceUntil(() => [...sim.nodes.keys()].every((a) => sim.statuses(a)[leaver] === "Leaving"), 5000, "Leaving");
    sim.input(leaver, "exit");
    const node = sim.nodes.get(leaver)!;
    sim.advanceUntil(() => node.isGone, 5000, "removal of the leaver");
    assert.deepEqual(sim.events.get(leaver)!.at(-1), { type: "selfRemoved", reason: "left" });
    sim.kill(leaver);
  }
  sim.advanceUntil(() => sim.allSee({ [C]: "Up" }), 10_000, "C alone");
  const unreachable = sim.events.get(C)!.filter((e) => e.type === "unreachable");
  assert.deepEqual(unreachable, []);
  const statusesOfB = sim.events.get(C)!.filter((e) => e.type === "memberStatus" && e.member.node.address === B)
    .map((e) => e.type === "memberStatus" && e.member.status);
  assert.deepEqual(statusesOfB.slice(-3), ["Leaving", "Exiting", "Removed"]);
});

Deno.test("the last member leaves at once", () => {
  const sim = new SimCluster();
  sim.start(A);
  sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "forming");
  sim.input(A, "leave");
  sim.input(A, "exit");
  assert.equal(sim.nodes.get(A)!.isGone, true);
});

Deno.test("a member cut off from the others is downed, learns it, and stops", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  sim.partition(A, C);
  sim.partition(B, C);
  sim.advanceUntil(() => sim.statuses(A)[C] === undefined, 30_000, "C removed by A's side");
  sim.cut.clear();
  sim.advanceUntil(() => sim.nodes.get(C)!.isGone, 10_000, "C learning it was downed");
  assert.deepEqual(sim.events.get(C)!.at(-1), { type: "selfRemoved", reason: "downed" });
});

Deno.test("mergeGossip() is commutative and idempotent over the views of a running cluster", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  const views = [];
  for (let i = 0; i < 12; i++) {
    sim.advance(400);
    views.push(...[...sim.nodes.values()].map((n) => n.state));
  }
  for (const x of views) {
    assert.ok(sameGossip(mergeGossip(x, x), x));
    for (const y of views) assert.ok(sameGossip(mergeGossip(x, y), mergeGossip(y, x)));
  }
});
