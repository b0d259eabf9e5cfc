import assert from "node:assert/strict";
import {
  decodeStatusMessage,
  encodeMessage,
  encodeStatusMessage,
  formatTimeout,
  MAX_MESSAGE_BYTES,
  MessageReader,
  parseTimeout,
} from "./protocol.ts";
import { GrpcError, Status } from "./status.ts";

Deno.test("MessageReader reassembles messages cut anywhere, and keeps a partial one", () => {
  const messages = [Uint8Array.of(1, 2, 3), new Uint8Array(0), new Uint8Array(70_000).fill(9)];
  const wire = new Uint8Array(messages.reduce((n, m) => n + 5 + m.length, 0));
  let at = 0;
  for (const message of messages) {
    wire.set(encodeMessage(message), at);
    at += 5 + message.length;
  }
  for (const piece of [1, 4, 5, 6, 16_384, wire.length]) {
    const reader = new MessageReader();
    const got: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += piece) got.push(...reader.push(wire.subarray(i, i + piece)));
    assert.deepEqual(
      got.map((m) => [...m.subarray(0, 3), m.length]),
      messages.map((m) => [...m.subarray(0, 3), m.length]),
    );
    assert.equal(reader.pending, 0, `pieces of ${piece}`);
  }
});

Deno.test("MessageReader refuses compressed messages and messages over the limit", () => {
  assert.throws(
    () => new MessageReader().push(Uint8Array.of(1, 0, 0, 0, 1, 7)),
    (error: GrpcError) => error.code === Status.INTERNAL && /compressed/.test(error.message),
  );
  const huge = encodeMessage(new Uint8Array(0));
  new DataView(huge.buffer).setUint32(1, MAX_MESSAGE_BYTES + 1);
  assert.throws(() => new MessageReader().push(huge), (error: GrpcError) => error.code === Status.RESOURCE_EXHAUSTED);
});

Deno.test("grpc-timeout: every unit is read, malformed values are not, and what is written reads back", () => {
  assert.deepEqual(
    ["2H", "3M", "15S", "1500m", "2000u", "3000000n"].map(parseTimeout),
    [7_200_000, 180_000, 15_000, 1500, 2, 3],
  );
  for (const bad of ["", "15", "S", "-1S", "1.5S", "123456789S", "15s "]) {
    assert.equal(parseTimeout(bad), undefined, bad);
  }
  for (const ms of [1, 20, 15_000, 10 ** 9]) assert.ok(parseTimeout(formatTimeout(ms))! >= ms, `${ms}`);
});

Deno.test("grpc-message is percent-encoded UTF-8 and reads back, malformed escapes kept", () => {
  const text = 'shard 7 of user "é": 100% down\n';
  const encoded = encodeStatusMessage(text);
  assert.match(encoded, /^[\x20-\x7e]*$/);
  assert.equal(decodeStatusMessage(encoded), text);
  assert.equal(decodeStatusMessage("50%ZZ off %4"), "50%ZZ off %4");
});
