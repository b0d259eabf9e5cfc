/**
 * A fast reader for the one message on the per-event path, `UserPurchaseProto`
 * (`proto/user_events.proto`): four fields, read straight off the protobuf
 * wire format without the generated code's reflection. The generated code
 * stays the reference; `purchase_wire_test.ts` checks this reader against it.
 *
 * @module
 */

/** The raw fields of a `UserPurchaseProto`. Numbers are exact; bigint only when beyond 2^53. */
export interface PurchaseFields {
  readonly userId: Uint8Array;
  readonly product: Uint8Array;
  readonly quantity: number | bigint;
  readonly price: number | bigint;
}

const EMPTY: Uint8Array = new Uint8Array(0);

/**
 * Reads the fields of a `UserPurchaseProto`, or says why the bytes are not one.
 * Unknown fields are skipped, as protobuf requires; a later occurrence of a
 * field replaces an earlier one.
 *
 * @example
 * ```ts
 * readPurchaseFields(new Uint8Array([0x0a, 1, 0x37, 0x18, 2])); // { userId: "7" as bytes, quantity: 2, ... }
 * ```
 */
export function readPurchaseFields(bytes: Uint8Array): PurchaseFields | string {
  let userId = EMPTY;
  let product = EMPTY;
  let quantity: number | bigint = 0;
  let price: number | bigint = 0;
  let pos = 0;
  const end = bytes.length;

  // Returns the varint at `pos` as a number when it fits in 2^53, else a signed 64-bit bigint.
  const varint = (): number | bigint | undefined => {
    let value = 0;
    for (let shift = 0, i = 0; i < 7; i++, shift += 7) {
      if (pos >= end) return undefined;
      const b = bytes[pos++];
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return value;
    }
    let big = BigInt(value);
    for (let shift = 49n, i = 7; i < 10; i++, shift += 7n) {
      if (pos >= end) return undefined;
      const b = bytes[pos++];
      big |= BigInt(b & 0x7f) << shift;
      if (b < 0x80) return BigInt.asIntN(64, big);
    }
    return undefined;
  };

  while (pos < end) {
    const tag = varint();
    if (typeof tag !== "number" || tag > 0xffffffff) return "truncated or oversized field tag";
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) return "field number 0";
    if (wireType === 0) {
      const value = varint();
      if (value === undefined) return `truncated varint in field ${field}`;
      if (field === 3) quantity = value;
      else if (field === 4) price = value;
      else if (field === 1 || field === 2) return `field ${field} should be a string`;
    } else if (wireType === 2) {
      const length = varint();
      if (typeof length !== "number" || pos + length > end) return `truncated bytes in field ${field}`;
      const value = bytes.subarray(pos, pos + length);
      pos += length;
      if (field === 1) userId = value;
      else if (field === 2) product = value;
      else if (field === 3 || field === 4) return `field ${field} should be an integer`;
    } else if (wireType === 1 || wireType === 5) {
      pos += wireType === 1 ? 8 : 4;
      if (pos > end) return `truncated fixed-width field ${field}`;
      if (field >= 1 && field <= 4) return `field ${field} has the wrong wire type`;
    } else {
      return `unsupported wire type ${wireType} in field ${field}`;
    }
  }
  return { userId, product, quantity, price };
}
