/**
 * The purchase event as it travels on the topic: key = user id (UTF-8), value =
 * `UserPurchaseProto` bytes. Encoding for the producer, and decoding with the
 * checks the processor relies on (a record that fails them is skipped, not
 * retried).
 *
 * @module
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { UserPurchaseProtoSchema } from "../proto/gen/user_events_pb.ts";
import { readPurchaseFields } from "./purchase_wire.ts";

/** One purchase: `quantity` items at `price` pence each. */
export interface Purchase {
  readonly userId: string;
  readonly product: string;
  readonly quantity: number;
  readonly price: number;
}

/** Largest quantity or price accepted. */
export const MAX_AMOUNT = 1_000_000_000;

/**
 * Largest `quantity * price` of one purchase (about 1.1e12 pence). Below it
 * the product is exact in a JavaScript number, and a user's running total
 * stays exact for thousands of the largest purchases (see `applyPurchase`).
 */
export const MAX_PURCHASE_AMOUNT = 2 ** 40;

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

/**
 * Why a record was skipped, in a word fit for a metric label: no purchase in
 * it (`undecodable`), one outside the limits (`invalid`), a key that is not
 * its user id (`key_mismatch`), or a user that hashes to another partition
 * (`wrong_partition`, which only the consumer can tell).
 */
export const MALFORMED_KINDS = ["undecodable", "invalid", "key_mismatch", "wrong_partition"] as const;

/** One of {@linkcode MALFORMED_KINDS}. */
export type MalformedKind = typeof MALFORMED_KINDS[number];

/** A decoded record: the purchase, or why it was refused (in words, and as a kind). */
export type DecodedPurchase =
  | { readonly ok: true; readonly purchase: Purchase }
  | { readonly ok: false; readonly reason: string; readonly kind: Exclude<MalformedKind, "wrong_partition"> };

const strict = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder("utf-8");

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
  if (value === null || value.length === 0) return { ok: false, reason: "empty value", kind: "undecodable" };
  const fields = readPurchaseFields(value);
  if (typeof fields === "string") {
    return { ok: false, reason: `not a UserPurchaseProto (${fields})`, kind: "undecodable" };
  }
  if (fields.userId.length === 0) return { ok: false, reason: "empty user id", kind: "invalid" };
  let userId: string;
  let product: string;
  try {
    userId = utf8String(fields.userId);
    product = utf8String(fields.product);
  } catch {
    return { ok: false, reason: "not a UserPurchaseProto (a string field is not UTF-8)", kind: "undecodable" };
  }
  if (key === null || !sameBytes(key, fields.userId)) {
    if (key !== null && !isUtf8(key)) return { ok: false, reason: "key is not UTF-8", kind: "key_mismatch" };
    const keyText = key === null ? "" : lenient.decode(key);
    return { ok: false, reason: `key '${keyText}' differs from the value's user id '${userId}'`, kind: "key_mismatch" };
  }
  const { quantity, price } = fields;
  if (quantity < 0 || quantity > MAX_AMOUNT) {
    return { ok: false, reason: `quantity ${quantity} is outside 0..${MAX_AMOUNT}`, kind: "invalid" };
  }
  if (price < 0 || price > MAX_AMOUNT) {
    return { ok: false, reason: `price ${price} is outside 0..${MAX_AMOUNT}`, kind: "invalid" };
  }
  const purchase = { userId, product, quantity: Number(quantity), price: Number(price) };
  if (purchase.quantity * purchase.price > MAX_PURCHASE_AMOUNT) {
    return {
      ok: false,
      reason: `quantity × price ${quantity}×${price} is above ${MAX_PURCHASE_AMOUNT}`,
      kind: "invalid",
    };
  }
  return { ok: true, purchase };
}

/**
 * UTF-8 bytes as a string, strictly (invalid UTF-8 throws). Short ASCII, the
 * common case for ids and product names, skips TextDecoder, whose call costs
 * more than the whole rest of decoding an event.
 */
function utf8String(bytes: Uint8Array): string {
  if (bytes.length <= 64) {
    let ascii = true;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes as unknown as number[]);
  }
  return strict.decode(bytes);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
}
