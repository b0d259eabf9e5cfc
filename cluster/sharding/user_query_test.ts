import assert from "node:assert/strict";
import { ShardUnavailableError } from "./region.ts";
import { queryUser, UserQueryError, type UserTotalsSource } from "./user_query.ts";

/** A source whose shard answers with `answer`, recording the wait it was given. */
function source(answer: () => Promise<{ totalPurchases: number; amountSpent: number }>) {
  const waits: number[] = [];
  const fake: UserTotalsSource = {
    shardOf: () => 7,
    userTotals: (_id, timeoutMs) => {
      waits.push(timeoutMs);
      return answer();
    },
  };
  return { fake, waits };
}

const unavailable = () => Promise.reject(new ShardUnavailableError("shard 7 is moving"));

Deno.test("a query answers within the node's ask timeout, or the caller's deadline less a margin when that is sooner", async () => {
  const { fake, waits } = source(() => Promise.resolve({ totalPurchases: 2, amountSpent: 30 }));
  assert.deepEqual(await queryUser(fake, "42", { askTimeoutMs: 5000 }), { totalPurchases: 2, amountSpent: 30 });
  await queryUser(fake, "42", { askTimeoutMs: 5000, deadlineMs: 3000 });
  await queryUser(fake, "42", { askTimeoutMs: 5000, deadlineMs: 500 });
  await queryUser(fake, "42", { askTimeoutMs: 5000, deadlineMs: 10 });
  assert.deepEqual(waits, [5000, 2800, 400, 50], "200 ms before, a fifth of a short deadline, never under 50 ms");
});

Deno.test("each way a query fails is one kind, with one line naming the shard", async () => {
  const cases: [
    string,
    ReturnType<typeof source>["fake"],
    { askTimeoutMs: number; deadlineMs?: number },
    string,
    RegExp,
  ][] = [
    ["an id that is no user id", source(unavailable).fake, { askTimeoutMs: 5000 }, "invalid", /./],
    [
      "the shard does not answer in the node's time",
      source(unavailable).fake,
      { askTimeoutMs: 5000 },
      "unavailable",
      /^shard 7 of user 42 could not be reached within 5000 ms: shard 7 is moving$/,
    ],
    [
      "nor before the caller's deadline",
      source(unavailable).fake,
      { askTimeoutMs: 5000, deadlineMs: 1000 },
      "deadline",
      /^shard 7 of user 42 did not answer before the client's deadline of 1000 ms/,
    ],
  ];
  for (const [what, fake, limits, failure, message] of cases) {
    const id = failure === "invalid" ? "" : "42";
    await assert.rejects(queryUser(fake, id, limits), (error: unknown) => {
      assert.ok(error instanceof UserQueryError, what);
      assert.equal(error.failure, failure, what);
      assert.match(error.message, message, what);
      return true;
    });
  }
  const bug = new Error("a bug");
  await assert.rejects(
    queryUser(source(() => Promise.reject(bug)).fake, "42", { askTimeoutMs: 5000 }),
    (e) => e === bug,
  );
});
