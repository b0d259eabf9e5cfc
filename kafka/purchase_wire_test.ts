import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { UserPurchaseProtoSchema } from "../proto/gen/user_events_pb.ts";
import { readPurchaseFields } from "./purchase_wire.ts";

let seed = 7;
const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
const pick = <T>(xs: readonly T[]) => xs[Math.floor(random() * xs.length)];
const utf8 = new TextDecoder();
const strict = new TextDecoder("utf-8", { fatal: true });
const isUtf8 = (bytes: Uint8Array) => {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
};

const numbers = [
  0n,
  1n,
  127n,
  128n,
  300n,
  9_999n,
  2n ** 31n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n - 1n,
  -1n,
  -(2n ** 63n),
];
const strings = ["", "7", "user-42", "ünïcödé", "日本", "🚀🚀", "x".repeat(300)];

function asBigInt(value: number | bigint): bigint {
  return typeof value === "bigint" ? value : BigInt(value);
}

Deno.test("readPurchaseFields() reads what the generated code writes, for 2,000 random messages", () => {
  for (let i = 0; i < 2000; i++) {
    const message = create(UserPurchaseProtoSchema, {
      userId: pick(strings),
      product: pick(strings),
      quantity: pick(numbers),
      price: pick(numbers),
    });
    let bytes = toBinary(UserPurchaseProtoSchema, message);
    if (random() < 0.3) {
      // Unknown fields (varint, fixed64, bytes, fixed32) must be skipped.
      bytes = new Uint8Array([
        ...bytes,
        0x28,
        0x96,
        0x01,
        0x31,
        1,
        2,
        3,
        4,
        5,
        6,
        7,
        8,
        0x3a,
        2,
        9,
        9,
        0x45,
        1,
        2,
        3,
        4,
      ]);
    }
    const fields = readPurchaseFields(bytes);
    assert.ok(typeof fields !== "string", fields as string);
    assert.equal(utf8.decode(fields.userId), message.userId);
    assert.equal(utf8.decode(fields.product), message.product);
    assert.equal(asBigInt(fields.quantity), message.quantity);
    assert.equal(asBigInt(fields.price), message.price);
  }
});

Deno.test("readPurchaseFields() agrees with the generated code on 20,000 random byte strings", () => {
  for (let i = 0; i < 20_000; i++) {
    const bytes = Uint8Array.from({ length: Math.floor(random() * 24) }, () =>
      // Bias towards plausible tags so that real fields show up often.
      random() < 0.4 ? pick([0x0a, 0x12, 0x18, 0x20, 0x01, 0x02, 0x80, 0xff]) : Math.floor(random() * 256));
    const ours = readPurchaseFields(bytes);
    let reference;
    try {
      reference = fromBinary(UserPurchaseProtoSchema, bytes);
    } catch {
      reference = undefined;
    }
    if (typeof ours === "string") continue; // stricter than the reference is allowed
    if (!reference) {
      // The reference refuses invalid UTF-8 while reading; decodePurchase refuses it right after.
      assert.ok(!isUtf8(ours.userId) || !isUtf8(ours.product), `accepted what the generated code refuses: [${bytes}]`);
      continue;
    }
    assert.equal(asBigInt(ours.quantity), reference.quantity, `[${bytes}]`);
    assert.equal(asBigInt(ours.price), reference.price, `[${bytes}]`);
    assert.equal(utf8.decode(ours.userId), reference.userId, `[${bytes}]`);
  }
});

Deno.test("readPurchaseFields() explains what is wrong", () => {
  assert.match(readPurchaseFields(new Uint8Array([0x0a, 5, 1])) as string, /truncated bytes in field 1/);
  assert.match(readPurchaseFields(new Uint8Array([0x18])) as string, /truncated varint in field 3/);
  assert.match(readPurchaseFields(new Uint8Array([0x0b])) as string, /unsupported wire type 3/);
  assert.match(readPurchaseFields(new Uint8Array([0x1a, 0])) as string, /field 3 should be an integer/);
});
