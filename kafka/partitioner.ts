/**
 * Kafka's default partitioner, byte for byte: `toPositive(murmur2(key)) %
 * partitions`, as the Java client (and kafkajs's default partitioner) computes
 * it. The producer partitions by it and the processor uses it as the shard id,
 * which is what keeps a user's events and that user's shard together.
 *
 * @module
 */

const encoder = new TextEncoder();

/**
 * Kafka's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`),
 * returned as a signed 32-bit integer like Java's `int`.
 *
 * @example
 * ```ts
 * murmur2(new TextEncoder().encode("21")); // -973932308
 * ```
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  let h = 0x9747b28c ^ length;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i * 4;
    let k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  const tail = length & ~3;
  switch (length & 3) {
    case 3:
      h ^= data[tail + 2] << 16;
    // falls through
    case 2:
      h ^= data[tail + 1] << 8;
    // falls through
    case 1:
      h ^= data[tail];
      h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** Java's `Utils.toPositive`: clears the sign bit (not `Math.abs`). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/**
 * The partition (and shard id) of a record key: `toPositive(murmur2(utf8(key)))
 * % partitions`.
 *
 * @example
 * ```ts
 * partitionFor("7", 128); // the partition the Java producer picks for key "7"
 * ```
 */
export function partitionFor(key: string, partitions: number): number {
  return partitionForBytes(encoder.encode(key), partitions);
}

/** {@linkcode partitionFor} of a key that is already UTF-8 bytes (as a record's key is). */
export function partitionForBytes(key: Uint8Array, partitions: number): number {
  return toPositive(murmur2(key)) % partitions;
}
