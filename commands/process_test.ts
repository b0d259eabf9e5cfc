import assert from "node:assert/strict";
import { runInProcess } from "../tests/support/cli.ts";
import { processCommand } from "./process.ts";

/** Runs `usershard process` with `args`; returns the exit code and the lines on standard error. */
const process = (...args: string[]) => runInProcess(processCommand, args);

Deno.test("process refuses an empty secret before it touches Kafka: it would turn authentication off", async () => {
  assert.deepEqual(await process("--cluster-secret", "", "--brokers", "127.0.0.1:1"), {
    code: 2,
    lines: [
      "usershard process: --cluster-secret is empty; give the shared secret, or leave the flag out for none " +
      "(see usershard process --help)",
    ],
  });
});

Deno.test("process refuses timings that break a relation, naming the flags and why", async () => {
  const { code, lines } = await process("--ask-timeout", "30s", "--brokers", "127.0.0.1:1");
  assert.equal(code, 2);
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^usershard process: --handoff-timeout \(20s\) must be at least the leaving grace \(5s\) plus --ask-timeout \(30s\)/,
  );
  const fixed = await process("--ask-timeout", "30s", "--handoff-timeout", "10s", "--unreachable-after", "1s");
  assert.match(fixed.lines[0], /--unreachable-after \(1s\) must be at least 3 heartbeat intervals/);
  assert.match(fixed.lines[0], /--handoff-timeout \(10s\)/);
});

Deno.test("process refuses TLS flags that do not go together, and a file it cannot read, in one line each", async () => {
  const refused = async (args: string[], pattern: RegExp) => {
    const { code, lines } = await process(...args, "--brokers", "127.0.0.1:1");
    assert.equal(code, 2, lines.join("\n"));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0], pattern);
  };
  await refused(["--grpc-tls-cert", "/tmp/cert.pem"], /--grpc-tls-cert and --grpc-tls-key go together/);
  await refused(["--mgmt-tls-key", "/tmp/key.pem"], /--mgmt-tls-cert and --mgmt-tls-key go together/);
  await refused(
    ["--grpc-tls-client-ca", "/tmp/ca.pem"],
    /--grpc-tls-client-ca needs --grpc-tls-cert and --grpc-tls-key/,
  );
  await refused(
    ["--mgmt-tls-cert", "/nonexistent/cert.pem", "--mgmt-tls-key", "/nonexistent/key.pem"],
    /cannot read --mgmt-tls-cert \/nonexistent\/cert\.pem: No such file/,
  );
});
