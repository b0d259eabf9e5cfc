import assert from "node:assert/strict";
import { encodeHeaders, HpackDecoder, HpackError } from "./hpack.ts";

const hex = (text: string) => Uint8Array.from(text.match(/../g)!.map((b) => parseInt(b, 16)));

Deno.test("HpackDecoder decodes RFC 7541 C.3: requests without Huffman, sharing a dynamic table", () => {
  const decoder = new HpackDecoder(4096, 16_384);
  assert.deepEqual(decoder.decode(hex("828684410f7777772e6578616d706c652e636f6d")).headers, [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  assert.deepEqual(decoder.decode(hex("828684be58086e6f2d6361636865")).headers, [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  assert.deepEqual(decoder.decode(hex("828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565")).headers, [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ]);
});

Deno.test("HpackDecoder decodes RFC 7541 C.4: the same requests with Huffman-coded strings", () => {
  const decoder = new HpackDecoder(4096, 16_384);
  decoder.decode(hex("828684418cf1e3c2e5f23a6ba0ab90f4ff"));
  decoder.decode(hex("828684be5886a8eb10649cbf"));
  assert.deepEqual(decoder.decode(hex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf")).headers, [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ]);
});

Deno.test("HpackDecoder follows another encoder's table size update and evictions (Python's hpack, 256 bytes)", () => {
  const decoder = new HpackDecoder(4096, 16_384);
  const location = ["location", "https://www.example.com"];
  assert.deepEqual(
    decoder.decode(
      hex(
        "3fe101488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
      ),
    ).headers,
    [[":status", "302"], ["cache-control", "private"], ["date", "Mon, 21 Oct 2013 20:13:21 GMT"], location],
  );
  // ":status: 307" evicts ":status: 302"; the rest comes from the table.
  assert.deepEqual(decoder.decode(hex("4883640effc1c0bf")).headers, [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
    location,
  ]);
  assert.deepEqual(
    decoder.decode(
      hex(
        "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
      ),
    ).headers,
    [
      [":status", "200"],
      ["cache-control", "private"],
      ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
      location,
      ["content-encoding", "gzip"],
      ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
    ],
  );
});

Deno.test("HpackDecoder refuses blocks that cannot be decoded, each with its reason", () => {
  const cases: [string, Uint8Array, RegExp][] = [
    ["index 0", hex("80"), /index 0/],
    ["an index past the tables", hex("be"), /not in the table/],
    ["a string past the end", hex("400a6162"), /runs past the end/],
    ["a block that ends in an integer", hex("ff"), /ends inside an integer/],
    ["an integer of more than 28 bits", hex("ffffffffffff01"), /more than 28 bits/],
    ["Huffman padding not all ones", hex("0081000161"), /not all ones/],
    ["Huffman padding of 8 bits or more", hex("0082ffff0161"), /longer than 7 bits/],
    ["EOS inside a string", hex("0084ffffffff0161"), /EOS/],
    ["a table size above the announced limit", hex("3fe21f"), /over the 4096 announced/],
    ["a table size update after a field", hex("823f01"), /after a header field/],
  ];
  for (const [what, block, reason] of cases) {
    assert.throws(() => new HpackDecoder(4096, 16_384).decode(block), (error: Error) => {
      assert.ok(error instanceof HpackError, `${what}: ${error}`);
      assert.match(error.message, reason, what);
      return true;
    });
  }
});

Deno.test("HpackDecoder flags a header list past its limit but keeps its table in step (an HPACK bomb)", () => {
  const decoder = new HpackDecoder(4096, 1024);
  // One 1000-byte value into the table, then 100 one-byte references to it: 100 kB from a 1 kB block.
  const value = "x".repeat(1000);
  const insert = [0x40, 0x01, 0x62, 0x7f, ...encodeInteger(1000 - 127), ...new TextEncoder().encode(value)];
  const bomb = decoder.decode(Uint8Array.from([...insert, ...new Array(100).fill(0xbe)]));
  assert.equal(bomb.tooLarge, true);
  assert.deepEqual(bomb.headers, []);
  // The entry did go into the table: the next block refers to it.
  const next = new HpackDecoder(4096, 4096);
  next.decode(Uint8Array.from(insert));
  assert.deepEqual(next.decode(hex("be")).headers, [["b", value]]);
  assert.deepEqual(decoder.decode(hex("88")).headers, [[":status", "200"]]);
});

Deno.test("encodeHeaders uses the static table and literals only; the decoder reads it back", () => {
  const headers: [string, string][] = [
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", "0"],
    ["grpc-message", "shard 7 of user 42: caf%C3%A9"],
    ["x-long", "y".repeat(300)],
  ];
  const block = encodeHeaders(headers);
  assert.equal(block[0], 0x88, ":status 200 is static index 8");
  const decoder = new HpackDecoder(4096, 16_384);
  assert.deepEqual(decoder.decode(block).headers, headers);
  assert.deepEqual(decoder.decode(block).headers, headers, "no table state between blocks");
  assert.throws(() => encodeHeaders([["x", "€"]]), RangeError);
});

function encodeInteger(rest: number): number[] {
  const out: number[] = [];
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest >>= 7;
  }
  out.push(rest);
  return out;
}
