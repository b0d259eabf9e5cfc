import assert from "node:assert/strict";
import { leastLoaded, type ShardSituation, targetOf } from "./allocation.ts";
import type { NodeId } from "../remoting/node.ts";

const a: NodeId = { address: "127.0.0.1:2551", uid: 1 };
const b: NodeId = { address: "127.0.0.1:2552", uid: 2 };
const c: NodeId = { address: "127.0.0.1:2553", uid: 3 };

/** The least loaded node is `c`, or `b` when `c` is left out. */
const least = (except?: NodeId) => (except === c ? b : c);

Deno.test("where a shard goes, case by case", () => {
  const cases: [string, ShardSituation, NodeId | undefined][] = [
    ["nowhere, to its partition's consumer", { desired: a, mayStart: true, orphaned: false }, a],
    ["nowhere, not before every region has registered", { desired: a, mayStart: false, orphaned: true }, undefined],
    ["nowhere with no consumer, and state held: the least loaded", { mayStart: true, orphaned: true }, c],
    ["nowhere with no consumer and nothing held: waits for one", { mayStart: true, orphaned: false }, undefined],
    ["running on its consumer: stays", { home: a, desired: a, mayStart: true, orphaned: false }, undefined],
    ["running elsewhere: follows its consumer", { home: b, desired: a, mayStart: true, orphaned: false }, a],
    ["running with no consumer: stays", { home: b, mayStart: true, orphaned: false }, undefined],
    ["on a leaving node: follows its consumer at once", {
      home: b,
      desired: a,
      homeLeaving: "waiting",
      mayStart: true,
      orphaned: false,
    }, a],
    ["on a leaving node with no consumer yet: waits for Kafka", {
      home: b,
      homeLeaving: "waiting",
      mayStart: true,
      orphaned: false,
    }, undefined],
    ["on a leaving node after the grace: the least loaded other node", {
      home: c,
      homeLeaving: "graceOver",
      mayStart: true,
      orphaned: false,
    }, b],
  ];
  for (const [what, situation, expected] of cases) assert.equal(targetOf(situation, least), expected, what);
});

Deno.test("the least loaded node: fewest shards, ties to the lowest address, never the one left out", () => {
  const load = new Map([[a.address, 3], [b.address, 1], [c.address, 1]]);
  const of = (node: NodeId) => load.get(node.address)!;
  assert.equal(leastLoaded([a, b, c], of), b);
  assert.equal(leastLoaded([c, b, a], of), b, "order does not matter");
  assert.equal(leastLoaded([a, b, c], of, b), c);
  assert.equal(leastLoaded([a], of, a), undefined);
  assert.equal(leastLoaded([], of), undefined);
});
