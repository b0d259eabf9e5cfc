/**
 * Membership timings on real processes: start → Up for a node joining a
 * running cluster, and `kill -9` → unreachable → removed as the survivors see
 * it. Defaults timings (unreachable after 3 s, down 5 s later).
 *
 * @module
 */
import { addressOf, converged, eventually, members, nodePorts, startNode } from "../tests/support/cluster.ts";
import type { BenchContext } from "./context.ts";

/** Runs the membership timings `rounds` times and reports each figure's median. */
export async function benchMembership(context: BenchContext, rounds = 3): Promise<void> {
  const joins: number[] = [];
  const unreachable: number[] = [];
  const removed: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const [a, b, c] = nodePorts(3);
    const nodes = [startNode(a, [a, b]), startNode(b, [a, b])];
    try {
      await converged([a, b], { [addressOf(a)]: "Up", [addressOf(b)]: "Up" });
      const started = performance.now();
      nodes.push(startNode(c, [a, b]));
      await eventually("third node ready", async () => {
        const response = await fetch(`http://127.0.0.1:${c.mgmt}/ready`).catch(() => undefined);
        await response?.body?.cancel();
        return response?.status === 200;
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
