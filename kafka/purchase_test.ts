import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { UserPurchaseProtoSchema } from "../proto/gen/user_events_pb.ts";
import { decodePurchase, encodePurchase, MALFORMED_KINDS, type MalformedKind, MAX_AMOUNT } from "./purchase.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);
const proto = (fields: { userId?: string; product?: string; quantity?: bigint; price?: bigint }) =>
  toBinary(UserPurchaseProtoSchema, create(UserPurchaseProtoSchema, fields));

Deno.test("decodePurchase() reads back what encodePurchase() wrote, ASCII or not", () => {
  for (const [userId, product] of [["7", "skis"], ["ünïcödé-用户", "🧗 climbing shoes"], ["x".repeat(100), "rope"]]) {
    const purchase = { userId, product, quantity: 2, price: 1548 };
    assert.deepEqual(decodePurchase(utf8(userId), encodePurchase(purchase)), { ok: true, purchase });
  }
});

Deno.test("encodePurchase() writes the sample's wire format (field numbers 1-4)", () => {
  const bytes = encodePurchase({ userId: "7", product: "rope", quantity: 3, price: 200 });
  // 0a 01 '7' | 12 04 'rope' | 18 03 | 20 c8 01
  assert.deepEqual([...bytes], [0x0a, 1, 0x37, 0x12, 4, 0x72, 0x6f, 0x70, 0x65, 0x18, 3, 0x20, 0xc8, 0x01]);
});

Deno.test("decodePurchase() refuses malformed records with a reason and its kind", () => {
  const cases: [Uint8Array | null, Uint8Array | null, RegExp, MalformedKind][] = [
    [utf8("7"), null, /empty value/, "undecodable"],
    [utf8("7"), utf8("not protobuf at all \u00ff"), /not a UserPurchaseProto/, "undecodable"],
    [utf8("7"), new Uint8Array([0x0a, 1, 0x37, 0x12, 1, 0xff]), /a string field is not UTF-8/, "undecodable"],
    [utf8(""), proto({ product: "skis", quantity: 1n, price: 1n }), /empty user id/, "invalid"],
    [
      utf8("8"),
      proto({ userId: "7", quantity: 1n, price: 1n }),
      /key '8' differs from the value's user id '7'/,
      "key_mismatch",
    ],
    [null, proto({ userId: "7", quantity: 1n, price: 1n }), /key '' differs/, "key_mismatch"],
    [utf8("7"), proto({ userId: "7", quantity: -1n, price: 1n }), /quantity -1 is outside/, "invalid"],
    [utf8("7"), proto({ userId: "7", quantity: 1n, price: -5n }), /price -5 is outside/, "invalid"],
    [
      utf8("7"),
      proto({ userId: "7", quantity: BigInt(MAX_AMOUNT) + 1n, price: 1n }),
      /quantity .* is outside/,
      "invalid",
    ],
    [
      utf8("7"),
      proto({ userId: "7", quantity: 2n ** 20n, price: 2n ** 20n + 1n }),
      /quantity × price .* is above/,
      "invalid",
    ],
    [new Uint8Array([0xff]), proto({ userId: "7" }), /key is not UTF-8/, "key_mismatch"],
  ];
  for (const [key, value, reason, kind] of cases) {
    const decoded = decodePurchase(key, value);
    assert.equal(decoded.ok, false);
    if (!decoded.ok) {
      assert.match(decoded.reason, reason);
      assert.equal(decoded.kind, kind, decoded.reason);
      assert.ok(MALFORMED_KINDS.includes(decoded.kind));
    }
  }
});
