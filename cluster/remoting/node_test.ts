import assert from "node:assert/strict";
import { compareAddresses, newUid, nodeFromProto, nodeKey, nodeToProto, sameNode, splitAddress } from "./node.ts";

Deno.test("addresses: split at the last colon, ordered by host and then by port as a number", () => {
  assert.deepEqual(splitAddress("127.0.0.1:2551"), { host: "127.0.0.1", port: 2551 });
  assert.deepEqual(splitAddress("::1:2551"), { host: "::1", port: 2551 });
  assert.deepEqual(
    ["127.0.0.1:10000", "127.0.0.2:1", "127.0.0.1:2552"].sort(compareAddresses),
    ["127.0.0.1:2552", "127.0.0.1:10000", "127.0.0.2:1"],
  );
});

Deno.test("an incarnation is its address and uid: a restart at the address is another node", () => {
  const first = { address: "10.0.0.1:2551", uid: newUid(1_000, () => 0.25) };
  const restarted = { address: first.address, uid: newUid(2_000, () => 0.25) };
  assert.equal(first.uid, 1_000_250);
  assert.ok(restarted.uid > first.uid, "a later start has a larger uid");
  assert.equal(sameNode(first, { ...first }), true);
  assert.equal(sameNode(first, restarted), false);
  assert.notEqual(nodeKey(first), nodeKey(restarted));
  assert.deepEqual(nodeFromProto(nodeToProto(first)), first);
  assert.throws(() => nodeFromProto(undefined), /missing node/);
});
