/**
 * Membership messages to and from their protobuf form (`proto/cluster.proto`).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  GossipSchema,
  type GossipState as GossipProto,
  GossipStateSchema,
  HeartbeatAckSchema,
  HeartbeatSchema,
  InitJoinAckSchema,
  InitJoinNackSchema,
  InitJoinSchema,
  JoinSchema,
  MemberStatus as StatusProto,
  WelcomeSchema,
} from "../../proto/gen/cluster_pb.ts";
import type { GossipState, Observation } from "./gossip.ts";
import { type Member, type MemberStatus } from "./members.ts";
import { nodeFromProto, nodeToProto } from "../remoting/node.ts";
import type { MembershipMessage } from "./membership.ts";
import type { Body } from "../remoting/transport.ts";

const STATUS_TO_PROTO: Record<MemberStatus, StatusProto> = {
  Joining: StatusProto.JOINING,
  Up: StatusProto.UP,
  Leaving: StatusProto.LEAVING,
  Exiting: StatusProto.EXITING,
  Down: StatusProto.DOWN,
  Removed: StatusProto.REMOVED,
};

const STATUS_FROM_PROTO = new Map<StatusProto, MemberStatus>(
  Object.entries(STATUS_TO_PROTO).map(([status, proto]) => [proto, status as MemberStatus]),
);

function gossipToProto(state: GossipState): GossipProto {
  return create(GossipStateSchema, {
    members: [...state.members.values()].map((m) => ({
      node: nodeToProto(m.node),
      status: STATUS_TO_PROTO[m.status],
      upNumber: m.upNumber,
      management: m.management,
    })),
    observations: [...state.observations.values()].map((o) => ({
      observer: nodeToProto(o.observer),
      version: BigInt(o.version),
      unreachable: o.unreachable.map(nodeToProto),
    })),
  });
}

function gossipFromProto(proto: GossipProto | undefined): GossipState {
  if (!proto) throw new Error("gossip without a state");
  const members = new Map<string, Member>();
  for (const m of proto.members) {
    const status = STATUS_FROM_PROTO.get(m.status);
    if (!status) throw new Error(`unknown member status ${m.status}`);
    const node = nodeFromProto(m.node);
    members.set(node.address, { node, status, upNumber: m.upNumber, management: m.management });
  }
  const observations = new Map<string, Observation>();
  for (const o of proto.observations) {
    const observer = nodeFromProto(o.observer);
    observations.set(observer.address, {
      observer,
      version: Number(o.version),
      unreachable: o.unreachable.map(nodeFromProto),
    });
  }
  return { members, observations };
}

/** The envelope body for a membership message. */
export function membershipToBody(message: MembershipMessage): Body {
  switch (message.type) {
    case "initJoin":
      return { case: "initJoin", value: create(InitJoinSchema) };
    case "initJoinAck":
      return { case: "initJoinAck", value: create(InitJoinAckSchema, message.cluster ?? {}) };
    case "initJoinNack":
      return { case: "initJoinNack", value: create(InitJoinNackSchema) };
    case "join":
      return { case: "join", value: create(JoinSchema, { management: message.management }) };
    case "welcome":
      return { case: "welcome", value: create(WelcomeSchema, { state: gossipToProto(message.state) }) };
    case "gossip":
      return { case: "gossip", value: create(GossipSchema, { state: gossipToProto(message.state) }) };
    case "heartbeat":
      return { case: "heartbeat", value: create(HeartbeatSchema, { sequence: message.sequence }) };
    case "heartbeatAck":
      return { case: "heartbeatAck", value: create(HeartbeatAckSchema, { sequence: message.sequence }) };
  }
}

/**
 * The membership message in an envelope body, `undefined` when the body is
 * about something else; throws for a membership body that does not make sense.
 */
export function membershipFromBody(body: Body): MembershipMessage | undefined {
  switch (body.case) {
    case "initJoin":
      return { type: "initJoin" };
    case "initJoinAck": {
      const { members, oldest } = body.value;
      return members > 0 ? { type: "initJoinAck", cluster: { members, oldest } } : { type: "initJoinAck" };
    }
    case "initJoinNack":
      return { type: "initJoinNack" };
    case "join":
      return { type: "join", management: body.value.management };
    case "welcome":
      return { type: "welcome", state: gossipFromProto(body.value.state) };
    case "gossip":
      return { type: "gossip", state: gossipFromProto(body.value.state) };
    case "heartbeat":
      return { type: "heartbeat", sequence: body.value.sequence };
    case "heartbeatAck":
      return { type: "heartbeatAck", sequence: body.value.sequence };
    default:
      return undefined;
  }
}
