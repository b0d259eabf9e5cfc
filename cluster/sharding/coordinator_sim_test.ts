/**
 * The coordinator against random interleavings of a cluster's life: regions
 * that host shards like `ShardHosting` does (a repeated start keeps the state,
 * a repeated stop returns the snapshot kept since the first, a dead or
 * replaced incarnation fails every command), a network that fails commands,
 * loses answers, duplicates them and delivers everything in any order,
 * members that leave, crash, restart with a new uid and join, and
 * coordinators that fail over (regions register again, with what they host
 * and what they handed off lately, some of them slowly). Every shard's state
 * is its own (its user's totals, with the last offset applied), so a move
 * that drops or rolls back state is caught where it happens, as is a shard
 * started while another live node hosts it, or a home answered where the
 * shard does not run. Then the turmoil ends, and every shard must run once,
 * on the node that consumes its partition.
 *
 * A failing run names its seed and the steps that led there:
 * `COORDINATOR_SIM_SEED=<seed>` runs that seed alone, `COORDINATOR_SIM_TRACE=<n>`
 * shows its last n steps (15 by default).
 *
 * @module
 */
import assert from "node:assert/strict";
import {
  Coordinator,
  type CoordinatorAction,
  type CoordinatorInput,
  type MemberInfo,
  REGISTRATION_GRACE_MS,
} from "./coordinator.ts";
import type { MemberStatus } from "../membership/members.ts";
import { type NodeId, nodeKey, sameNode } from "../remoting/node.ts";
import { DEFAULT_SHARDING_TIMINGS } from "../timings.ts";
import { Shard, type ShardSnapshot } from "./shard.ts";
import { seededRandom } from "../seeded_random.ts";

const SHARDS = 12;
const ADDRESSES = ["127.0.0.1:2551", "127.0.0.1:2552", "127.0.0.1:2553", "127.0.0.1:2554"];
const CHAOS_STEPS = 600;
/** What happens in a step of turmoil, with its weight. */
const CHAOS_MIX: readonly (readonly [number, (sim: Sim) => void])[] = [
  [40, (sim) => sim.deliver()],
  [14, (sim) => sim.tick(50 + sim.random() * 1450)],
  [2, (sim) => sim.tick(3000 + sim.random() * 9000)],
  [14, (sim) => sim.purchase()],
  [10, (sim) => sim.askHome()],
  [7, (sim) => sim.randomPlacement()],
  [1.5, (sim) => sim.changeMembers()],
  [0.5, (sim) => sim.failover()],
];
const TOTAL_WEIGHT = CHAOS_MIX.reduce((sum, [weight]) => sum + weight, 0);
/** How long a region waits for the coordinator to acknowledge its registration before it sends it again. */
const REGISTER_TIMEOUT_MS = 3000;
const HANDED_OFF_TTL_MS = DEFAULT_SHARDING_TIMINGS.handedOffTtlMs;

/** One incarnation of a node's shard region, with the rules of `ShardHosting`. */
class SimRegion {
  readonly shards = new Map<number, Shard>();
  readonly handedOff = new Map<number, { snapshot: ShardSnapshot; at: number }>();
  alive = true;
  registeredEpoch = -1;
  registeringUntil = -1;
  registerAt: number;

  constructor(readonly id: NodeId, now: number) {
    this.registerAt = now;
  }

  recentHandoffs(now: number): Map<number, ShardSnapshot> {
    for (const [shard, entry] of this.handedOff) if (now - entry.at > HANDED_OFF_TTL_MS) this.handedOff.delete(shard);
    return new Map([...this.handedOff].map(([shard, entry]) => [shard, entry.snapshot]));
  }

  holds(shard: number, now: number): boolean {
    return this.alive && (this.shards.has(shard) || this.recentHandoffs(now).has(shard));
  }

  stop(shard: number, now: number): ShardSnapshot | undefined {
    const hosted = this.shards.get(shard);
    if (hosted) {
      this.shards.delete(shard);
      this.handedOff.set(shard, { snapshot: hosted.snapshot(), at: now });
    }
    const kept = this.recentHandoffs(now).get(shard);
    if (kept) this.handedOff.set(shard, { snapshot: kept, at: now });
    return kept;
  }

  /** Once the region is dead, its memory (and so its shards' state) is gone. */
  die(): void {
    this.alive = false;
    this.shards.clear();
    this.handedOff.clear();
  }
}

interface Slot {
  region: SimRegion;
  status: MemberStatus;
}

type Message =
  | { readonly kind: "command"; readonly epoch: number; readonly action: Command }
  | { readonly kind: "reply"; readonly epoch: number; readonly reply: Reply }
  | {
    readonly kind: "register";
    readonly epoch: number;
    readonly region: SimRegion;
    readonly shards: readonly number[];
    readonly handedOff: readonly ShardSnapshot[];
  }
  | { readonly kind: "registered"; readonly epoch: number; readonly region: SimRegion };

type Command = Extract<CoordinatorAction, { type: "stopShard" | "startShard" }>;

/** An answer to a command, as it travels: the coordinator's clock stamps it on arrival. */
type Reply = WithoutNow<Extract<CoordinatorInput, { type: "stopped" | "stopFailed" | "started" | "startFailed" }>>;
type WithoutNow<T> = T extends unknown ? Omit<T, "now"> : never;

/** Odds of each network fault while the cluster is in turmoil. */
interface Faults {
  readonly commandFails: number;
  readonly replyLost: number;
  readonly replyDuplicated: number;
}

const CALM: Faults = { commandFails: 0, replyLost: 0, replyDuplicated: 0 };

/** How the pieces around the coordinator behave in one run. */
interface Setting {
  /** Whether a region takes commands only once the coordinator has acknowledged its registration. */
  readonly registeredOnly: boolean;
}

/** A whole cluster in memory: the members, their regions, the coordinator and the messages between them. */
class Sim {
  now = 0;
  epoch = 0;
  coordinator: Coordinator;
  faults: Faults;
  readonly slots = new Map<string, Slot>();
  readonly incarnations = new Map<string, SimRegion>();
  queue: Message[] = [];
  /** Duplicates that the network holds back for a while. */
  #delayed: { readonly at: number; readonly message: Message }[] = [];
  /** Per shard: the newest state there has been, and the region that held it. */
  readonly latest = new Map<number, { offset: number; holder: SimRegion }>();
  readonly #logEnd = new Map<number, number>();
  readonly #registering = new Map<number, SimRegion>();
  readonly #asking = new Map<number, number>();
  readonly #trace: string[] = [];
  #desired = new Map<number, string>();
  #nextUid = 1;
  #nextRequest = 1;

  constructor(readonly seed: number, readonly random: () => number, readonly setting: Setting) {
    this.faults = { commandFails: 0.1, replyLost: 0.1, replyDuplicated: 0.15 };
    for (const address of ADDRESSES.slice(0, 3)) this.#join(address, "Up");
    this.coordinator = new Coordinator(SHARDS, this.now);
    this.feedMembers();
    this.randomPlacement();
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)];
  }

  fail(message: string): never {
    assert.fail(
      `seed ${this.seed}: ${message}\n  last steps:\n    ${
        this.#trace.slice(-Number(Deno.env.get("COORDINATOR_SIM_TRACE") ?? 15)).join("\n    ")
      }`,
    );
  }

  trace(line: string): void {
    this.#trace.push(`t=${this.now} ${line}`);
  }

  #join(address: string, status: MemberStatus): SimRegion {
    const region = new SimRegion({ address, uid: this.#nextUid++ }, this.now + this.random() * 500);
    this.incarnations.set(nodeKey(region.id), region);
    this.slots.set(address, { region, status });
    return region;
  }

  members(): MemberInfo[] {
    return [...this.slots.values()].map((s) => ({ node: s.region.id, status: s.status }));
  }

  feed(input: CoordinatorInput): void {
    for (const action of this.coordinator.step(input)) this.#onAction(action);
  }

  feedMembers(): void {
    this.trace(`members ${this.members().map((m) => `${m.node.address}#${m.node.uid}:${m.status}`).join(" ")}`);
    this.feed({ type: "members", members: this.members(), now: this.now });
  }

  setPlacement(desired: Map<number, string>): void {
    this.#desired = desired;
    this.trace(`placement ${[...desired].map(([s, a]) => `${s}→${a.slice(-1)}`).join(" ")}`);
    this.feed({ type: "placement", desired, now: this.now });
  }

  /** Kafka's assignment: mostly to running members, some partitions to a node that cannot host (or none). */
  randomPlacement(): void {
    const live = [...this.slots].filter(([, s]) => s.region.alive && s.status !== "Removed").map(([a]) => a);
    const desired = new Map<number, string>();
    for (let shard = 0; shard < SHARDS; shard++) {
      if (this.random() < 0.8 && live.length > 0) desired.set(shard, this.pick(live));
      else if (this.random() < 0.5) desired.set(shard, this.pick(ADDRESSES));
    }
    this.setPlacement(desired);
  }

  #onAction(action: CoordinatorAction): void {
    switch (action.type) {
      case "stopShard":
      case "startShard":
        this.queue.push({ kind: "command", epoch: this.epoch, action });
        break;
      case "registerReply": {
        const region = this.#registering.get(action.requestId)!;
        this.#registering.delete(action.requestId);
        // Only a registration that outlived its region may be refused.
        if (action.error && region.alive) this.fail(`registration refused: ${action.error}`);
        if (action.error) break;
        if (this.random() >= this.faults.replyLost) this.queue.push({ kind: "registered", epoch: this.epoch, region });
        break;
      }
      case "homeReply": {
        const shard = this.#asking.get(action.requestId);
        this.#asking.delete(action.requestId);
        if (shard !== action.shard) this.fail(`answer ${action.requestId} is for shard ${action.shard}, not ${shard}`);
        const home = this.incarnations.get(nodeKey(action.home));
        if (home?.alive && !home.shards.has(action.shard)) {
          this.fail(`shard ${action.shard} was said to live on ${action.home.address}, which does not host it`);
        }
        break;
      }
      default:
        break;
    }
  }

  /** Regions that do not know the current coordinator send it what they host and what they handed off lately. */
  registerRegions(): void {
    for (const region of this.incarnations.values()) {
      if (!region.alive || region.registeredEpoch === this.epoch) continue;
      if (this.now < region.registerAt || this.now < region.registeringUntil) continue;
      region.registeringUntil = this.now + REGISTER_TIMEOUT_MS;
      this.queue.push({
        kind: "register",
        epoch: this.epoch,
        region,
        shards: [...region.shards.keys()],
        handedOff: [...region.recentHandoffs(this.now).values()],
      });
    }
  }

  /** Delivers one message, picked at random: the network keeps no order. */
  deliver(): void {
    if (this.queue.length === 0) return;
    const [message] = this.queue.splice(Math.floor(this.random() * this.queue.length), 1);
    // Meant for a coordinator that is gone, or (a command) refused by regions that follow the new one.
    if (message.epoch !== this.epoch) return;
    switch (message.kind) {
      case "command":
        return this.#carryOut(message.action);
      case "reply":
        this.trace(`reply ${message.reply.type} ${message.reply.shard}`);
        return this.feed({ ...message.reply, now: this.now });
      case "register": {
        const requestId = this.#nextRequest++;
        this.#registering.set(requestId, message.region);
        this.trace(
          `register ${nodeKey(message.region.id)} [${message.shards}] handedOff [${
            message.handedOff.map((s) => `${s.shard}@${s.lastOffset}`)
          }]`,
        );
        return this.feed({
          type: "register",
          region: message.region.id,
          shards: message.shards,
          handedOff: message.handedOff,
          shardCount: SHARDS,
          durableState: true,
          requestId,
          now: this.now,
        });
      }
      case "registered":
        message.region.registeredEpoch = this.epoch;
        return;
    }
  }

  #carryOut(command: Command): void {
    const region = this.incarnations.get(nodeKey(command.at));
    const { shard } = command;
    const failed: Reply = command.type === "stopShard"
      ? { type: "stopFailed", shard, from: command.at, command: command.command }
      : { type: "startFailed", shard, at: command.at, command: command.command };
    const refused = this.setting.registeredOnly && region?.registeredEpoch !== this.epoch;
    if (!region?.alive || refused || this.random() < this.faults.commandFails) {
      this.trace(`${command.type} ${shard} at ${nodeKey(command.at)} fails`);
      this.#reply(failed);
      return;
    }
    let reply: Reply;
    if (command.type === "stopShard") {
      const snapshot = region.stop(shard, this.now);
      this.trace(`stopShard ${shard} at ${nodeKey(command.at)} → ${snapshot ? snapshot.lastOffset : "nothing"}`);
      reply = { type: "stopped", shard, from: command.at, snapshot, command: command.command };
    } else {
      this.#start(region, shard, command.snapshot);
      reply = { type: "started", shard, at: command.at, command: command.command };
    }
    // Applied, but the answer does not come back in time: the coordinator hears of a failure and tries again.
    if (this.random() < this.faults.replyLost) reply = failed;
    this.#reply(reply);
    if (this.random() < this.faults.replyDuplicated) {
      this.#delayed.push({
        at: this.now + this.random() * 20_000,
        message: { kind: "reply", epoch: this.epoch, reply },
      });
    }
  }

  #reply(reply: Reply): void {
    this.queue.push({ kind: "reply", epoch: this.epoch, reply });
  }

  #start(region: SimRegion, shard: number, snapshot: ShardSnapshot | undefined): void {
    region.handedOff.delete(shard);
    // A repeated start (its first answer was lost) keeps the state it has.
    if (region.shards.has(shard)) {
      this.trace(`startShard ${shard} at ${nodeKey(region.id)}: already there`);
      return;
    }
    if (snapshot && snapshot.shard !== shard) this.fail(`shard ${shard} started with the state of ${snapshot.shard}`);
    const offset = snapshot?.lastOffset ?? -1;
    this.trace(`startShard ${shard} at ${nodeKey(region.id)} from ${offset}`);
    const last = this.latest.get(shard);
    if (last && last.holder !== region && last.holder.holds(shard, this.now) && offset < last.offset) {
      this.fail(
        `shard ${shard} started on ${nodeKey(region.id)} at offset ${offset}, rolled back from the offset ` +
          `${last.offset} that ${nodeKey(last.holder.id)} (alive) holds`,
      );
    }
    for (const other of this.incarnations.values()) {
      if (other !== region && other.alive && other.shards.has(shard)) {
        this.fail(`shard ${shard} started on ${nodeKey(region.id)} while ${nodeKey(other.id)} still hosts it`);
      }
    }
    region.shards.set(shard, new Shard(shard, snapshot));
    this.latest.set(shard, { offset, holder: region });
  }

  /** A purchase of the shard's own user arrives at the shard's live copy, if there is one. */
  purchase(): void {
    const shard = Math.floor(this.random() * SHARDS);
    const hosts = [...this.incarnations.values()].filter((r) => r.alive && r.shards.has(shard));
    if (hosts.length !== 1) return;
    const offset = (this.#logEnd.get(shard) ?? -1) + 1;
    this.#logEnd.set(shard, offset);
    const copy = hosts[0].shards.get(shard)!;
    copy.apply([{ offset, userId: `user-${shard}`, quantity: 1, price: 100 + shard }]);
    const totals = copy.get(`user-${shard}`);
    if (totals && totals.amountSpent !== totals.totalPurchases * (100 + shard)) {
      this.fail(`shard ${shard} holds totals of another shard: ${JSON.stringify(totals)}`);
    }
    this.latest.set(shard, { offset: copy.lastOffset, holder: hosts[0] });
  }

  askHome(): void {
    const askers = [...this.slots.values()].filter((s) => s.region.alive && s.status !== "Removed");
    if (askers.length === 0) return;
    const requestId = this.#nextRequest++;
    const shard = Math.floor(this.random() * SHARDS);
    this.#asking.set(requestId, shard);
    this.feed({ type: "getHome", shard, requester: this.pick(askers).region.id, requestId, now: this.now });
  }

  tick(ms: number): void {
    this.now += Math.round(ms);
    this.queue.push(...this.#delayed.filter((d) => d.at <= this.now).map((d) => d.message));
    this.#delayed = this.#delayed.filter((d) => d.at > this.now);
    this.feed({ type: "tick", now: this.now });
  }

  /** A new coordinator (the oldest member changed): every region registers again, some of them slowly. */
  failover(): void {
    this.epoch++;
    this.trace(`failover to epoch ${this.epoch}`);
    this.coordinator = new Coordinator(SHARDS, this.now);
    this.#registering.clear();
    this.#asking.clear();
    for (const region of this.incarnations.values()) {
      region.registeringUntil = -1;
      const slow = this.random() < 0.4;
      region.registerAt = this.now + this.random() * (slow ? 2 * REGISTRATION_GRACE_MS : 500);
    }
    this.feedMembers();
    this.randomPlacement();
  }

  /** One change of membership, of those that the members' states allow. */
  changeMembers(): void {
    const slots = [...this.slots.entries()];
    const upCount = slots.filter(([, s]) => s.status === "Up" && s.region.alive).length;
    const choices: (() => void)[] = [];
    for (const [address, slot] of slots) {
      const { region, status } = slot;
      const label = nodeKey(region.id);
      if (status === "Joining" && region.alive) choices.push(() => (slot.status = "Up"));
      if (status === "Up" && region.alive && upCount > 1) choices.push(() => (slot.status = "Leaving"));
      if (status === "Leaving" && region.alive) {
        // Its region closes, with whatever shards have not moved off yet.
        choices.push(() => {
          this.trace(`${label} exits`);
          region.die();
          slot.status = "Exiting";
        });
      }
      if ((status === "Up" || status === "Leaving" || status === "Joining") && region.alive) {
        choices.push(() => {
          this.trace(`${label} crashes`);
          region.die();
        });
        choices.push(() => {
          this.trace(`${label} restarts`);
          region.die();
          this.#join(address, "Joining");
        });
      }
      if ((status === "Up" || status === "Leaving" || status === "Joining") && !region.alive) {
        choices.push(() => (slot.status = "Down"));
      }
      if (status === "Exiting" || status === "Down") choices.push(() => (slot.status = "Removed"));
      if (status === "Removed") choices.push(() => this.#join(address, "Joining"));
    }
    for (const address of ADDRESSES) if (!this.slots.has(address)) choices.push(() => this.#join(address, "Joining"));
    this.pick(choices)();
    this.feedMembers();
  }

  chaos(): void {
    for (let step = 0; step < CHAOS_STEPS; step++) {
      this.registerRegions();
      let r = this.random() * TOTAL_WEIGHT;
      for (const [weight, act] of CHAOS_MIX) {
        r -= weight;
        if (r < 0) {
          act(this);
          break;
        }
      }
    }
  }

  /**
   * The turmoil ends: members settle (the dead are downed and removed, the
   * joining come up, the leaving leave once their shards have moved), the
   * network is reliable, and Kafka spreads the partitions over the Up members.
   */
  settle(): void {
    this.faults = CALM;
    for (let round = 0; round < 300; round++) {
      const before = this.members();
      for (const slot of this.slots.values()) {
        if (!slot.region.alive && ["Joining", "Up", "Leaving"].includes(slot.status)) slot.status = "Down";
        else if (slot.status === "Down" || slot.status === "Exiting") slot.status = "Removed";
        else if (slot.status === "Joining") slot.status = "Up";
        else if (slot.status === "Leaving" && slot.region.shards.size === 0) {
          slot.region.die();
          slot.status = "Exiting";
        }
      }
      if (![...this.slots.values()].some((s) => s.status === "Up" || s.status === "Joining")) {
        this.#join(ADDRESSES.find((a) => this.slots.get(a)?.status !== "Leaving")!, "Joining");
      }
      const after = this.members();
      if (after.some((m, i) => !before[i] || !sameNode(m.node, before[i].node) || m.status !== before[i].status)) {
        this.feedMembers();
      }
      const up = [...this.slots].filter(([, s]) => s.status === "Up").map(([a]) => a);
      const desired = new Map(
        Array.from({ length: SHARDS }, (_, shard) => [shard, up[shard % Math.max(1, up.length)]]),
      );
      if (up.length > 0 && [...desired].some(([s, a]) => this.#desired.get(s) !== a)) this.setPlacement(desired);
      for (const region of this.incarnations.values()) region.registerAt = Math.min(region.registerAt, this.now);
      this.registerRegions();
      for (let i = 0; this.queue.length > 0; i++) {
        if (i > 10_000) this.fail("messages never stop");
        this.deliver();
      }
      this.tick(1000);
      if (this.#settled()) return;
    }
    this.fail(
      `never settled: ${this.coordinator.movesInFlight} moves in flight, table ` +
        `${[...this.coordinator.allocation].map(([s, n]) => `${s}→${nodeKey(n)}`).join(" ")}`,
    );
  }

  #settled(): boolean {
    if (this.queue.length > 0 || this.#delayed.length > 0) return false;
    if (this.coordinator.movesInFlight > 0 || !this.coordinator.isActive) return false;
    for (const slot of this.slots.values()) {
      if (slot.status !== "Up" && slot.status !== "Removed") return false;
      if (slot.region.alive && slot.region.registeredEpoch !== this.epoch) return false;
    }
    for (let shard = 0; shard < SHARDS; shard++) {
      const home = this.coordinator.allocation.get(shard);
      if (!home || home.address !== this.#desired.get(shard)) return false;
    }
    return true;
  }

  /** Every shard runs once, where Kafka consumes its partition, and the coordinator's table says so. */
  checkFinal(): void {
    for (let shard = 0; shard < SHARDS; shard++) {
      const hosts = [...this.incarnations.values()].filter((r) => r.alive && r.shards.has(shard));
      const where = hosts.map((r) => nodeKey(r.id)).join(", ") || "nowhere";
      const desired = this.#desired.get(shard);
      if (hosts.length !== 1 || hosts[0].id.address !== desired) {
        this.fail(`shard ${shard} runs on ${where}, not once on ${desired}`);
      }
      const home = this.coordinator.allocation.get(shard);
      if (!home || !sameNode(home, hosts[0].id)) this.fail(`the table puts shard ${shard} on ${home && nodeKey(home)}`);
    }
  }
}

/** Runs the seeds, or only `COORDINATOR_SIM_SEED`. */
function runSeeds(): void {
  const only = Deno.env.get("COORDINATOR_SIM_SEED");
  const seeds = only ? [Number(only)] : Array.from({ length: 500 }, (_, i) => i + 1);
  for (const seed of seeds) {
    const random = seededRandom(seed);
    const sim = new Sim(seed, random, { registeredOnly: random() < 0.5 });
    sim.chaos();
    sim.settle();
    sim.checkFinal();
  }
}

Deno.test("random interleavings with faults, failovers and restarts never roll a shard back nor run it twice", () => {
  runSeeds();
});
