import assert from "node:assert/strict";
import { DEFAULT_TIMINGS } from "../timings.ts";
import { leaderOf, mergeGossip, oldestOf, sameGossip, unreachableMembers } from "./gossip.ts";
import { SimCluster } from "./membership_sim.ts";
import { joinsTheirs } from "./membership.ts";

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
    const leaders = [...sim.nodes.values()].map((n) => leaderOf(n.state, n.self)?.node.address);
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

Deno.test("the first seed forms a cluster before the seed timeout when every other seed answers 'not in a cluster'", () => {
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

Deno.test("both seeds killed in turn while a third member lives on: restarted, they join its cluster instead of forming a second", () => {
  // Found by cluster/sharding/cluster_sim_test.ts (seed 5): the first seed formed a new cluster once the other seed was
  // silent, while the third node, alone, went on as a cluster of its own; a query there read its stale copies.
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  // One after the other, so that each time the survivors hold a quorum and remove the dead.
  sim.kill(B);
  sim.advanceUntil(() => sim.allSee({ [A]: "Up", [C]: "Up" }), 30_000, "B removed");
  sim.kill(A);
  sim.advanceUntil(() => sim.allSee({ [C]: "Up" }), 30_000, "C alone");
  sim.start(A);
  sim.start(B);
  sim.advanceUntil(() => sim.allSee(allUp), 30_000, "one cluster of three");
  assert.ok(
    !sim.events.get(A)!.some((e) => e.type === "formedCluster"),
    "the restarted first seed joined the live cluster rather than forming one",
  );
});

Deno.test("a first seed restarted while cut off forms a cluster of its own; once the cut heals it gives way", () => {
  // Found by cluster/sharding/cluster_sim_test.ts (seed 9): the two clusters stayed apart after the cut healed.
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  sim.kill(A);
  sim.advanceUntil(() => sim.allSee({ [B]: "Up", [C]: "Up" }), 30_000, "A removed");
  sim.partition(A, B);
  sim.partition(A, C);
  sim.start(A);
  sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "A forming a cluster of its own");
  sim.cut.clear();
  sim.advanceUntil(
    () => sim.events.get(A)!.some((e) => e.type === "selfRemoved" && e.reason === "anotherCluster"),
    10_000,
    "A giving way to the larger cluster",
  );
  const met = sim.events.get(A)!.find((e) => e.type === "metCluster");
  assert.deepEqual(met && met.type === "metCluster" && [met.mine.members, met.theirs.members], [1, 2]);
  assert.deepEqual(sim.statuses(B), { [B]: "Up", [C]: "Up" }, "the larger cluster carries on");
  sim.start(A);
  sim.advanceUntil(() => sim.allSee(allUp), 30_000, "A restarted into the other cluster");
});

Deno.test("a seed that formed a cluster while the only other live member was cut off does not merge its view: one of them gives way", () => {
  // Found by cluster/sharding/cluster_sim_test.ts (seed 33): A, restarted while B was frozen and C dead, formed a
  // cluster of its own and took B's gossip into it once B thawed; both hosted the same shards.
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  sim.partition(B, A);
  sim.partition(B, C);
  sim.kill(C);
  sim.kill(A);
  sim.start(A);
  sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "A forming a cluster of its own");
  sim.cut.clear();
  // B hears none of the members it still counts (too few to down them): a cluster of one, like A's, and
  // of two clusters of a size the one whose oldest has the lower address is joined.
  sim.advanceUntil(
    () => sim.events.get(B)!.some((e) => e.type === "selfRemoved" && e.reason === "anotherCluster"),
    10_000,
    "B giving way to A's cluster",
  );
  const met = sim.events.get(B)!.find((e) => e.type === "metCluster");
  assert.deepEqual(met && met.type === "metCluster" && [met.mine, met.theirs], [{ members: 1, oldest: B }, {
    members: 1,
    oldest: A,
  }]);
  assert.deepEqual(sim.statuses(A), { [A]: "Up" }, "A never took B's view into its own");
  sim.start(B);
  sim.advanceUntil(() => sim.allSee({ [A]: "Up", [B]: "Up" }), 30_000, "B restarted into A's cluster");
});

Deno.test("of two clusters of a size, the one whose oldest member has the lower address is the one joined", () => {
  assert.equal(joinsTheirs({ members: 2, oldest: "10.0.0.2:2551" }, { members: 2, oldest: "10.0.0.1:2551" }), true);
  assert.equal(joinsTheirs({ members: 2, oldest: "10.0.0.1:2551" }, { members: 2, oldest: "10.0.0.2:2551" }), false);
  assert.equal(joinsTheirs({ members: 3, oldest: "10.0.0.9:2551" }, { members: 2, oldest: "10.0.0.1:2551" }), false);
});

Deno.test("the only Up member dies while another is still Joining: the Joining one leads, downs it and goes Up", () => {
  // Found by cluster/sharding/cluster_sim_test.ts (seed 14): with no Up member left, nobody led, so the Joining
  // members (and every node that joined through them later) stayed Joining for good.
  const sim = new SimCluster();
  sim.start(A);
  sim.advanceUntil(() => sim.nodes.get(A)!.isMember, 10_000, "A forming");
  sim.start(B);
  sim.advanceUntil(() => sim.nodes.get(B)!.selfMember?.status === "Joining", 10_000, "B joining");
  sim.kill(A);
  assert.equal(sim.statuses(B)[A], "Up");
  sim.advanceUntil(() => JSON.stringify(sim.statuses(B)) === JSON.stringify({ [B]: "Up" }), 30_000, "B alone, Up");
  sim.start(A);
  sim.advanceUntil(() => sim.allSee({ [A]: "Up", [B]: "Up" }), 30_000, "A back");
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
    assert.equal(sim.nodes.get(survivor)!.leader?.node.address, survivor);
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

const D = "127.0.0.1:2554";
const T = DEFAULT_TIMINGS;
// Detection, downing, then a few heartbeat and gossip rounds to spread the verdict.
const DOWNING_BOUND_MS = T.unreachableAfterMs + T.downAfterMs + 5000;

function statusIn(sim: SimCluster, viewer: string, address: string): string {
  return sim.statuses(viewer)[address] ?? "absent";
}

Deno.test("a dead leader is downed although it reported a live member unreachable just before it died", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  // A stops hearing B (B still hears A), so A's last word is "B is unreachable".
  sim.cutOneWay(B, A);
  sim.advanceUntil(
    () => unreachableMembers(sim.nodes.get(C)!.state).get(B)?.observers.some((o) => o.address === A) === true,
    10_000,
    "C learning that A cannot hear B",
  );
  sim.kill(A);
  sim.cut.clear();
  const downed = () => [B, C].every((v) => ["Down", "absent"].includes(statusIn(sim, v, A)));
  const start = sim.now;
  while (!downed() && sim.now - start <= DOWNING_BOUND_MS) sim.advance(100);
  assert.ok(
    downed(),
    `A still ${statusIn(sim, C, A)} in C's view and ${statusIn(sim, B, A)} in B's ${sim.now - start} ms after it died`,
  );
  sim.advanceUntil(() => sim.allSee({ [B]: "Up", [C]: "Up" }), 10_000, "A removed, B and C Up");
});

Deno.test("when a dead member had reported everyone unreachable, a live member leads: it downs the dead one and lets a new one Up", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  sim.cutOneWay(B, A);
  sim.cutOneWay(C, A);
  sim.advanceUntil(
    () =>
      [B, C].every((x) => unreachableMembers(sim.nodes.get(B)!.state).get(x)?.observers.some((o) => o.address === A)),
    10_000,
    "A reporting B and C unreachable",
  );
  sim.kill(A);
  sim.cut.clear();
  sim.start(D);
  const expected = { [B]: "Up", [C]: "Up", [D]: "Up" };
  const start = sim.now;
  while (!sim.allSee(expected) && sim.now - start <= DOWNING_BOUND_MS + T.joinTimeoutMs) sim.advance(100);
  assert.deepEqual(sim.statuses(B), expected, `B's view ${sim.now - start} ms after A died and D asked to join`);
});

Deno.test("a forgotten Removed member is not brought back by a peer's older gossip", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  sim.kill(C);
  sim.advanceUntil(
    () => [A, B].every((v) => sim.nodes.get(v)!.state.members.get(C)?.status === "Removed"),
    DOWNING_BOUND_MS,
    "C removed",
  );
  const b = sim.nodes.get(B)!;
  const staleView = b.state;
  const a = sim.nodes.get(A)!;
  sim.advanceUntil(() => !a.state.members.has(C), T.removedTtlMs + 1000, "A forgetting C");
  sim.deliver(b.self, A, { type: "gossip", state: staleView });
  assert.equal(a.state.members.get(C)?.status, undefined, "A took C back from B's older gossip");
  sim.advanceUntil(() => !b.state.members.has(C), 5000, "B forgetting C");
  for (let t = 0; t < 2 * T.removedTtlMs; t += 100) {
    sim.advance(100);
    for (const v of [A, B]) assert.ok(!sim.nodes.get(v)!.state.members.has(C), `C back in ${v}'s view`);
  }
});

Deno.test("a member cut off for longer than the removed TTL is told it is gone, not merged back; its restart joins", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  const cutOff = sim.nodes.get(C)!;
  sim.partition(A, C);
  sim.partition(B, C);
  const a = sim.nodes.get(A)!;
  sim.advanceUntil(() => !a.state.members.has(C), DOWNING_BOUND_MS + T.removedTtlMs + 5000, "A forgetting C");
  // A message from C slips through: C still takes itself (and everyone) for Up.
  sim.deliver(cutOff.self, A, { type: "gossip", state: cutOff.state });
  const merged = a.state.members.get(C);
  assert.ok(merged?.node.uid !== cutOff.self.uid, `A merged the forgotten C back as ${merged?.status}`);
  sim.advanceUntil(
    () => [A, B].every((v) => !sim.nodes.get(v)!.state.members.has(C)),
    DOWNING_BOUND_MS + T.removedTtlMs + 5000,
    "A and B forgetting C",
  );
  assert.equal(cutOff.isGone, false, "C, alone, cannot tell it was downed");
  sim.cut.clear();
  for (let t = 0; t < 5000; t += 100) {
    sim.advance(100);
    for (const v of [A, B]) {
      const entry = sim.nodes.get(v)!.state.members.get(C);
      assert.ok(entry?.node.uid !== cutOff.self.uid, `${v} merged C back as ${entry?.status} after the heal`);
    }
  }
  assert.equal(cutOff.isGone, true, "C learnt it is gone");
  assert.deepEqual(sim.events.get(C)!.at(-1), { type: "selfRemoved", reason: "downed" });
  const restarted = sim.restart(C);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "C's restart joining");
  assert.equal(sim.nodes.get(A)!.state.members.get(C)!.node.uid, restarted.self.uid);
});

Deno.test("a link that fails one way does not get a member downed that the others hear", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  // The leader A stops hearing B; C hears B fine.
  sim.cutOneWay(B, A);
  for (let t = 0; t < 3 * DOWNING_BOUND_MS; t += 100) {
    sim.advance(100);
    for (const v of [A, B, C]) {
      assert.equal(statusIn(sim, v, B), "Up", `B is ${statusIn(sim, v, B)} for ${v} at ${t} ms`);
    }
  }
  assert.ok(unreachableMembers(sim.nodes.get(C)!.state).get(B)?.observers.some((o) => o.address === A));
  sim.cut.clear();
  sim.advanceUntil(() => unreachableMembers(sim.nodes.get(C)!.state).size === 0, 10_000, "B reachable again");
});

Deno.test("a crashed member is downed while a live one cannot reach the leader: the one with a quorum leads", () => {
  const sim = new SimCluster();
  for (const address of [A, B, C]) sim.start(address);
  sim.advanceUntil(() => sim.allSee(allUp), 20_000, "convergence");
  // B's messages to A are lost: A hears nobody once C dies, and must not keep B from downing C.
  sim.cutOneWay(B, A);
  sim.kill(C);
  const start = sim.now;
  while (statusIn(sim, B, C) !== "Down" && statusIn(sim, B, C) !== "absent" && sim.now - start <= DOWNING_BOUND_MS) {
    sim.advance(100);
  }
  assert.ok(
    ["Down", "absent"].includes(statusIn(sim, B, C)),
    `C still ${statusIn(sim, B, C)} in B's view ${sim.now - start} ms after it died`,
  );
});

Deno.test("a member that hears nobody does not take the quorum from the others: a crashed one is downed", () => {
  const sim = new SimCluster();
  const [d, e] = ["127.0.0.1:2554", "127.0.0.1:2555"];
  for (const address of [A, B, C, d, e]) sim.start(address);
  const fiveUp = Object.fromEntries([A, B, C, d, e].map((address) => [address, "Up"]));
  sim.advanceUntil(() => sim.allSee(fiveUp), 30_000, "convergence");
  // d receives nothing (it still sends), then e crashes.
  for (const from of [A, B, C, e]) sim.cutOneWay(from, d);
  sim.kill(e);
  const start = sim.now;
  const downed = () => [A, B, C].every((v) => ["Down", "absent"].includes(statusIn(sim, v, e)));
  while (!downed() && sim.now - start <= DOWNING_BOUND_MS) sim.advance(100);
  assert.ok(downed(), `e still ${statusIn(sim, A, e)} in A's view ${sim.now - start} ms after it died`);
});
