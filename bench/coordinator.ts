/**
 * The shard coordinator's own cost at 10,000 shards on three nodes, the state
 * machine alone (no network): home lookups, idle ticks, and a rebalance that
 * moves a third of the shards, one reply per step. Each input should cost
 * what it changes, not a pass over every shard.
 *
 * @module
 */
import { Coordinator, type CoordinatorAction } from "../cluster/sharding/coordinator.ts";
import type { NodeId } from "../cluster/remoting/node.ts";
import type { BenchContext } from "./context.ts";

const SHARDS = 10_000;
const STEPS = 10_000;

/** Times the coordinator's steps and reports inputs per second. */
export function benchCoordinator(context: BenchContext): Promise<void> {
  const nodes: NodeId[] = [1, 2, 3].map((i) => ({ address: `127.0.0.1:${2550 + i}`, uid: i }));
  let now = 0;
  let request = 0;
  const coordinator = new Coordinator(SHARDS, now);
  coordinator.step({ type: "members", members: nodes.map((node) => ({ node, status: "Up" as const })), now });
  for (const region of nodes) {
    coordinator.step({
      type: "register",
      region,
      shards: [],
      shardCount: SHARDS,
      durableState: true,
      requestId: ++request,
      now,
    });
  }
  const placement = (count: number) =>
    new Map(Array.from({ length: SHARDS }, (_, shard) => [shard, nodes[shard % count].address]));
  settle(coordinator, coordinator.step({ type: "placement", desired: placement(3), now }), () => now);
  if (coordinator.allocation.size !== SHARDS) throw new Error("the shards did not settle");

  let started = performance.now();
  for (let i = 0; i < STEPS; i++) {
    const shard = (i * 7919) % SHARDS;
    coordinator.step({ type: "getHome", shard, requester: nodes[i % 3], requestId: ++request, now: ++now });
  }
  report(context, "coordinator: home lookups at 10,000 shards", STEPS, performance.now() - started);

  started = performance.now();
  for (let i = 0; i < STEPS; i++) coordinator.step({ type: "tick", now: ++now });
  report(context, "coordinator: idle ticks at 10,000 shards", STEPS, performance.now() - started);

  started = performance.now();
  const steps = settle(
    coordinator,
    coordinator.step({ type: "placement", desired: placement(2), now: ++now }),
    () => ++now,
  );
  report(context, "coordinator: rebalance of 1/3 of 10,000 shards", steps, performance.now() - started);
  return Promise.resolve();
}

/** Answers every command at once, as regions that never fail would; returns the inputs it took. */
function settle(coordinator: Coordinator, first: CoordinatorAction[], clock: () => number): number {
  let pending = first;
  let steps = 1;
  while (pending.length > 0) {
    const next: CoordinatorAction[] = [];
    for (const action of pending) {
      if (action.type === "stopShard") {
        const snapshot = { shard: action.shard, lastOffset: 1, entities: [] };
        const from = action.at;
        const { shard, command } = action;
        next.push(...coordinator.step({ type: "stopped", shard, from, snapshot, command, now: clock() }));
      } else if (action.type === "startShard") {
        const { shard, at, command } = action;
        next.push(...coordinator.step({ type: "started", shard, at, command, now: clock() }));
      } else continue;
      steps++;
    }
    pending = next;
  }
  return steps;
}

function report(context: BenchContext, name: string, steps: number, ms: number): void {
  context.report(name, `${Math.round(steps / (ms / 1000))} inputs/s`, { inputs: steps, ms: Math.round(ms) });
}
