import assert from "node:assert/strict";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { PurchaseEventSchema, ShardSnapshotSchema } from "../../proto/gen/cluster_pb.ts";
import { eventsFromProto, eventsToProto, snapshotFromProto, snapshotToProto } from "./sharding_codec.ts";

Deno.test("a snapshot travels whole: its offset, and every user's totals up to the largest exact amounts", () => {
  const snapshot = {
    shard: 127,
    lastOffset: 2 ** 40,
    entities: [
      ["7", { totalPurchases: 3, amountSpent: 30 }],
      ["née-ü", { totalPurchases: 1, amountSpent: Number.MAX_SAFE_INTEGER }],
    ] as [string, { totalPurchases: number; amountSpent: number }][],
  };
  const wire = toBinary(ShardSnapshotSchema, snapshotToProto(snapshot));
  assert.deepEqual(snapshotFromProto(fromBinary(ShardSnapshotSchema, wire)), snapshot);
  const empty = { shard: 0, lastOffset: -1, entities: [] };
  assert.deepEqual(snapshotFromProto(snapshotToProto(empty)), empty, "a shard that has applied nothing");
});

Deno.test("events travel in order, each with its offset", () => {
  const events = [
    { offset: 0, userId: "1", quantity: 2, price: 999 },
    { offset: 2 ** 33, userId: "2", quantity: 1, price: 1 },
  ];
  const arrived = eventsToProto(events).map((e) => fromBinary(PurchaseEventSchema, toBinary(PurchaseEventSchema, e)));
  assert.deepEqual(eventsFromProto(arrived), events);
});
