/**
 * The purchase event as it travels on the topic: key = user id (UTF-8), value =
 * `UserPurchaseProto` bytes. Encoding for the producer, and decoding with the
 * checks the processor relies on (a record that fails them is skipped, not
 * retried).
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { UserPurchaseProtoSchema } from "../proto/gen/user_events_pb.ts";

/** One purchase: `quantity` items at `price` pence each. */
export interface Purchase {
  readonly userId: string;
  readonly product: string;
  readonly quantity: number;
  readonly price: number;
}

/**
 * Largest quantity or price accepted. Keeps `quantity * price` and a user's
 * running totals exact in a JavaScript number.
 */
export const MAX_AMOUNT = 1_000_000_000;

/** Encodes a purchase as the record value. */
export function encodePurchase(purchase: Purchase): Uint8Array {
  return toBinary(
    UserPurchaseProtoSchema,
    create(UserPurchaseProtoSchema, {
      userId: purchase.userId,
      product: purchase.product,
      quantity: BigInt(purchase.quantity),
      price: BigInt(purchase.price),
    }),
  );
}

/** A decoded record: the purchase, or why it was refused. */
export type DecodedPurchase =
  | { readonly ok: true; readonly purchase: Purchase }
  | { readonly ok: false; readonly reason: string };

const decoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Decodes and checks one record. The key must equal the value's user id:
 * partitioning is by key and sharding by user id, so a mismatch would put the
 * event in a partition that does not belong to its user.
 *
 * @example
 * ```ts
 * const value = encodePurchase({ userId: "7", product: "skis", quantity: 1, price: 100 });
 * decodePurchase(new TextEncoder().encode("7"), value); // { ok: true, purchase: {...} }
 * ```
 */
export function decodePurchase(key: Uint8Array | null, value: Uint8Array | null): DecodedPurchase {
  if (value === null || value.length === 0) return { ok: false, reason: "empty value" };
  let proto;
  try {
    proto = fromBinary(UserPurchaseProtoSchema, value);
  } catch (error) {
    return { ok: false, reason: `not a UserPurchaseProto (${error instanceof Error ? error.message : error})` };
  }
  if (proto.userId === "") return { ok: false, reason: "empty user id" };
  let keyText: string;
  try {
    keyText = key === null ? "" : decoder.decode(key);
  } catch {
    return { ok: false, reason: "key is not UTF-8" };
  }
  if (keyText !== proto.userId) {
    return { ok: false, reason: `key '${keyText}' differs from the value's user id '${proto.userId}'` };
  }
  if (proto.quantity < 0n || proto.quantity > BigInt(MAX_AMOUNT)) {
    return { ok: false, reason: `quantity ${proto.quantity} is outside 0..${MAX_AMOUNT}` };
  }
  if (proto.price < 0n || proto.price > BigInt(MAX_AMOUNT)) {
    return { ok: false, reason: `price ${proto.price} is outside 0..${MAX_AMOUNT}` };
  }
  return {
    ok: true,
    purchase: {
      userId: proto.userId,
      product: proto.product,
      quantity: Number(proto.quantity),
      price: Number(proto.price),
    },
  };
}
