/**
 * Membership timings on real processes: start → Up for a node joining a
 * running cluster, and `kill -9` → unreachable → removed as the survivors see
 * it. Defaults timings (unreachable after 3 s, down 5 s later).
 *
 * @module
 */
import { addressOf, converged, eventually, members, nodePorts, startProcessor } from "../tests/support/cluster.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";

/** Runs the membership timings `rounds` times and reports each figure's median. */
export async function benchMembership(context: BenchContext, rounds = 3): Promise<void> {
  const joins: number[] = [];
  const unreachable: number[] = [];
  const removed: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const [a, b, c] = nodePorts(3);
    const stream = { topic: uniqueTopic("bench-members"), group: uniqueTopic("bench-members-group") };
    const nodes = [startProcessor(a, [a, b], stream), startProcessor(b, [a, b], stream)];
    try {
      await converged([a, b], { [addressOf(a)]: "Up", [addressOf(b)]: "Up" });
      const started = performance.now();
      nodes.push(startProcessor(c, [a, b], stream));
      await eventually("third node Up", async () => {
        const view = await members(c);
        return view?.members.some((m) => m.node === addressOf(c) && m.status === "Up");
      }, 30_000);
      joins.push(performance.now() - started);
      await converged([a, b, c], { [addressOf(a)]: "Up", [addressOf(b)]: "Up", [addressOf(c)]: "Up" });

      const killed = performance.now();
      nodes[2].kill("SIGKILL");
      await eventually("unreachable", async () => {
        const view = await members(a);
        return view?.unreachable.some((u) => u.node === addressOf(c));
      }, 30_000);
      unreachable.push(performance.now() - killed);
      await eventually("removed", async () => {
        const view = await members(a);
        return view !== undefined && !view.members.some((m) => m.node === addressOf(c));
      }, 30_000);
      removed.push(performance.now() - killed);
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  }
  const median = (xs: number[]) => xs.sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  const detail = (xs: number[]) => ({ runs: xs.map((x) => Math.round(x)).join("/") + " ms" });
  context.report("membership: process start → Up (joining 2 nodes)", `${Math.round(median(joins))} ms`, detail(joins));
  context.report(
    "membership: kill -9 → seen unreachable",
    `${Math.round(median(unreachable))} ms`,
    detail(unreachable),
  );
  context.report("membership: kill -9 → downed and removed", `${Math.round(median(removed))} ms`, detail(removed));
}
