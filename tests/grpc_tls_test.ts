/**
 * The gRPC port over TLS (`--grpc-tls-cert`, `--grpc-tls-key`): the
 * project's own client (`usershard query --tls --ca`), grpcio and grpc-js
 * get every user's totals exactly, with a CA and a certificate made for the
 * test by openssl; a plaintext client and a client that does not trust the
 * CA each get one line.
 */
import assert from "node:assert/strict";
import { runUsershard } from "./support/cli.ts";
import { eventually, nodePorts, startProcessor, withNodes } from "./support/cluster.ts";
import { grpcio, grpcJs } from "./support/foreign_clients.ts";
import { createTopic, expectedTotals, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";

/** A CA, and a certificate for "localhost" that it signed, in a new folder; their paths. */
async function certificates(): Promise<{ ca: string; cert: string; key: string }> {
  const dir = await Deno.makeTempDir({ prefix: "usershard-grpc-tls-" });
  const openssl = async (...args: string[]) => {
    const output = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
    if (!output.success) throw new Error(`openssl ${args[0]} failed: ${new TextDecoder().decode(output.stderr)}`);
  };
  await Deno.writeTextFile(`${dir}/san.ext`, "subjectAltName=DNS:localhost\n");
  await openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=test CA",
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
  );
  await openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    "node.key",
    "-out",
    "node.csr",
  );
  await openssl(
    "x509",
    "-req",
    "-in",
    "node.csr",
    "-CA",
    "ca.pem",
    "-CAkey",
    "ca.key",
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    "san.ext",
    "-out",
    "node.pem",
  );
  return { ca: `${dir}/ca.pem`, cert: `${dir}/node.pem`, key: `${dir}/node.key` };
}

Deno.test("gRPC over TLS: usershard query, grpcio and grpc-js answer exactly; plaintext and an untrusted CA are one line", async () => {
  const tls = await certificates();
  await withNodes("grpc-tls", async (started, stream) => {
    const kafka = testKafka();
    await createTopic(stream.topic, 4);
    const purchases = knownPurchases(200, 20, 5);
    await producePurchases(kafka, stream.topic, purchases);
    const expected = expectedTotals(purchases);
    const users = [...expected.keys()];
    const [ports] = nodePorts(1);
    const node = startProcessor(ports, [ports], stream, ["--grpc-tls-cert", tls.cert, "--grpc-tls-key", tls.key]);
    started.push(node);
    await node.waitForOutput(/gRPC UserService on .* \(TLS\)/, 60_000);
    await eventually("every event processed", async () => {
      const stats = await fetch(`http://127.0.0.1:${ports.mgmt}/stats`).then((r) => r.json()).catch(() => ({}));
      return stats.events === purchases.length;
    }, 60_000);
    const target = `localhost:${ports.grpc}`;

    const query = await runUsershard(["query", "--grpc", target, "--tls", "--ca", tls.ca, "--json", ...users]);
    assert.equal(query.code, 0, query.stderr);
    const answers = query.stdout.trim().split("\n").map((line) => JSON.parse(line));
    for (const answer of answers) {
      const want = expected.get(answer.id)!;
      assert.deepEqual([answer.totalPurchases, answer.amountSpent], [want.totalPurchases, want.amountSpent]);
    }
    assert.equal(answers.length, users.length);

    for (const [name, run] of [["grpcio", grpcio], ["grpc-js", grpcJs]] as const) {
      const result = await run(target, "ask", users, 60_000, tls.ca);
      assert.deepEqual(result.failed, {}, `${name}: no call fails`);
      assert.equal(result.ok, users.length, `${name}: every user answered`);
      for (const [id, totals] of Object.entries(result.answers)) {
        const want = expected.get(id)!;
        assert.deepEqual([totals.totalPurchases, totals.amountSpent], [want.totalPurchases, want.amountSpent], name);
      }
    }

    const plaintext = await runUsershard(["query", "--grpc", target, users[0]]);
    assert.equal(plaintext.code, 1, plaintext.stderr);
    const untrusted = await runUsershard(["query", "--grpc", target, "--tls", users[0]]);
    assert.equal(untrusted.code, 1, untrusted.stderr);
    assert.match(untrusted.stderr.trim().split("\n").at(-1)!, /TLS handshake failed/);
    assert.ok(node.running, "the node is still running after the refused connections");
  });
});
