import assert from "node:assert/strict";
import { MembershipWatch } from "./membership_watch.ts";

Deno.test("a member is left alone, however long", () => {
  const watch = new MembershipWatch(10_000);
  for (let now = 0; now <= 60_000; now += 1000) assert.equal(watch.check(true, now), undefined);
});

Deno.test("a client out of its group shorter than a join takes is left to finish its join", () => {
  const watch = new MembershipWatch(10_000);
  assert.equal(watch.check(false, 0), undefined);
  assert.equal(watch.check(false, 9_999), undefined);
  assert.equal(watch.check(true, 10_500), undefined, "it joined");
  assert.equal(watch.check(false, 11_000), undefined, "out again: the wait starts over");
  assert.equal(watch.check(false, 20_999), undefined);
});

Deno.test("a client out for longer is made to join; still out as long again, it is replaced", () => {
  const watch = new MembershipWatch(10_000);
  assert.equal(watch.check(false, 0), undefined);
  assert.equal(watch.check(false, 10_000), "rejoin");
  assert.equal(watch.check(false, 15_000), undefined, "its join is under way");
  assert.equal(watch.check(false, 20_000), "replace", "that join did not bring it back: a wedged client");
  assert.equal(watch.check(false, 25_000), undefined, "the new client is joining");
  assert.equal(watch.check(false, 30_000), "rejoin", "the new client is watched as the first was");
  assert.equal(watch.check(true, 31_000), undefined);
});

Deno.test("a client that got back in after a join of ours starts afresh: the next time out, it is made to join first", () => {
  const watch = new MembershipWatch(10_000);
  watch.check(false, 0);
  assert.equal(watch.check(false, 10_000), "rejoin");
  assert.equal(watch.check(true, 12_000), undefined);
  assert.equal(watch.check(false, 50_000), undefined);
  assert.equal(watch.check(false, 60_000), "rejoin");
});
