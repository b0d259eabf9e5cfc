/**
 * Shard snapshots and purchase events to and from their protobuf form.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type PurchaseEvent as PurchaseEventProto,
  PurchaseEventSchema,
  type ShardSnapshot as ShardSnapshotProto,
  ShardSnapshotSchema,
} from "../../proto/gen/cluster_pb.ts";
import type { PurchaseEvent } from "./entity.ts";
import type { ShardSnapshot } from "./shard.ts";

/** A snapshot in protobuf form. */
export function snapshotToProto(snapshot: ShardSnapshot): ShardSnapshotProto {
  return create(ShardSnapshotSchema, {
    shard: snapshot.shard,
    lastOffset: BigInt(snapshot.lastOffset),
    entities: snapshot.entities.map(([userId, totals]) => ({
      userId,
      totalPurchases: BigInt(totals.totalPurchases),
      amountSpent: BigInt(totals.amountSpent),
    })),
  });
}

/** A snapshot from protobuf form. */
export function snapshotFromProto(proto: ShardSnapshotProto): ShardSnapshot {
  return {
    shard: proto.shard,
    lastOffset: Number(proto.lastOffset),
    entities: proto.entities.map((e) => [
      e.userId,
      { totalPurchases: Number(e.totalPurchases), amountSpent: Number(e.amountSpent) },
    ]),
  };
}

/** Events in protobuf form. */
export function eventsToProto(events: readonly PurchaseEvent[]): PurchaseEventProto[] {
  return events.map((e) =>
    create(PurchaseEventSchema, {
      offset: BigInt(e.offset),
      userId: e.userId,
      quantity: BigInt(e.quantity),
      price: BigInt(e.price),
    })
  );
}

/** Events from protobuf form. */
export function eventsFromProto(events: readonly PurchaseEventProto[]): PurchaseEvent[] {
  return events.map((e) => ({
    offset: Number(e.offset),
    userId: e.userId,
    quantity: Number(e.quantity),
    price: Number(e.price),
  }));
}
