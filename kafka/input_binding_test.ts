import assert from "node:assert/strict";
import {
  type ChangelogFacts,
  decodeMarker,
  encodeMarker,
  type InputFacts,
  judgeRestore,
  type Verdict,
} from "./input_binding.ts";

const input: InputFacts = { topic: "user-events", topicId: "id-2", group: "g", logEnd: 100, committed: 90 };
const partition = (facts: Partial<ChangelogFacts>): ChangelogFacts => ({
  changelog: "g-changelog",
  partition: 3,
  logStart: 0,
  marker: { topic: "user-events", topicId: "id-2" },
  users: 5,
  lastOffset: 89,
  ...facts,
});

Deno.test("judgeRestore: which changelog partitions a restore trusts, case by case", () => {
  const cases: [string, ChangelogFacts, Partial<InputFacts>, Verdict | RegExp][] = [
    ["its own incarnation, behind the input's end", partition({}), {}, { trusted: true, writeMarker: false }],
    ["a fresh start: nothing stored, nothing committed", partition({ marker: undefined, users: 0, lastOffset: -1 }), {
      committed: -1,
      logEnd: 0,
    }, { trusted: true, writeMarker: true }],
    ["an older build's records, behind the input's end", partition({ marker: undefined }), {}, {
      trusted: true,
      writeMarker: true,
    }],
    [
      "marked, empty, the group committed past events that changed nobody",
      partition({ users: 0, lastOffset: -1 }),
      {},
      {
        trusted: true,
        writeMarker: false,
      },
    ],
    [
      "another incarnation of the topic",
      partition({ marker: { topic: "user-events", topicId: "id-1" } }),
      {},
      /counts another incarnation of user-events \(topic id id-1\) up to offset 89, but user-events is now topic id id-2 and user-events\/3 ends at offset 100/,
    ],
    [
      "another topic altogether",
      partition({ marker: { topic: "other", topicId: "id-9" } }),
      {},
      /counts another incarnation of other/,
    ],
    [
      "offsets the input does not have",
      partition({ marker: undefined, lastOffset: 140 }),
      {},
      /counts user-events\/3 up to offset 140, but that partition ends at offset 100/,
    ],
    [
      "offsets exactly at the input's end",
      partition({ lastOffset: 100 }),
      {},
      /up to offset 100, but that partition ends at offset 100/,
    ],
    [
      "empty and unmarked while the group has counted",
      partition({ marker: undefined, users: 0, lastOffset: -1 }),
      {},
      /is empty, but group g has counted user-events\/3 up to offset 90 \(its committed offset; the changelog counts up to offset -1\)/,
    ],
    [
      "records deleted before its log start",
      partition({ logStart: 12 }),
      {},
      /starts at offset 12, not 0: records before it were deleted .* counts user-events\/3 up to offset 89, which ends at 100/,
    ],
  ];
  for (const [what, changelog, overrides, expected] of cases) {
    const verdict = judgeRestore(changelog, { ...input, ...overrides });
    if (expected instanceof RegExp) {
      assert.equal(verdict.trusted, false, what);
      if (!verdict.trusted) {
        assert.match(verdict.reason, expected, what);
        assert.match(verdict.reason, /usershard rebuild --topic user-events --group g/, `${what}: the way out`);
      }
    } else {
      assert.deepEqual(verdict, expected, what);
    }
  }
});

Deno.test("the marker reads back, and nothing else reads as one", () => {
  const marker = { topic: "user-events", topicId: "3f2c" };
  assert.deepEqual(decodeMarker(encodeMarker(marker)), marker);
  for (const bytes of ["", "{}", '{"version":2,"topic":"t","topicId":"i"}', "\u0001\u0002"]) {
    assert.equal(decodeMarker(new TextEncoder().encode(bytes)), undefined, JSON.stringify(bytes));
  }
});
