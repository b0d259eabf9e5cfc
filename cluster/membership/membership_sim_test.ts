/**
 * Seeded random fault scenarios over the simulated network (`membership_sim.ts`):
 * 2 to 5 nodes, each message lost with a probability of up to 15 % and delayed
 * by 1 to 300 ms (so reordered), every node ticking at its own phase. A
 * scenario forms a cluster, then for 40 s follows a plan drawn from its seed:
 * one-way cuts, flapping links, two-way partitions that cut a minority off,
 * kills, and restarts at the same address with a new, higher uid. Then every
 * link heals, every dead or downed node restarts, and some are killed for good.
 *
 * Checked after every step, with D = unreachableAfterMs + downAfterMs + 6 s:
 * - a killed member is Down or gone in the view of every survivor that reaches
 *   half of its members, within D of its death or of the last change to the
 *   network (cut, heal, kill, restart), whichever is later;
 * - no live member is downed whose two-way links to more than half of the
 *   members have been intact for D (whoever downs it, majority side or not);
 * - with every link whole, all nodes are Up in every view within
 *   seedTimeoutMs + 6 × (joinTimeoutMs + joinRetryIntervalMs), so that a few
 *   lost join attempts are allowed; unless two halves of an even cluster downed
 *   each other, which "half is enough" allows (at most 5 % of the scenarios);
 * - a view forgets a Removed member within removedTtlMs + 1 s of first holding
 *   it Removed, and never takes a forgotten one back.
 *
 * A failure names its seed: `MEMBERSHIP_SIM_SEED=<seed>` runs just that one
 * and prints its plan and views; `MEMBERSHIP_SIM_SCENARIOS=<n>` runs seeds 1
 * to n.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type ClusterTimings, DEFAULT_TIMINGS } from "../timings.ts";
import { type GossipState, liveMembers, memberOf, reachabilityOf } from "./gossip.ts";
import type { MemberStatus } from "./members.ts";
import type { Membership, MembershipAction, MembershipInput } from "./membership.ts";
import { SimCluster } from "./membership_sim.ts";
import { seededRandom } from "../seeded_random.ts";
import { type NodeId, nodeKey, sameNode } from "../remoting/node.ts";

// A short TTL, so that forgetting happens within a scenario.
const TIMINGS: ClusterTimings = { ...DEFAULT_TIMINGS, removedTtlMs: 10_000 };
// Heartbeat rounds, ticks, delays and lost gossip on top of the nominal timings.
const SLACK_MS = 6000;
/** A killed member is Down or gone in every survivor's view this long after the network last changed. */
const DOWN_BOUND_MS = TIMINGS.unreachableAfterMs + TIMINGS.downAfterMs + SLACK_MS;
/** Links intact for this long count as intact: older verdicts have been withdrawn by then. */
const INTACT_WINDOW_MS = TIMINGS.unreachableAfterMs + TIMINGS.downAfterMs + SLACK_MS;
/** A view forgets a Removed member this long after it first held it as Removed. */
const FORGET_BOUND_MS = TIMINGS.removedTtlMs + 1000;
/** With every link whole, a node that starts is Up in every view within this, even if a few join attempts are lost. */
const JOIN_BOUND_MS = TIMINGS.seedTimeoutMs + 6 * (TIMINGS.joinTimeoutMs + TIMINGS.joinRetryIntervalMs);
const FAULT_PHASE_MS = 40_000;
const SCENARIOS = 120;
const ACTIVE: readonly MemberStatus[] = ["Joining", "Up", "Leaving"];

type Property =
  | "live member downed"
  | "dead member not downed"
  | "removed member kept"
  | "forgotten member back"
  | "convergence";

type Fault =
  | { readonly kind: "cut"; readonly from: string; readonly to: string }
  | { readonly kind: "heal"; readonly from: string; readonly to: string }
  | { readonly kind: "kill"; readonly address: string }
  | { readonly kind: "restart"; readonly address: string };

interface Planned {
  readonly at: number;
  readonly fault: Fault;
}

/** One seeded scenario: a cluster, a fault plan drawn up front, and the property checks. */
class Scenario {
  readonly seed: number;
  readonly sim: SimCluster;
  readonly addresses: string[];
  readonly plan: Planned[] = [];
  readonly violations: string[] = [];
  readonly #violated = new Set<Property>();
  // Whether a live member was downed by a side that reached exactly half of the members.
  #halfDowned = false;
  /**
   * Whether the cluster split in two for good, as "half is enough" allows: it
   * lets a two-node cluster survive a crash, at the price that two halves cut
   * apart may down each other and run on as two clusters. Only then are the
   * views excused from converging.
   */
  splitByHalves = false;
  readonly #start: number;
  // When each directed link was last cut or healed; absent means never cut.
  readonly #healedAt = new Map<string, number>();
  #lastChange: number;
  readonly #dead = new Map<string, { node: NodeId; at: number }>();
  // Per process: when each incarnation was first seen Removed, and which were forgotten.
  readonly #removedSeen = new Map<Membership, Map<string, number>>();
  readonly #forgotten = new Map<Membership, Set<string>>();

  constructor(seed: number) {
    this.seed = seed;
    const plan = seededRandom(seed * 7919 + 13);
    const size = 2 + Math.floor(plan() * 4);
    this.addresses = Array.from({ length: size }, (_, i) => `127.0.0.1:${2551 + i}`);
    this.sim = new SimCluster({
      seed,
      timings: TIMINGS,
      loss: plan() * 0.15,
      minDelayMs: 1,
      maxDelayMs: 1 + Math.floor(plan() * 300),
      jitterTicks: true,
    });
    this.#start = this.sim.now;
    this.#lastChange = this.sim.now;
    this.#drawPlan(plan);
    this.sim.observer = (node, input, actions, before) => this.#observe(node, input, actions, before);
  }

  get #t(): number {
    return this.sim.now - this.#start;
  }

  // The first violation of each property; the scenario runs on, so one cannot hide another.
  #fail(property: Property, message: string): void {
    if (this.#violated.has(property)) return;
    this.#violated.add(property);
    this.violations.push(`seed ${this.seed} at t=${this.#t} ms: [${property}] ${message}`);
  }

  #drawPlan(random: () => number): void {
    const n = this.addresses.length;
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
    // Intervals of the link faults already planned, so that at most two overlap (one in a two-node cluster).
    const busy: { from: number; to: number }[] = [];
    const overlapping = (from: number, to: number) => busy.filter((b) => b.from < to && from < b.to).length;
    const deadUntil = new Map<string, number>();
    for (let at = 500; at < FAULT_PHASE_MS; at += 500 + Math.floor(random() * 3500)) {
      const roll = random();
      const duration = 1000 + Math.floor(random() * 15_000);
      const end = Math.min(at + duration, FAULT_PHASE_MS);
      if (roll < 0.25 && n >= 3) {
        if (overlapping(at, end) >= 2) continue;
        busy.push({ from: at, to: end });
        const minority = new Set<string>();
        const size = 1 + Math.floor(random() * Math.floor((n - 1) / 2));
        while (minority.size < size) minority.add(pick(this.addresses));
        for (const a of minority) {
          for (const b of this.addresses.filter((x) => !minority.has(x))) {
            this.#plan(at, { kind: "cut", from: a, to: b }, end);
            this.#plan(at, { kind: "cut", from: b, to: a }, end);
          }
        }
      } else if (roll < 0.7) {
        if (overlapping(at, end) >= (n === 2 ? 1 : 2)) continue;
        busy.push({ from: at, to: end });
        const from = pick(this.addresses);
        const to = pick(this.addresses.filter((x) => x !== from));
        if (roll < 0.5) {
          this.#plan(at, { kind: "cut", from, to }, end);
        } else {
          // A flapping link: short cuts with short gaps.
          for (let t = at; t < end; t += 1500 + Math.floor(random() * 2500)) {
            this.#plan(t, { kind: "cut", from, to }, Math.min(end, t + 800 + Math.floor(random() * 3500)));
          }
        }
      } else {
        // Never the first seed: its restart in a minority would rightly form a second cluster.
        const victim = pick(this.addresses.slice(1));
        const down = [...deadUntil.entries()].filter(([a, until]) => until > at && a !== victim).length + 1;
        if ((deadUntil.get(victim) ?? 0) > at || down > Math.floor(n / 2)) continue;
        // Some stay dead until well after the heal, so that nothing but downing can clear them.
        const back = random() < 0.6 ? at + 500 + Math.floor(random() * 20_000) : Infinity;
        deadUntil.set(victim, back);
        this.plan.push({ at, fault: { kind: "kill", address: victim } });
        if (back < FAULT_PHASE_MS) this.plan.push({ at: back, fault: { kind: "restart", address: victim } });
      }
    }
    this.plan.sort((a, b) => a.at - b.at);
  }

  #plan(at: number, cut: Fault & { kind: "cut" }, healAt: number): void {
    this.plan.push({ at, fault: cut }, { at: healAt, fault: { kind: "heal", from: cut.from, to: cut.to } });
  }

  #apply(fault: Fault): void {
    const sim = this.sim;
    this.#lastChange = sim.now;
    switch (fault.kind) {
      case "cut":
        sim.cutOneWay(fault.from, fault.to);
        this.#healedAt.set(`${fault.from}|${fault.to}`, Infinity);
        break;
      case "heal":
        sim.cut.delete(`${fault.from}|${fault.to}`);
        this.#healedAt.set(`${fault.from}|${fault.to}`, sim.now);
        break;
      case "kill":
        this.#kill(fault.address);
        break;
      case "restart":
        this.#kill(fault.address);
        sim.start(fault.address, this.addresses);
        break;
    }
  }

  #kill(address: string): void {
    const node = this.sim.nodes.get(address);
    if (!node) return;
    if (!node.isGone) this.#dead.set(nodeKey(node.self), { node: node.self, at: this.sim.now });
    this.sim.kill(address);
  }

  #intactSince(from: string, to: string): number {
    return this.#healedAt.get(`${from}|${to}`) ?? -Infinity;
  }

  #running(node: NodeId): boolean {
    const process = this.sim.nodes.get(node.address);
    return process !== undefined && sameNode(process.self, node) && !process.isGone;
  }

  #observe(node: Membership, input: MembershipInput, actions: readonly MembershipAction[], before: GossipState): void {
    this.#checkForgetting(node);
    if (input.type !== "tick") return;
    for (const action of actions) {
      if (action.type !== "event" || action.event.type !== "memberStatus") continue;
      const { member, previous } = action.event;
      if (member.status === "Down" && previous !== undefined && previous !== "Down") {
        this.#checkDowning(node, member.node, before);
      }
    }
  }

  /** No live member with two-way links to more than half of the members, intact for a while, is downed. */
  #checkDowning(downer: Membership, subject: NodeId, before: GossipState): void {
    if (!this.#running(subject)) return;
    // Judged on the view the downer decided on.
    const members = liveMembers(before).filter((m) => ACTIVE.includes(m.status));
    const { unreachable } = reachabilityOf(before, downer.self);
    if (members.filter((m) => !unreachable.has(m.node.address)).length * 2 === members.length) this.#halfDowned = true;
    const since = this.sim.now - INTACT_WINDOW_MS;
    const linked = members.filter((m) =>
      !sameNode(m.node, subject) && this.#running(m.node) &&
      this.#intactSince(m.node.address, subject.address) <= since &&
      this.#intactSince(subject.address, m.node.address) <= since
    );
    if (linked.length * 2 > members.length) {
      this.#fail(
        "live member downed",
        `${downer.self.address} downed live ${subject.address} although its links to ${
          linked.map((m) => m.node.address).join(", ")
        } (of ${members.length} members) had been intact both ways for ${INTACT_WINDOW_MS} ms`,
      );
    }
  }

  /** A view forgets a Removed member within the bound, and never takes a forgotten one back. */
  #checkForgetting(node: Membership): void {
    if (!node.isMember) return;
    const seen = this.#removedSeen.get(node) ?? new Map<string, number>();
    const forgotten = this.#forgotten.get(node) ?? new Set<string>();
    this.#removedSeen.set(node, seen);
    this.#forgotten.set(node, forgotten);
    for (const m of node.state.members.values()) {
      const key = nodeKey(m.node);
      if (forgotten.has(key)) {
        this.#fail(
          "forgotten member back",
          `${node.self.address} took back ${key} (${m.status}) after it had forgotten it`,
        );
        forgotten.delete(key);
      }
      if (m.status === "Removed" && !seen.has(key)) seen.set(key, this.sim.now);
    }
    for (const [key, at] of seen) {
      const member = node.state.members.get(key.slice(0, key.lastIndexOf("#")));
      if (member === undefined || nodeKey(member.node) !== key) {
        seen.delete(key);
        forgotten.add(key);
      } else if (this.sim.now - at > FORGET_BOUND_MS) {
        this.#fail(
          "removed member kept",
          `${node.self.address} still holds ${key} as Removed ${this.sim.now - at} ms after it was removed`,
        );
        seen.delete(key);
      }
    }
  }

  /** Every killed member is downed by the survivors within the bound once the network is whole. */
  #checkDead(): void {
    if (this.sim.cut.size > 0) return;
    for (const [key, { node, at }] of this.#dead) {
      const since = Math.max(at, this.#lastChange);
      // By design only a survivor whose members are at least half alive may down anyone.
      const survivors = [...this.sim.nodes.values()].filter((s) => {
        const members = liveMembers(s.state).filter((m) => ACTIVE.includes(m.status));
        return s.isMember && members.filter((m) => this.#running(m.node)).length * 2 >= members.length;
      });
      const holding = survivors.filter((s) => {
        const status = memberOf(s.state, node)?.status;
        return status !== undefined && status !== "Down" && status !== "Removed";
      });
      if (holding.length === 0) {
        if (survivors.every((s) => memberOf(s.state, node) === undefined)) this.#dead.delete(key);
        continue;
      }
      if (this.sim.now - since > DOWN_BOUND_MS) {
        this.#fail(
          "dead member not downed",
          `${key}, killed at t=${at - this.#start} ms, is still ${
            holding.map((s) => `${memberOf(s.state, node)!.status} for ${s.self.address}`).join(", ")
          } ${this.sim.now - since} ms after the network last changed; ${holding[0].self.address} holds ${
            describeReports(holding[0])
          }`,
        );
        this.#dead.delete(key);
      }
    }
  }

  #step(ms: number): void {
    for (let t = 0; t < ms; t += 100) {
      this.sim.advance(100);
      this.#checkDead();
    }
  }

  /** Whether the running members form two or more clusters that do not count each other in. */
  #disjointClusters(): boolean {
    const groups = new Map<string, Set<string>>();
    for (const p of this.sim.nodes.values()) {
      if (!p.isMember) continue;
      const keys = liveMembers(p.state).filter((m) => m.status !== "Down").map((m) => nodeKey(m.node));
      groups.set(keys.join(" "), new Set(keys));
    }
    const sets = [...groups.values()];
    return sets.length > 1 && sets.every((a, i) => sets.slice(i + 1).every((b) => ![...a].some((k) => b.has(k))));
  }

  #allUp(): boolean {
    const processes = [...this.sim.nodes.values()];
    if (processes.length !== this.addresses.length || processes.some((p) => !p.isMember)) return false;
    return processes.every((viewer) => {
      const view = liveMembers(viewer.state);
      return view.length === processes.length &&
        view.every((m) => m.status === "Up" && processes.some((p) => sameNode(p.self, m.node)));
    });
  }

  #waitFor(condition: () => boolean, limitMs: number, what: string): void {
    const start = this.sim.now;
    while (!condition()) {
      if (this.sim.now - start > limitMs) {
        this.splitByHalves ||= this.#halfDowned && this.#disjointClusters();
        if (this.splitByHalves) return;
        return this.#fail(
          "convergence",
          `${what} did not happen within ${limitMs} ms; views:\n${this.describeViews()}`,
        );
      }
      this.#step(100);
    }
  }

  /** Runs the whole scenario; returns the violations found (empty when all properties held). */
  run(): string[] {
    const sim = this.sim;
    const order = shuffled(this.addresses, sim.random);
    for (const address of order) {
      sim.start(address, this.addresses);
      this.#step(100 * Math.floor(sim.random() * 10));
    }
    this.#waitFor(() => this.#allUp(), JOIN_BOUND_MS, "the first convergence");
    const faultStart = sim.now;
    for (const { at, fault } of this.plan) {
      if (faultStart + at > sim.now) this.#step(faultStart + at - sim.now);
      this.#apply(fault);
    }
    this.#step(faultStart + FAULT_PHASE_MS - sim.now);
    // Heal every link; the dead stay dead until the survivors had time to down them.
    for (const pair of sim.cut) this.#apply({ kind: "heal", from: pair.split("|")[0], to: pair.split("|")[1] });
    this.#step(DOWN_BOUND_MS + 1000);
    // Then, as a supervisor would, a restart for every node that was killed or stopped after being downed.
    const restartedAt = sim.now;
    this.#waitFor(
      () => {
        for (const address of this.addresses) {
          const process = sim.nodes.get(address);
          if (!process || process.isGone) this.#apply({ kind: "restart", address });
        }
        return this.#allUp();
      },
      DOWN_BOUND_MS + JOIN_BOUND_MS,
      `all Up after the restarts at t=${restartedAt - this.#start} ms`,
    );
    // Kill some for good: they must be downed, removed, forgotten everywhere, and stay forgotten.
    const victims = shuffled(this.addresses.slice(1), sim.random)
      .slice(0, Math.max(1, Math.floor((this.addresses.length - 1) / 2)));
    for (const address of victims) this.#apply({ kind: "kill", address });
    const left = this.addresses.length - victims.length;
    this.#waitFor(
      () => [...sim.nodes.values()].every((p) => p.state.members.size === left),
      DOWN_BOUND_MS + FORGET_BOUND_MS,
      `forgetting ${victims.join(", ")}, killed at t=${sim.now - this.#start} ms,`,
    );
    this.#step(2 * TIMINGS.removedTtlMs);
    return this.violations;
  }

  /** Each process's view, for a failing seed run on its own. */
  describeViews(): string {
    return [...this.sim.nodes.values()].map((p) =>
      `${nodeKey(p.self)} ${p.isGone ? "gone" : p.isMember ? "member" : "outside"}: ${
        [...p.state.members.values()].map((m) => `${nodeKey(m.node)}=${m.status}`).join(" ")
      }`
    ).join("\n");
  }

  /** The fault plan, one fault a line, in ms from the start of the fault phase. */
  describePlan(): string {
    return this.plan.map(({ at, fault }) =>
      `${at}: ${fault.kind} ${"address" in fault ? fault.address : `${fault.from}->${fault.to}`}`
    ).join("\n");
  }
}

// Fisher-Yates: `sort` with a random comparator calls it a varying number of times, which breaks replay by seed.
function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const result = [...items];
  for (let i = result.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [result[i], result[j]] = [result[j], result[i]];
  }
  return result;
}

function describeReports(viewer: Membership): string {
  const reports = [...viewer.state.observations.values()].filter((o) => o.unreachable.length > 0)
    .map((o) => `${nodeKey(o.observer)} reports ${o.unreachable.map(nodeKey).join(", ")}`);
  return reports.length > 0 ? reports.join("; ") : "no unreachability reports";
}

function seedsToRun(): number[] {
  const only = Deno.env.get("MEMBERSHIP_SIM_SEED");
  const count = Number(Deno.env.get("MEMBERSHIP_SIM_SCENARIOS") ?? SCENARIOS);
  return only ? [Number(only)] : Array.from({ length: count }, (_, i) => i + 1);
}

Deno.test(`membership holds its properties under ${seedsToRun().length} seeded random fault scenarios`, () => {
  const failures: string[] = [];
  const splits: number[] = [];
  for (const seed of seedsToRun()) {
    const scenario = new Scenario(seed);
    const violations = scenario.run();
    failures.push(...violations);
    if (scenario.splitByHalves) splits.push(seed);
    if (violations.length > 0 && Deno.env.get("MEMBERSHIP_SIM_SEED")) {
      console.log(`${scenario.describePlan()}\n${scenario.describeViews()}`);
    }
  }
  assert.deepEqual(failures, [], `${failures.length} violations:\n${failures.join("\n")}`);
  // Excused from converging; so few that the scenarios keep their power.
  assert.ok(splits.length * 20 <= Math.max(20, seedsToRun().length), `split by halves: seeds ${splits.join(", ")}`);
});
