import assert from "node:assert/strict";
import { MinorityRule } from "./minority.ts";

Deno.test("MinorityRule: leave once on losing the majority, rejoin once on hearing it again", () => {
  const rule = new MinorityRule();
  const seen = [true, true, false, false, false, true, true, false, true].map((majority) => rule.step(majority));
  assert.deepEqual(seen, [undefined, undefined, "leave", undefined, undefined, "rejoin", undefined, "leave", "rejoin"]);
  assert.equal(rule.left, false);
});
