import assert from "node:assert/strict";
import {
  decodeOwnership,
  encodeOwnership,
  type MemberClaim,
  stickyAssignment,
  stickyPartitionsAssigner,
} from "./sticky_assignor.ts";

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** Partitions that leave a member that claimed them. */
function moved(claims: readonly MemberClaim[], assignment: Map<string, number[]>): number {
  return claims.reduce((sum, c) => sum + c.owned.filter((p) => !assignment.get(c.memberId)!.includes(p)).length, 0);
}

Deno.test("a new group gets contiguous, balanced ranges", () => {
  const assignment = stickyAssignment(range(7), [{ memberId: "b", owned: [] }, { memberId: "a", owned: [] }]);
  assert.deepEqual(assignment.get("a"), [0, 1, 2, 3]);
  assert.deepEqual(assignment.get("b"), [4, 5, 6]);
});

Deno.test("a third member takes a third of 128 partitions and nothing else moves", () => {
  const two = stickyAssignment(range(128), [{ memberId: "a", owned: [] }, { memberId: "b", owned: [] }]);
  const claims = [
    { memberId: "a", owned: two.get("a")! },
    { memberId: "b", owned: two.get("b")! },
    { memberId: "c", owned: [] },
  ];
  const three = stickyAssignment(range(128), claims);
  assert.deepEqual([...three.values()].map((p) => p.length), [43, 43, 42]);
  assert.equal(moved(claims, three), 42);
  for (const id of ["a", "b"]) assert.ok(three.get(id)!.every((p) => two.get(id)!.includes(p)));
});

Deno.test("a member leaving: its partitions are shared out, the others keep theirs", () => {
  const claims = [
    { memberId: "a", owned: [0, 1, 2, 3] },
    { memberId: "b", owned: [4, 5, 6, 7] },
  ];
  const after = stickyAssignment(range(12), claims);
  assert.equal(moved(claims, after), 0);
  assert.deepEqual(after.get("a"), [0, 1, 2, 3, 8, 9]);
  assert.deepEqual(after.get("b"), [4, 5, 6, 7, 10, 11]);
});

Deno.test("stale claims: a partition claimed twice goes to the first member, unknown partitions are dropped", () => {
  const after = stickyAssignment(range(4), [
    { memberId: "b", owned: [1, 2, 9] },
    { memberId: "a", owned: [1] },
  ]);
  assert.deepEqual(after.get("a"), [0, 1]);
  assert.deepEqual(after.get("b"), [2, 3]);
});

Deno.test("more members than partitions: some get none", () => {
  const after = stickyAssignment(range(2), [
    { memberId: "a", owned: [] },
    { memberId: "b", owned: [1] },
    { memberId: "c", owned: [] },
  ]);
  assert.deepEqual([after.get("a"), after.get("b"), after.get("c")], [[0], [1], []]);
});

Deno.test("random claims: every partition once, balanced, and only the excess over each quota moves", () => {
  let seed = 7;
  const next = (n: number) => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) % n;
  for (let round = 0; round < 500; round++) {
    const partitions = range(1 + next(40));
    const claims = range(1 + next(6)).map((i) => ({
      memberId: `m${i}`,
      owned: partitions.filter(() => next(3) === 0),
    }));
    const assignment = stickyAssignment(partitions, claims);
    const all = [...assignment.values()].flat().sort((a, b) => a - b);
    assert.deepEqual(all, partitions, `round ${round}: every partition exactly once`);
    const sizes = [...assignment.values()].map((p) => p.length);
    assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `round ${round}: sizes ${sizes}`);
    // A partition stays unless it was claimed twice or its holder is over quota.
    const firstClaims = new Map<number, string>();
    for (const c of [...claims].reverse()) for (const p of c.owned) firstClaims.set(p, c.memberId);
    const kept = claims.map((c) => [...firstClaims].filter(([, m]) => m === c.memberId).length);
    const staying = [...assignment].reduce(
      (sum, [id, ps]) => sum + ps.filter((p) => firstClaims.get(p) === id).length,
      0,
    );
    const quotas = [...sizes].sort((a, b) => b - a);
    const best = [...kept].sort((a, b) => b - a).reduce((sum, k, i) => sum + Math.min(k, quotas[i]), 0);
    assert.equal(staying, best, `round ${round}: as many stay as balance allows`);
  }
});

Deno.test("ownership survives the join metadata, and garbage there reads as owning nothing", () => {
  assert.deepEqual(decodeOwnership(encodeOwnership({ "user-events": [3, 1] })), { "user-events": [3, 1] });
  assert.deepEqual(decodeOwnership(new TextEncoder().encode("not json")), {});
  assert.deepEqual(decodeOwnership(new TextEncoder().encode("[1,2]")), {});
  assert.deepEqual(decodeOwnership(new TextEncoder().encode('{"t":[1,-2,"x",1.5]}')), { t: [1] });
  assert.deepEqual(decodeOwnership(undefined), {});
});

Deno.test("the group leader's assigner reads each member's claim from its join metadata", () => {
  const metadata = {
    id: "cluster",
    brokers: new Map(),
    controllerId: 1,
    lastUpdate: 0,
    topics: new Map([["purchases", { id: "t", partitions: [], partitionsCount: 6, lastUpdate: 0 }]]),
  };
  const members = new Map([
    ["a", { memberId: "a", version: 1, metadata: encodeOwnership({ purchases: [0, 1, 2, 3, 4, 5] }) }],
    ["b", { memberId: "b", version: 1, metadata: encodeOwnership({}) }],
  ]);
  const assigned = stickyPartitionsAssigner("a", members, new Set(["purchases"]), metadata);
  assert.deepEqual(
    assigned.map((m) => [m.memberId, m.assignments.get("purchases")?.partitions]),
    [["a", [0, 1, 2]], ["b", [3, 4, 5]]],
  );
});
