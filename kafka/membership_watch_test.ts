import assert from "node:assert/strict";
import { MembershipWatch } from "./membership_watch.ts";

Deno.test("a member is left alone, however long", () => {
  const watch = new MembershipWatch(10_000);
  for (let now = 0; now <= 60_000; now += 1000) assert.equal(watch.check(true, now), false);
});

Deno.test("a client out of its group shorter than a join takes is left to finish its join", () => {
  const watch = new MembershipWatch(10_000);
  assert.equal(watch.check(false, 0), false);
  assert.equal(watch.check(false, 9_999), false);
  assert.equal(watch.check(true, 10_500), false, "it joined");
  assert.equal(watch.check(false, 11_000), false, "out again: the wait starts over");
  assert.equal(watch.check(false, 20_999), false);
});

Deno.test("a client out for longer is made to join, and again after as long if that join fails too", () => {
  const watch = new MembershipWatch(10_000);
  assert.equal(watch.check(false, 0), false);
  assert.equal(watch.check(false, 10_000), true);
  assert.equal(watch.check(false, 15_000), false, "its join is under way");
  assert.equal(watch.check(false, 20_000), true);
  assert.equal(watch.check(true, 21_000), false);
});
