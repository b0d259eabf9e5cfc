import assert from "node:assert/strict";
import type { NodeId } from "../remoting/node.ts";
import {
  EMPTY_GOSSIP,
  type GossipState,
  isMember,
  leaderOf,
  mergeMember,
  oldestOf,
  reachabilityOf,
  withMember,
  withObservation,
  withoutIncarnations,
} from "./gossip.ts";
import type { Member, MemberStatus } from "./members.ts";

const A: NodeId = { address: "10.0.0.1:2551", uid: 1 };
const B: NodeId = { address: "10.0.0.2:2551", uid: 2 };
const C: NodeId = { address: "10.0.0.3:2551", uid: 3 };

const member = (node: NodeId, status: MemberStatus, upNumber = 0): Member => ({
  node,
  status,
  upNumber,
  management: "",
});

/** A view of `members`, and of what each observer reports unreachable. */
function view(members: readonly Member[], reports: readonly [NodeId, NodeId[]][] = []): GossipState {
  let state = EMPTY_GOSSIP;
  for (const m of members) state = withMember(state, m);
  for (const [observer, unreachable] of reports) state = withObservation(state, { observer, version: 1, unreachable });
  return state;
}

const threeUp = [member(A, "Up", 1), member(B, "Up", 2), member(C, "Up", 3)];

Deno.test("of two entries for one address the newer incarnation wins, and for one incarnation the later status", () => {
  const cases: [Member, Member, Member][] = [
    [member(A, "Up", 1), member({ ...A, uid: 9 }, "Joining"), member({ ...A, uid: 9 }, "Joining")],
    [member(A, "Up", 1), member(A, "Leaving", 1), member(A, "Leaving", 1)],
    [member(A, "Down", 1), member(A, "Up", 1), member(A, "Down", 1)],
    [member(A, "Up", 3), member(A, "Up", 2), member(A, "Up", 2)],
  ];
  for (const [a, b, merged] of cases) {
    assert.deepEqual(mergeMember(a, b), merged, `${a.status}#${a.node.uid} + ${b.status}#${b.node.uid}`);
    assert.deepEqual(mergeMember(b, a), merged, "in either order");
  }
});

Deno.test("reachability as a viewer sees it: only reports of observers it hears count", () => {
  // A and B report C; C (which A does not hear) reports A: that report is not trusted by A.
  const state = view(threeUp, [[A, [C]], [B, [C]], [C, [A]]]);
  const seen = reachabilityOf(state, A);
  assert.deepEqual([...seen.unreachable.keys()], [C.address]);
  assert.deepEqual(seen.downable.map((m) => m.node), [C], "both others agree C is gone");
  assert.equal(seen.quorum, true, "A hears itself and B: two of three");
});

Deno.test("a link cut one way gets nobody downed while the others hear both ends", () => {
  // Only B reports C; A hears C.
  const seen = reachabilityOf(view(threeUp, [[B, [C]]]), A);
  assert.deepEqual(seen.downable, [], "one of the two other observers is no majority");
});

Deno.test("a member that hears nobody has no quorum", () => {
  assert.equal(reachabilityOf(view(threeUp, [[A, [B, C]]]), A).quorum, false);
  assert.equal(reachabilityOf(view(threeUp.slice(0, 2), [[A, [B]]]), A).quorum, true, "half of two is enough");
});

Deno.test("the leader: the lowest address the viewer can reach among Up members, else a Joining one", () => {
  assert.deepEqual(leaderOf(view(threeUp), C)?.node, A);
  assert.deepEqual(leaderOf(view(threeUp, [[C, [A]], [B, [A]]]), C)?.node, B, "A unreachable: B leads");
  const joiningOnly = view([member(A, "Down", 1), member(B, "Joining"), member(C, "Joining")]);
  assert.deepEqual(leaderOf(joiningOnly, C)?.node, B, "no Up member left: a Joining one moves the others Up");
});

Deno.test("the oldest: the lowest up-number among Up and Leaving members, whatever the addresses", () => {
  const state = view([member(A, "Up", 3), member(B, "Leaving", 1), member(C, "Up", 2)]);
  assert.deepEqual(oldestOf(state)?.node, B);
  assert.deepEqual(oldestOf(view([member(A, "Joining"), member(B, "Down", 1)])), undefined, "none Up or Leaving");
});

Deno.test("membership of an incarnation, and incarnations dropped from a view", () => {
  const state = view([member(A, "Up", 1), member(B, "Down", 2)]);
  assert.equal(isMember(state, A), true);
  assert.equal(isMember(state, { ...A, uid: 7 }), false, "another incarnation at the address");
  assert.equal(isMember(state, B), false, "downed");
  const without = withoutIncarnations(state, (node) => node.uid === B.uid);
  assert.deepEqual([...without.members.keys()], [A.address]);
});
