/**
 * The real parts of a cluster, on the simulated network: `ClusterNode`
 * (membership), `Sharding` (the region, the coordinator runner and the
 * coordinator client) and shard hosting, each node on a
 * {@linkcode MemoryTransport}, under a fake clock. Storage is a shared
 * in-memory changelog that fences as Kafka's transactional ids do, and each
 * partition's consumer delivers its events to the region of the node that
 * consumes it, from the last committed offset, as `kafka/consumer.ts` does.
 *
 * A seed decides the turmoil: messages lost, delayed, reordered and
 * duplicated; links cut one way; nodes frozen; nodes killed and restarted at
 * the same address as new incarnations. Through all of it, after every
 * step, a shard is hosted by one node at most in any node's cluster
 * (leaving out those a live node knows to be down), and every changelog
 * write goes on exactly from what is
 * stored (a copy that rolled back, or applied an event twice, fails the
 * write that shows it). Then the network heals, every
 * killed node comes back, and each partition must be delivered to its end:
 * the stored totals of every user must be exactly what its events add up
 * to, every shard hosted once, on its partition's consumer, and a query on
 * any node must answer each user's exact totals.
 *
 * A failing run names its seed: `CLUSTER_SIM_SEED=<seed>` runs that seed alone,
 * `CLUSTER_SIM_SEEDS=<n>` runs seeds 1 to n (500 by default).
 *
 * @module
 */
// @ts-types="npm:@types/sinonjs__fake-timers@8.1.5"
import FakeTimers from "@sinonjs/fake-timers";
import assert from "node:assert/strict";
import { ClusterNode } from "../membership/cluster_node.ts";
import { MemoryNetwork } from "../remoting/memory_transport.ts";
import { type NodeId, nodeKey } from "../remoting/node.ts";
import { seededRandom } from "../seeded_random.ts";
import { DEFAULT_SHARDING_TIMINGS, DEFAULT_TIMINGS } from "../timings.ts";
import { applyPurchase, NO_PURCHASES, type PurchaseEvent, type UserTotals } from "./entity.ts";
import type { ShardSnapshot } from "./shard.ts";
import { ShardFencedError, type ShardLog, type ShardStorage } from "./shard_storage.ts";
import { Sharding } from "./sharding.ts";

const SHARDS = 8;
const ADDRESSES = ["10.0.0.1:2551", "10.0.0.2:2551", "10.0.0.3:2551"];
const USERS_PER_SHARD = 5;
const EVENTS_PER_SHARD = 120;
/** How long the turmoil lasts, then how long everything may take to settle, in simulated ms. */
const TURMOIL_MS = 60_000;
const SETTLE_MS = 120_000;
const STEP_MS = 50;

/**
 * The changelog: per shard the totals committed so far and the epoch of its
 * owner. Opening a shard fences every earlier owner, whose writes are then
 * refused; a write is all or nothing, and takes a little time, as a
 * transaction does.
 */
class FencedChangelog {
  readonly #epochs = new Map<number, number>();
  readonly #committed = new Map<number, { lastOffset: number; entities: Map<string, UserTotals> }>();
  /** The first write that did not go on exactly from what was stored, if any. */
  wrong: string | undefined;

  /** `exact(shard, lastOffset)`: each user's totals after the shard's events up to `lastOffset`. */
  constructor(
    readonly random: () => number,
    readonly exact: (shard: number, lastOffset: number) => ReadonlyMap<string, UserTotals>,
  ) {}

  /** What is committed for `shard`. */
  committed(shard: number): { lastOffset: number; entities: ReadonlyMap<string, UserTotals> } | undefined {
    return this.#committed.get(shard);
  }

  /** The storage of one node's incarnation; after `alive()` turns false, nothing it writes lands. */
  storageFor(alive: () => boolean): ShardStorage {
    const pause = () => new Promise((resolve) => setTimeout(resolve, 1 + this.random() * 20));
    return {
      durable: true,
      open: async (shard: number): Promise<ShardLog> => {
        await pause();
        if (!alive()) throw new Error("the node is dead");
        const epoch = (this.#epochs.get(shard) ?? 0) + 1;
        this.#epochs.set(shard, epoch);
        const stored = this.#committed.get(shard);
        const restored: ShardSnapshot | undefined = stored &&
          { shard, lastOffset: stored.lastOffset, entities: [...stored.entities] };
        return {
          restored,
          write: async (changed, lastOffset) => {
            await pause();
            if (this.#epochs.get(shard) !== epoch) throw new ShardFencedError(`shard ${shard} was opened again`);
            if (!alive()) throw new Error("the node is dead");
            const into = this.#committed.get(shard) ?? { lastOffset: -1, entities: new Map() };
            const exact = this.exact(shard, lastOffset);
            if (lastOffset < into.lastOffset) {
              this.wrong ??= `shard ${shard} rolled back from offset ${into.lastOffset} to ${lastOffset}`;
            }
            for (const [user, totals] of changed) {
              const want = exact.get(user) ?? NO_PURCHASES;
              if (totals.totalPurchases !== want.totalPurchases || totals.amountSpent !== want.amountSpent) {
                this.wrong ??= `shard ${shard} wrote ${user}: ${JSON.stringify(totals)} at offset ${lastOffset}, ` +
                  `not ${JSON.stringify(want)}`;
              }
            }
            for (const [user, totals] of changed) into.entities.set(user, totals);
            into.lastOffset = lastOffset;
            this.#committed.set(shard, into);
          },
          close: () => Promise.resolve(),
        };
      },
      close: () => Promise.resolve(),
    };
  }
}

interface SimNode {
  readonly self: NodeId;
  readonly cluster: ClusterNode;
  readonly sharding: Sharding;
  alive: boolean;
}

/** A cluster of real nodes on a simulated network, with a consumer per partition. */
class ClusterSim {
  readonly random: () => number;
  readonly network: MemoryNetwork;
  readonly changelog: FencedChangelog;
  readonly nodes = new Map<string, SimNode>();
  /** Every partition's events, in offset order. */
  readonly events: PurchaseEvent[][];
  /** How many of each partition's events are in the topic so far. */
  readonly produced: number[] = Array(SHARDS).fill(0);
  /** Each partition's committed offset, as the consumer group holds it. */
  readonly committed: number[] = Array(SHARDS).fill(0);
  /** Deliveries in flight, as `partition@address`: a replaced consumer's may still run beside its successor's. */
  readonly #delivering = new Set<string>();
  /** Which incarnation consumes each partition, as `address#uid`. */
  readonly #consumers: (string | undefined)[] = Array(SHARDS).fill(undefined);
  #uid = 0;
  readonly trace: string[] = [];

  constructor(readonly seed: number) {
    this.random = seededRandom(seed);
    this.network = new MemoryNetwork(seed + 1, { minDelayMs: 1, maxDelayMs: 20 });
    this.changelog = new FencedChangelog(seededRandom(seed + 2), (shard, lastOffset) => {
      const totals = new Map<string, UserTotals>();
      for (const event of this.events[shard].slice(0, lastOffset + 1)) {
        totals.set(event.userId, applyPurchase(totals.get(event.userId) ?? NO_PURCHASES, event));
      }
      return totals;
    });
    this.events = Array.from(
      { length: SHARDS },
      (_, shard) =>
        Array.from({ length: EVENTS_PER_SHARD }, (_, offset) => ({
          offset,
          userId: `u${shard}-${Math.floor(this.random() * USERS_PER_SHARD)}`,
          quantity: 1 + Math.floor(this.random() * 3),
          price: 1 + Math.floor(this.random() * 1000),
        })),
    );
  }

  /** Starts a new incarnation at `address`. */
  start(address: string): void {
    const self = { address, uid: ++this.#uid };
    const node: { alive: boolean } = { alive: true };
    const cluster = ClusterNode.start({
      self,
      bindHost: "unused",
      bindPort: 0,
      seeds: ADDRESSES.slice(0, 2),
      clusterName: "sim",
      timings: DEFAULT_TIMINGS,
      transport: this.network.transport(self),
    });
    const sharding = new Sharding({
      node: cluster,
      typeName: "sim",
      shardCount: SHARDS,
      askTimeoutMs: DEFAULT_SHARDING_TIMINGS.askTimeoutMs,
      placement: () => Promise.resolve(this.placement()),
      shardOf: (userId) => Number(userId.slice(1, userId.indexOf("-"))),
      storage: this.changelog.storageFor(() => node.alive),
    });
    this.nodes.set(address, Object.assign(node, { self, cluster, sharding }));
    this.trace.push(`${this.#at()} start ${address}#${self.uid}`);
    // A node that is no longer a member exits, and its supervisor starts it again a little later.
    cluster.removed.then((reason) => {
      if (this.nodes.get(address)?.self !== self || !node.alive) return;
      this.trace.push(`${this.#at()} ${address}#${self.uid} removed (${reason}), exits`);
      this.kill(address);
      setTimeout(() => {
        if (!this.nodes.get(address)?.alive) this.start(address);
      }, 2_000);
    });
  }

  /** kill -9: nothing more leaves the node, and nothing it writes lands. */
  kill(address: string): void {
    const node = this.nodes.get(address);
    if (!node?.alive) return;
    node.alive = false;
    node.cluster.close();
    node.sharding.close().catch(() => {});
    this.trace.push(`${this.#at()} kill ${address}`);
  }

  /** Which node consumes each partition: the live nodes in address order take them in turn, as a group assignor would. */
  placement(): Map<number, string> {
    const live = [...this.nodes.values()].filter((n) => n.alive).map((n) => n.self.address).sort();
    return new Map(live.length === 0 ? [] : Array.from({ length: SHARDS }, (_, p) => [p, live[p % live.length]]));
  }

  /**
   * One step of the consumers: a partition taken over is read from its
   * committed offset (its node hears so), and each partition not in flight
   * delivers what is new since its committed offset.
   */
  consume(): void {
    const placement = this.placement();
    for (let p = 0; p < SHARDS; p++) {
      const node = this.nodes.get(placement.get(p) ?? "");
      const consumer = node?.alive ? nodeKey(node.self) : undefined;
      if (consumer !== this.#consumers[p]) {
        this.#consumers[p] = consumer;
        if (consumer) node!.sharding.region.consumedFrom(p, this.committed[p]);
      }
      const key = `${p}@${node?.self.address}`;
      if (!node?.alive || this.#delivering.has(key) || this.committed[p] >= this.produced[p]) continue;
      const from = this.committed[p];
      const batch = this.events[p].slice(from, Math.min(this.produced[p], from + 10));
      this.#delivering.add(key);
      node.sharding.region.applyEvents(p, batch).then(
        (delivery) => {
          // A commit of a consumer that was replaced meanwhile is refused by Kafka; an older one changes nothing.
          if (this.placement().get(p) === node.self.address && node.alive) {
            this.committed[p] = Math.max(this.committed[p], delivery.lastOffset + 1);
          }
        },
        () => {},
      ).finally(() => this.#delivering.delete(key));
    }
  }

  /** Adds some events to the topic. */
  produce(): void {
    for (let p = 0; p < SHARDS; p++) {
      if (this.random() < 0.3) this.produced[p] = Math.min(EVENTS_PER_SHARD, this.produced[p] + 1);
    }
  }

  /** One random misfortune, or none. */
  chaos(): void {
    const roll = this.random();
    const address = ADDRESSES[Math.floor(this.random() * ADDRESSES.length)];
    const other = ADDRESSES.find((a) => a !== address)!;
    if (roll < 0.004) this.kill(address);
    else if (roll < 0.012 && !this.nodes.get(address)?.alive) this.start(address);
    else if (roll < 0.016) {
      this.network.cut(address, other);
      this.trace.push(`${this.#at()} cut ${address} → ${other}`);
    } else if (roll < 0.022) {
      this.network.heal(address, other);
    } else if (roll < 0.024) {
      this.network.freeze(address);
      this.trace.push(`${this.#at()} freeze ${address}`);
    } else if (roll < 0.03) {
      if (this.network.isFrozen(address)) this.trace.push(`${this.#at()} thaw ${address}`);
      this.network.thaw(address);
    } else if (roll < 0.035) {
      this.network.conditions.loss = this.random() < 0.5 ? 0 : 0.1;
      this.network.conditions.duplication = this.random() < 0.5 ? 0 : 0.05;
    }
  }

  /** Heals the network and starts every node that is down. */
  heal(): void {
    this.network.healAll();
    for (const address of ADDRESSES) this.network.thaw(address);
    Object.assign(this.network.conditions, { loss: 0, duplication: 0 });
    for (const address of ADDRESSES) if (!this.nodes.get(address)?.alive) this.start(address);
    this.trace.push(`${this.#at()} heal`);
  }

  /**
   * What must hold after every step: no changelog write went astray, and no
   * shard is hosted twice among the members of one cluster that no live node
   * knows to be down (a downed node may still host what it had until it
   * hears, but its writes are fenced).
   */
  check(): string | undefined {
    if (this.changelog.wrong) return this.changelog.wrong;
    const live = [...this.nodes.values()].filter((n) => n.alive);
    const downed = new Set(live.flatMap((n) => {
      const view = n.cluster.snapshot();
      return [...view.members.filter((m) => m.status === "Down"), ...view.removed].map((m) => nodeKey(m.node));
    }));
    for (const node of live) {
      // A node's cluster: a node cut off from every seed forms a cluster of its own, which nobody else
      // knows of, and hosts what it consumes there; only fencing keeps the two clusters' writes apart.
      const cluster = new Set(node.cluster.snapshot().members.map((m) => nodeKey(m.node)));
      const counted = live.filter((n) => cluster.has(nodeKey(n.self)) && !downed.has(nodeKey(n.self)));
      for (let shard = 0; shard < SHARDS; shard++) {
        const hosts = counted.filter((n) => n.sharding.region.hosts(shard));
        if (hosts.length > 1) {
          return `shard ${shard} hosted on ${hosts.map((n) => nodeKey(n.self)).join(" and ")}, ` +
            `one cluster as ${nodeKey(node.self)} sees it`;
        }
      }
    }
    return undefined;
  }

  /** The exact totals of every user, from the events. */
  expected(): Map<string, UserTotals> {
    const totals = new Map<string, UserTotals>();
    for (const events of this.events) {
      for (const event of events) {
        totals.set(event.userId, applyPurchase(totals.get(event.userId) ?? NO_PURCHASES, event));
      }
    }
    return totals;
  }

  #at(): string {
    return `${(performance.now() / 1000).toFixed(1)}s`;
  }
}

async function run(seed: number): Promise<void> {
  const clock = FakeTimers.install({
    now: 1_000_000,
    toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval", "Date", "performance"],
  });
  const sim = new ClusterSim(seed);
  try {
    for (const address of ADDRESSES) sim.start(address);
    for (let t = 0; t < TURMOIL_MS; t += STEP_MS) {
      sim.produce();
      sim.chaos();
      sim.consume();
      await clock.tickAsync(STEP_MS);
      const broken = sim.check();
      if (broken) {
        assert.fail(`${broken}: ${hosting(sim)} (seed ${seed}; last steps:\n${sim.trace.slice(-15).join("\n")})`);
      }
    }
    sim.heal();
    sim.produced.fill(EVENTS_PER_SHARD);
    let settled = false;
    for (let t = 0; t < SETTLE_MS && !settled; t += STEP_MS) {
      sim.consume();
      await clock.tickAsync(STEP_MS);
      const broken = sim.check();
      if (broken) {
        assert.fail(`${broken}: ${hosting(sim)} (seed ${seed}; last steps:\n${sim.trace.slice(-15).join("\n")})`);
      }
      settled = sim.committed.every((c) => c === EVENTS_PER_SHARD) && oneCluster(sim) && placedOnConsumers(sim);
    }
    const where = `seed ${seed}; last steps:\n${sim.trace.slice(-15).join("\n")}`;
    assert.deepEqual(
      sim.committed,
      Array(SHARDS).fill(EVENTS_PER_SHARD),
      `every event committed: ${hosting(sim)} (${where})`,
    );
    assert.ok(oneCluster(sim), `every node runs, and each sees all of them Up: ${hosting(sim)} (${where})`);
    assert.ok(
      placedOnConsumers(sim),
      `every shard hosted once, on its partition's consumer: ${hosting(sim)} (${where})`,
    );
    const expected = sim.expected();
    for (let shard = 0; shard < SHARDS; shard++) {
      const stored = sim.changelog.committed(shard);
      assert.equal(stored?.lastOffset, EVENTS_PER_SHARD - 1, `shard ${shard} stored up to its last event (${where})`);
      for (const [user, totals] of stored!.entities) {
        assert.deepEqual(totals, expected.get(user), `user ${user}: stored totals exact (${where})`);
      }
    }
    for (const node of sim.nodes.values()) {
      let answered = false;
      const asked = Promise.all(
        [...expected.keys()].map(async (user) =>
          [user, await node.sharding.region.userTotals(user).catch((error) => String(error))] as const
        ),
      ).finally(() => answered = true);
      for (let t = 0; t < 30_000 && !answered; t += STEP_MS) await clock.tickAsync(STEP_MS);
      for (const [user, totals] of await asked) {
        assert.deepEqual(totals, expected.get(user), `user ${user} asked on ${node.self.address} (${where})`);
      }
    }
    if (only) {
      const count = (what: string) => sim.trace.filter((line) => line.includes(` ${what} `)).length;
      const { sent, lost, duplicated } = sim.network.counts;
      console.log(
        `seed ${seed}: ${count("kill")} kills, ${count("start") - ADDRESSES.length} restarts, ${count("cut")} cuts, ` +
          `${count("freeze")} freezes; ${sent} messages sent, ${lost} lost, ${duplicated} duplicated`,
      );
    }
  } finally {
    for (const address of ADDRESSES) sim.kill(address);
    await clock.tickAsync(10_000).catch(() => {});
    clock.uninstall();
  }
}

/** Each live node: its status, the shards it hosts, and the partitions it consumes. */
function hosting(sim: ClusterSim): string {
  const placement = sim.placement();
  return [...sim.nodes.values()].filter((n) => n.alive).map((n) => {
    const hosted = [...Array(SHARDS).keys()].filter((s) => n.sharding.region.hosts(s));
    const consumed = [...placement].filter(([, a]) => a === n.self.address).map(([p]) => p);
    const status = n.cluster.selfMember?.status ?? "not a member";
    const members = n.cluster.snapshot().members.map((m) => `${m.node.address}#${m.node.uid}:${m.status}`).join(",");
    return `${n.self.address}#${n.self.uid} ${status} hosts [${hosted}] consumes [${consumed}] sees {${members}}`;
  }).join("; ");
}

/** Whether a node runs at every address, and each sees all of them Up. */
function oneCluster(sim: ClusterSim): boolean {
  const live = [...sim.nodes.values()].filter((n) => n.alive);
  return live.length === ADDRESSES.length && live.every((n) => {
    const members = n.cluster.snapshot().members;
    return members.length === ADDRESSES.length &&
      members.every((m) => m.status === "Up" && sim.nodes.get(m.node.address)?.self.uid === m.node.uid);
  });
}

/** Whether every shard is hosted by exactly one live node, the one that consumes its partition. */
function placedOnConsumers(sim: ClusterSim): boolean {
  const placement = sim.placement();
  const live = [...sim.nodes.values()].filter((n) => n.alive);
  for (let shard = 0; shard < SHARDS; shard++) {
    const hosts = live.filter((n) => n.sharding.region.hosts(shard));
    if (hosts.length !== 1 || hosts[0].self.address !== placement.get(shard)) return false;
  }
  return true;
}

const only = Deno.env.get("CLUSTER_SIM_SEED");
const SEEDS = only
  ? [Number(only)]
  : Array.from({ length: Number(Deno.env.get("CLUSTER_SIM_SEEDS") ?? 500) }, (_, i) => i + 1);

Deno.test({
  name: "the real parts on a lossy, reordering, duplicating network with cuts, freezes, crashes and restarts: exact",
  // The fake clock replaces the timers that the sanitizers would otherwise count.
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    for (const seed of SEEDS) await run(seed);
  },
});
