import assert from "node:assert/strict";
import { runInProcess } from "../tests/support/cli.ts";
import { describeStats, queryCommand } from "./query.ts";

/** Runs `usershard query` with `args`; returns the exit code and the lines on standard error. */
const query = (...args: string[]) => runInProcess(queryCommand, args);

Deno.test("a user's totals read as a sentence, with purchase in the singular for one", () => {
  assert.equal(
    describeStats({ id: "7", totalPurchases: 2, amountSpent: 3096 }),
    "User 7 has made 2 purchases for a total of 3096p",
  );
  assert.equal(
    describeStats({ id: "8", totalPurchases: 1, amountSpent: 5 }),
    "User 8 has made 1 purchase for a total of 5p",
  );
});

Deno.test("query refuses TLS flags without --tls, half a client certificate, and a file it cannot read, before it connects", async () => {
  const refused = async (args: string[], pattern: RegExp) => {
    const { code, lines } = await query("--grpc", "127.0.0.1:1", ...args, "7");
    assert.equal(code, 2, lines.join("\n"));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], pattern);
  };
  await refused(["--ca", "/tmp/ca.pem"], /--ca needs --tls/);
  await refused(["--cert", "/tmp/cert.pem", "--key", "/tmp/key.pem"], /--cert needs --tls/);
  await refused(["--tls", "--cert", "/tmp/cert.pem"], /--cert and --key go together/);
  await refused(["--tls", "--ca", "/nonexistent/ca.pem"], /cannot read --ca \/nonexistent\/ca\.pem: No such file/);
});
