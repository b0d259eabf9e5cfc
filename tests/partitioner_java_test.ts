import assert from "node:assert/strict";
import { murmur2, partitionFor } from "../kafka/partitioner.ts";
import { javaPartitions } from "./support/java.ts";

function sampleKeys(): string[] {
  const keys = ["", "a", "ab", "abc", "abcd", "abcde"];
  for (let i = 0; i < 2000; i++) keys.push(String(i));
  keys.push("-233160412", "1527972333", "user-🚀", "ünïcödé", "日本語のユーザー", "𝔘𝔫𝔦", "é".repeat(33));
  let seed = 42;
  const next = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0);
  const alphabet = "aZ09-_ ßж中😀\u0000\u00ff";
  for (let i = 0; i < 500; i++) {
    const chars = Array.from({ length: next() % 40 }, () => [...alphabet][next() % [...alphabet].length]);
    keys.push(chars.join(""));
  }
  return keys;
}

for (const partitions of [1, 7, 128, 1000]) {
  Deno.test(`partitionFor() equals Java's toPositive(Utils.murmur2) % ${partitions} for 2,500 keys`, async () => {
    const keys = sampleKeys();
    const bytes = keys.map((k) => new TextEncoder().encode(k));
    const java = await javaPartitions(bytes, partitions);
    keys.forEach((key, i) => {
      assert.equal(murmur2(bytes[i]), java[i].hash, `murmur2 of ${JSON.stringify(key)}`);
      assert.equal(partitionFor(key, partitions), java[i].partition, `partition of ${JSON.stringify(key)}`);
    });
  });
}
