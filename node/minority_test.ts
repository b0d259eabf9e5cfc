import assert from "node:assert/strict";
import { MinorityRule } from "./minority.ts";

/** Steps the rule every 250 ms through `majority`; what it said at each step. */
function run(rule: MinorityRule, majority: boolean[], start = 0): (string | undefined)[] {
  return majority.map((hears, i) => rule.step(hears, start + i * 250));
}

Deno.test("MinorityRule: leaves at once on losing the majority; rejoins once it has heard one for a while", () => {
  const rule = new MinorityRule(1000);
  const seen = run(rule, [true, true, false, false, true, true, true, true, true, true]);
  assert.deepEqual(seen, [
    undefined,
    undefined,
    "leave",
    undefined,
    undefined, // hears a majority from 1000 ms...
    undefined,
    undefined,
    undefined,
    "rejoin", // ...and at 2000 ms has heard it for a second
    undefined,
  ]);
  assert.equal(rule.left, false);
});

Deno.test("MinorityRule: a flapping link does not rejoin; each break starts the wait again", () => {
  const rule = new MinorityRule(1000);
  const seen = run(rule, [false, true, true, true, false, true, true, true, false, true]);
  assert.deepEqual(seen, ["leave", ...Array(9).fill(undefined)]);
  assert.equal(rule.left, true);
});

Deno.test("MinorityRule: a rejoin that failed is tried again while the majority lasts", () => {
  const rule = new MinorityRule(500);
  assert.deepEqual(run(rule, [false, true, true, true]), ["leave", undefined, undefined, "rejoin"]);
  rule.rejoinFailed();
  assert.equal(rule.left, true);
  assert.equal(rule.step(true, 1000), "rejoin", "the majority was heard all along");
  rule.rejoinFailed();
  assert.equal(rule.step(false, 1250), undefined, "out, and no majority: nothing to try");
  assert.deepEqual(run(rule, [true, true, true], 1500), [undefined, undefined, "rejoin"]);
});
