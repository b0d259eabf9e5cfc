import assert from "node:assert/strict";
import { encodeFrame, FrameDecoder, FrameError } from "./frame.ts";

const bytes = (...values: number[]) => new Uint8Array(values);

Deno.test("FrameDecoder reassembles frames split across chunks at any point", () => {
  const payloads = [bytes(1, 2, 3), bytes(), bytes(9), new Uint8Array(100_000).fill(7)];
  const stream = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  let at = 0;
  for (const p of payloads) {
    stream.set(encodeFrame(p), at);
    at += 4 + p.length;
  }
  for (const chunkSize of [1, 3, 4, 5, 1000, stream.length]) {
    const decoder = new FrameDecoder();
    const frames: Uint8Array[] = [];
    for (let i = 0; i < stream.length; i += chunkSize) frames.push(...decoder.push(stream.subarray(i, i + chunkSize)));
    assert.deepEqual(frames, payloads, `chunks of ${chunkSize}`);
    assert.equal(decoder.buffered, 0);
  }
});

Deno.test("FrameDecoder keeps a partial frame until the rest arrives", () => {
  const decoder = new FrameDecoder();
  assert.deepEqual(decoder.push(bytes(0, 0, 0, 2, 1)), []);
  assert.equal(decoder.buffered, 5);
  assert.deepEqual(decoder.push(bytes(2, 0, 0)), [bytes(1, 2)]);
  assert.equal(decoder.buffered, 2);
});

Deno.test("FrameDecoder refuses a length prefix over the limit before buffering it", () => {
  const decoder = new FrameDecoder(1024);
  assert.throws(() => decoder.push(bytes(0x7f, 0xff, 0xff, 0xff)), FrameError);
  assert.throws(() => new FrameDecoder(1024).push(bytes(0, 0, 4, 1)), /frame length 1025 exceeds the 1024-byte limit/);
});

Deno.test("encodeFrame() refuses payloads over the limit", () => {
  assert.throws(() => encodeFrame(new Uint8Array(16 * 1024 * 1024 + 1)), FrameError);
});
