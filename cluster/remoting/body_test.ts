import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  EnvelopeSchema,
  FailureSchema,
  GetUserSchema,
  GossipSchema,
  MembershipMessageSchema,
  StartShardSchema,
} from "../../proto/gen/cluster_pb.ts";
import { type Body, fromWire, layerOf, toWire } from "./body.ts";

/** `body` sent in an envelope, encoded and decoded as on the wire, and taken out again. */
function overTheWire(body: Body): { layer: string | undefined; body: Body | undefined } {
  const envelope = fromBinary(EnvelopeSchema, toBinary(EnvelopeSchema, create(EnvelopeSchema, { body: toWire(body) })));
  return { layer: envelope.body.case, body: fromWire(envelope.body) };
}

Deno.test("each layer's message travels in its own set and comes out as it went in", () => {
  const cases: [Body, string][] = [
    [{ case: "gossip", value: create(GossipSchema) }, "membership"],
    [{ case: "startShard", value: create(StartShardSchema, { shard: 7, epoch: 3n }) }, "sharding"],
    [{ case: "getUser", value: create(GetUserSchema, { userId: "42", shard: 1 }) }, "entity"],
  ];
  for (const [body, layer] of cases) {
    assert.equal(layerOf(body), layer);
    const arrived = overTheWire(body);
    assert.equal(arrived.layer, layer, `${body.case} in the ${layer} set`);
    assert.deepEqual(arrived.body, body);
  }
});

Deno.test("remoting's own messages, and a layer's set with nothing this build knows, are no layer's message", () => {
  assert.equal(fromWire({ case: "failure", value: create(FailureSchema, { message: "refused" }) }), undefined);
  assert.equal(fromWire({ case: "membership", value: create(MembershipMessageSchema) }), undefined, "an empty set");
  assert.equal(fromWire({ case: undefined }), undefined);
});
