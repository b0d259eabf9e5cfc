import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { committedRecords, type FetchedPartition } from "./fetched_records.ts";

type Batch = NonNullable<FetchedPartition["records"]>[number];

function batch(first: number, values: string[], options: { producer?: bigint; control?: boolean } = {}): Batch {
  const transactional = options.producer !== undefined;
  return {
    firstOffset: BigInt(first),
    lastOffsetDelta: values.length - 1,
    attributes: (transactional ? 0x10 : 0) | (options.control ? 0x20 : 0),
    producerId: options.producer ?? -1n,
    records: values.map((value, i) => ({
      offsetDelta: i,
      key: null,
      value: Buffer.from(value),
      attributes: 0,
      length: 0,
      timestampDelta: 0n,
      headers: [],
    })),
    length: 0,
    partitionLeaderEpoch: 0,
    magic: 2,
    crc: 0,
    firstTimestamp: 0n,
    maxTimestamp: 0n,
    producerEpoch: 0,
    firstSequence: 0,
  };
}

function answer(records: Batch[], aborted: { producerId: bigint; firstOffset: bigint }[] = []): FetchedPartition {
  return {
    partitionIndex: 0,
    errorCode: 0,
    highWatermark: 100n,
    lastStableOffset: 100n,
    logStartOffset: 0n,
    abortedTransactions: aborted,
    preferredReadReplica: -1,
    records,
  };
}

const values = (read: ReturnType<typeof committedRecords>) => read.records.map((r) => `${r.offset}:${r.value}`);

Deno.test("records from the offset asked on; a batch that starts before it is cut", () => {
  const read = committedRecords(answer([batch(8, ["a", "b", "c"]), batch(11, ["d"])]), 9);
  assert.deepEqual(values(read), ["9:b", "10:c", "11:d"]);
  assert.equal(read.next, 12);
});

Deno.test("an aborted transaction's records and every marker are dropped; the end is past them", () => {
  const read = committedRecords(
    answer([
      batch(0, ["a", "b"], { producer: 7n }),
      batch(2, ["abort"], { producer: 7n, control: true }),
      batch(3, ["c"], { producer: 8n }),
      batch(4, ["commit"], { producer: 8n, control: true }),
    ], [{ producerId: 7n, firstOffset: 0n }]),
    0,
  );
  assert.deepEqual(values(read), ["3:c"]);
  assert.equal(read.next, 5);
});

Deno.test("an aborted transaction whose marker the answer does not reach is dropped too", () => {
  const read = committedRecords(
    answer([batch(0, ["x"]), batch(1, ["a", "b"], { producer: 7n })], [{ producerId: 7n, firstOffset: 1n }]),
    0,
  );
  assert.deepEqual(values(read), ["0:x"]);
  assert.equal(read.next, 3);
});

Deno.test("the same producer's next transaction, after its abort marker, is read", () => {
  const read = committedRecords(
    answer([
      batch(0, ["a"], { producer: 7n }),
      batch(1, ["abort"], { producer: 7n, control: true }),
      batch(2, ["b"], { producer: 7n }),
    ], [{ producerId: 7n, firstOffset: 0n }]),
    0,
  );
  assert.deepEqual(values(read), ["2:b"]);
});

Deno.test("an empty answer leaves the reader where it was", () => {
  assert.deepEqual(committedRecords(answer([]), 42), { records: [], next: 42 });
});
