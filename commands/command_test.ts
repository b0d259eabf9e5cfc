import assert from "node:assert/strict";
import { CliError, defineCommand, runCommand } from "./command.ts";
import { UsageError } from "./flags.ts";
import { stderrOf } from "../tests/support/cli.ts";

function failing(error: unknown) {
  return defineCommand({ name: "demo", summary: "fails", usage: "usershard demo", flags: {} }, () => {
    throw error;
  });
}

Deno.test("runCommand(): an unforeseen error after start-up is one line and exit 1, not a stack trace", async () => {
  const cause = new Error("The group coordinator is not available");
  const { result, lines } = await stderrOf(() => runCommand(failing(new TypeError("boom\n  at somewhere")), []));
  assert.equal(result, 1);
  assert.deepEqual(lines, ["usershard demo: unexpected error: boom at somewhere"]);
  const nested = await stderrOf(() => runCommand(failing(new AggregateError([cause], "join failed")), []));
  assert.deepEqual(nested.lines, [
    "usershard demo: unexpected error: join failed: The group coordinator is not available",
  ]);
});

Deno.test("runCommand(): a CliError exits 1 and a UsageError 2, each with one line", async () => {
  const cli = await stderrOf(() => runCommand(failing(new CliError("cannot reach Kafka")), []));
  assert.deepEqual([cli.result, cli.lines], [1, ["usershard demo: cannot reach Kafka"]]);
  const usage = await stderrOf(() => runCommand(failing(new UsageError("--x must be a number")), []));
  assert.deepEqual([usage.result, usage.lines], [2, [
    "usershard demo: --x must be a number (see usershard demo --help)",
  ]]);
});
