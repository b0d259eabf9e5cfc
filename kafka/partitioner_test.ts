import assert from "node:assert/strict";
import { murmur2, partitionFor, toPositive } from "./partitioner.ts";

const utf8 = (text: string) => new TextEncoder().encode(text);

Deno.test("murmur2() gives Kafka's Java values for sample keys", () => {
  // Values printed by org.apache.kafka.common.utils.Utils.murmur2 (kafka-clients 4.1.2).
  assert.equal(murmur2(utf8("21")), -973932308);
  assert.equal(murmur2(utf8("7")), -1961297549);
  assert.equal(murmur2(utf8("")), 275646681);
});

Deno.test("toPositive() clears the sign bit, unlike Math.abs", () => {
  assert.equal(toPositive(-1), 0x7fffffff);
  assert.equal(toPositive(-2147483648), 0);
  assert.equal(toPositive(5), 5);
});

Deno.test("partitionFor() stays in range and is stable for a key", () => {
  for (let i = 0; i < 1000; i++) {
    const p = partitionFor(String(i), 128);
    assert.ok(p >= 0 && p < 128, `partition ${p} of key ${i}`);
    assert.equal(partitionFor(String(i), 128), p);
  }
  assert.equal(partitionFor("21", 128), 108);
});
