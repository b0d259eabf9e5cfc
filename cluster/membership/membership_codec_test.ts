import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  EnvelopeSchema,
  GossipSchema,
  type GossipState as GossipProto,
  type MemberStatus as MemberStatusProto,
} from "../../proto/gen/cluster_pb.ts";
import { fromWire, toWire } from "../remoting/body.ts";
import type { NodeId } from "../remoting/node.ts";
import { EMPTY_GOSSIP, withMember, withObservation } from "./gossip.ts";
import type { MembershipMessage } from "./membership.ts";
import { membershipFromBody, membershipToBody } from "./membership_codec.ts";

const A: NodeId = { address: "10.0.0.1:2551", uid: 1796460273427001 };
const B: NodeId = { address: "10.0.0.2:2551", uid: 2 };

/** `message` as a peer receives it: encoded in an envelope, decoded, and read back. */
function sent(message: MembershipMessage): MembershipMessage | undefined {
  const envelope = create(EnvelopeSchema, { body: toWire(membershipToBody(message)) });
  const body = fromWire(fromBinary(EnvelopeSchema, toBinary(EnvelopeSchema, envelope)).body);
  return body && membershipFromBody(body);
}

Deno.test("every membership message arrives as it was sent", () => {
  const state = withObservation(
    withMember(withMember(EMPTY_GOSSIP, { node: A, status: "Up", upNumber: 1, management: "http://a" }), {
      node: B,
      status: "Leaving",
      upNumber: 2,
      management: "",
    }),
    { observer: B, version: 7, unreachable: [A] },
  );
  const messages: MembershipMessage[] = [
    { type: "initJoin" },
    { type: "initJoinAck" },
    { type: "initJoinAck", cluster: { members: 3, oldest: A.address } },
    { type: "initJoinNack" },
    { type: "join", management: "http://10.0.0.2:8558" },
    { type: "welcome", state },
    { type: "gossip", state },
    { type: "heartbeat", sequence: 41 },
    { type: "heartbeatAck", sequence: 41 },
  ];
  for (const message of messages) assert.deepEqual(sent(message), message, message.type);
});

Deno.test("a member with a status this build does not know is refused, not guessed", () => {
  const state: GossipProto = create(GossipSchema, {
    state: { members: [{ node: { address: A.address, uid: 1n }, status: 99 as MemberStatusProto, upNumber: 1 }] },
  }).state!;
  assert.throws(() => membershipFromBody({ case: "gossip", value: create(GossipSchema, { state }) }), /unknown member/);
});
