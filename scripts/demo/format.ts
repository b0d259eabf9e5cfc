/**
 * How the demo words its figures: times, shares, shard sets and moves.
 *
 * @module
 */
import type { ShardsJson } from "../../commands/management_client.ts";
import { compactRanges } from "../../cluster/management/shard_ranges.ts";
import type { RebalanceRecord } from "../../cluster/sharding/coordinator_runner.ts";

/** A bound, in whole seconds. */
export function limit(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

/** A measured time. */
export function seconds(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** `part` of `whole`, to a tenth of a percent, rounded down (100 % of nothing). */
export function percent(part: number, whole: number): string {
  return `${whole === 0 ? 100 : Math.floor((1000 * part) / whole) / 10} %`;
}

/** The shards a node hosts, in order. */
export function idsOf(shards: ShardsJson): number[] {
  return shards.regions.map((r) => Number(r.shardId)).sort((a, b) => a - b);
}

/** Ids as ranges, in brackets: `[0-63,65]`. */
export function bracketed(ids: Iterable<number>): string {
  return `[${compactRanges([...ids].sort((a, b) => a - b))}]`;
}

/**
 * Why the shards are not (yet) where their partitions are consumed, or
 * `undefined` once every node hosts exactly the shards of the partitions it
 * consumes, every shard is hosted once, and every node has some.
 */
export function placementProblem(views: readonly ShardsJson[], partitions: number): string | undefined {
  const described = views.map((v, i) =>
    `node ${i + 1} hosts ${v.regions.length} shards and consumes ${v.consumedPartitions?.length ?? 0} partitions`
  ).join("; ");
  const hosted = views.map(idsOf);
  const everyShardOnce = hosted.flat().length === partitions && new Set(hosted.flat()).size === partitions;
  const aligned = views.every((v, i) => {
    const consumed = [...(v.consumedPartitions ?? [])].sort((a, b) => a - b);
    return consumed.length > 0 && consumed.join() === hosted[i].join();
  });
  return everyShardOnce && aligned ? undefined : described;
}

/**
 * A rebalance as `GET /cluster/coordinator` gives it, in a line:
 * `rebalance started for 2 shards: 127.0.0.1:2551 → 127.0.0.1:2552 [3,7]`.
 */
export function rebalanceStarted(rebalance: RebalanceRecord): string {
  const groups = new Map<string, number[]>();
  for (const move of rebalance.moves) {
    const key = `${move.from ?? "new"} → ${move.to}`;
    groups.set(key, [...(groups.get(key) ?? []), move.shard]);
  }
  const moves = [...groups].map(([key, shards]) => `${key} ${bracketed(shards)}`).join("; ");
  return `rebalance started for ${rebalance.moves.length} shards: ${moves}`;
}

/** A user's totals as `usershard query --json` gives them, in words. */
export function describeUser(user: { totalPurchases: number; amountSpent: number } | undefined): string {
  if (!user) return "no answer";
  return `${user.totalPurchases} ${user.totalPurchases === 1 ? "purchase" : "purchases"}, ${user.amountSpent}p`;
}
