/**
 * What the layers above remoting say to each other. On the wire each layer
 * has its own message set (`MembershipMessage`, `ShardingMessage`,
 * `EntityMessage` in `proto/cluster.proto`), beside remoting's own handshake
 * and failures; to the code that sends and handles them a message is one
 * case of {@linkcode Body}, named by its own kind. Remoting puts a message in
 * its layer's set as it sends it and takes it out as it arrives.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { failureError, RemotingError } from "./errors.ts";
import type { NodeId } from "./node.ts";
import {
  type EntityMessage,
  EntityMessageSchema,
  type Envelope,
  type MembershipMessage,
  MembershipMessageSchema,
  type ShardingMessage,
  ShardingMessageSchema,
} from "../../proto/gen/cluster_pb.ts";

/** A message that is one of a layer's set: its kind (`case`) and its fields (`value`). */
type Named<T extends { case: string | undefined }> = Exclude<T, { case: undefined }>;

/** Joining, gossip and heartbeats. */
export type MembershipBody = Named<MembershipMessage["body"]>;
/** Regions and the coordinator: registration, homes, moves. */
export type ShardingBody = Named<ShardingMessage["body"]>;
/** Events for a shard's home, and one user's totals. */
export type EntityBody = Named<EntityMessage["body"]>;
/** A message of any layer above remoting. */
export type Body = MembershipBody | ShardingBody | EntityBody;
/** The layers above remoting. */
export type Layer = "membership" | "sharding" | "entity";

const LAYER_OF: { readonly [Kind in Body["case"]]: Layer } = {
  initJoin: "membership",
  initJoinAck: "membership",
  initJoinNack: "membership",
  join: "membership",
  welcome: "membership",
  gossip: "membership",
  heartbeat: "membership",
  heartbeatAck: "membership",
  registerRegion: "sharding",
  regionRegistered: "sharding",
  registerFirst: "sharding",
  getShardHome: "sharding",
  shardHome: "sharding",
  assignmentChanged: "sharding",
  stopShard: "sharding",
  shardStopped: "sharding",
  startShard: "sharding",
  shardStarted: "sharding",
  applyEvents: "entity",
  eventsApplied: "entity",
  getUser: "entity",
  userTotals: "entity",
  notHere: "entity",
};

/** The layer whose message set `body` belongs to. */
export function layerOf(body: Body): Layer {
  return LAYER_OF[body.case];
}

/** An envelope's body for `body`: the message in its layer's set. */
export function toWire(body: Body): Envelope["body"] {
  switch (layerOf(body)) {
    case "membership":
      return { case: "membership", value: create(MembershipMessageSchema, { body: body as MembershipBody }) };
    case "sharding":
      return { case: "sharding", value: create(ShardingMessageSchema, { body: body as ShardingBody }) };
    case "entity":
      return { case: "entity", value: create(EntityMessageSchema, { body: body as EntityBody }) };
  }
}

/**
 * The layer's message an envelope carries; `undefined` for remoting's own
 * (handshake, failure) and for a set with no message this build knows (a
 * newer node's).
 */
export function fromWire(body: Envelope["body"]): Body | undefined {
  switch (body.case) {
    case "membership":
    case "sharding":
    case "entity": {
      const inner = body.value.body;
      return inner.case === undefined ? undefined : inner;
    }
    default:
      return undefined;
  }
}

/** What a reply from `from` says: the layer's message it carries, or the failure it reports (a `RemotingError`). */
export function replyOf(from: NodeId, body: Envelope["body"]): { from: NodeId; body: Body } | RemotingError {
  if (body.case === "failure") return failureError(body.value);
  const message = fromWire(body);
  return message
    ? { from, body: message }
    : new RemotingError(`${from.address} answered with no message this node knows`);
}
