/**
 * Node incarnations: who a message is from and for. An address alone is not
 * enough: a node restarted at the same port is another incarnation, with a
 * higher uid, and work meant for its previous life must not reach it.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Node as NodeProto, NodeSchema } from "../../proto/gen/cluster_pb.ts";

/** A node incarnation: its `host:port` remoting address and the uid it picked at start. */
export interface NodeId {
  readonly address: string;
  readonly uid: number;
}

/**
 * A fresh incarnation uid: milliseconds since the epoch times 1000 plus a
 * random tail, so a restarted node's uid is higher than its previous one's
 * and still exact in a JavaScript number.
 */
export function newUid(now: number = Date.now(), random: () => number = Math.random): number {
  return now * 1000 + Math.floor(random() * 1000);
}

/** `host:port` split into its parts. */
export function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
}

/**
 * Address order used for the leader: host, then port as a number.
 *
 * @example
 * ```ts
 * ["127.0.0.1:10000", "127.0.0.1:2552"].sort(compareAddresses); // ["127.0.0.1:2552", "127.0.0.1:10000"]
 * ```
 */
export function compareAddresses(a: string, b: string): number {
  const x = splitAddress(a);
  const y = splitAddress(b);
  return x.host < y.host ? -1 : x.host > y.host ? 1 : x.port - y.port;
}

/** Whether two ids name the same incarnation. */
export function sameNode(a: NodeId, b: NodeId): boolean {
  return a.address === b.address && a.uid === b.uid;
}

/** `address#uid`, for logs and map keys. */
export function nodeKey(node: NodeId): string {
  return `${node.address}#${node.uid}`;
}

/** A node id in protobuf form. */
export function nodeToProto(node: NodeId): NodeProto {
  return create(NodeSchema, { address: node.address, uid: BigInt(node.uid) });
}

/** A node id from protobuf form. */
export function nodeFromProto(node: NodeProto | undefined): NodeId {
  if (!node || node.address === "") throw new Error("missing node");
  return { address: node.address, uid: Number(node.uid) };
}
