import assert from "node:assert/strict";
import { hasQuorum, isMajority } from "./quorum.ts";

Deno.test("a quorum is at least half of the participants, for every cluster of up to nine", () => {
  for (let participants = 1; participants <= 9; participants++) {
    for (let reachable = 0; reachable <= participants; reachable++) {
      assert.equal(
        hasQuorum(reachable, participants),
        reachable >= Math.ceil(participants / 2),
        `${reachable}/${participants}`,
      );
    }
  }
  assert.equal(hasQuorum(1, 2), true, "a two-node cluster survives a crash");
  assert.equal(hasQuorum(2, 4), true, "an even split leaves both halves a quorum: downing needs a majority too");
  assert.equal(hasQuorum(0, 0), true, "nothing to count against");
});

Deno.test("a majority is more than half of the voters, for every count of up to nine", () => {
  for (let voters = 0; voters <= 9; voters++) {
    for (let reports = 0; reports <= voters; reports++) {
      assert.equal(isMajority(reports, voters), reports > voters / 2, `${reports}/${voters}`);
    }
  }
  assert.equal(isMajority(1, 2), false, "one of two observers cannot down a member alone");
  assert.equal(isMajority(0, 0), false, "no voters, no verdict");
});
