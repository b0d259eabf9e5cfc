/**
 * The query and management ports over TLS, with a CA and certificates made
 * for the test by openssl.
 *
 * - `--grpc-tls-cert`, `--grpc-tls-key`: the project's own client
 *   (`usershard query --tls --ca`), grpcio and grpc-js get every user's
 *   totals exactly; a plaintext client and a client that does not trust the
 *   CA each get one line.
 * - With `--grpc-tls-client-ca` (mutual TLS) only clients with a certificate
 *   the CA signed get answers; without one, or with another CA's, the
 *   handshake fails, the client gets one line, and the node runs on.
 * - `--mgmt-tls-cert`, `--mgmt-tls-key`: management over HTTPS, which
 *   `usershard shards --tls --ca` reads.
 */
import assert from "node:assert/strict";
import { runUsershard } from "./support/cli.ts";
import { eventually, nodePorts, startProcessor, withNodes } from "./support/cluster.ts";
import { grpcio, grpcJs } from "./support/foreign_clients.ts";
import { certificates } from "./support/certificates.ts";
import { createTopic, expectedTotals, knownPurchases, producePurchases, testKafka } from "./support/kafka.ts";

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
      const result = await run(target, "ask", users, 60_000, { ca: tls.ca });
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

/** Every answer in `usershard query --json` output equals `expected`, and every user is answered. */
function assertAnswers(stdout: string, expected: Map<string, { totalPurchases: number; amountSpent: number }>): void {
  const answers = stdout.trim().split("\n").map((line) => JSON.parse(line));
  for (const answer of answers) {
    const want = expected.get(answer.id)!;
    assert.deepEqual([answer.totalPurchases, answer.amountSpent], [want.totalPurchases, want.amountSpent]);
  }
  assert.equal(answers.length, expected.size);
}

Deno.test("mutual TLS on gRPC lets in only clients the CA signed; management over HTTPS is read by usershard shards --tls", async () => {
  const tls = await certificates();
  await withNodes("grpc-mtls", async (started, stream) => {
    await createTopic(stream.topic, 4);
    const purchases = knownPurchases(100, 20, 5);
    await producePurchases(testKafka(), stream.topic, purchases);
    const expected = expectedTotals(purchases);
    const users = [...expected.keys()];
    const [ports] = nodePorts(1);
    const node = startProcessor(ports, [ports], stream, [
      ...["--grpc-tls-cert", tls.cert, "--grpc-tls-key", tls.key, "--grpc-tls-client-ca", tls.ca],
      ...["--mgmt-tls-cert", tls.cert, "--mgmt-tls-key", tls.key],
    ]);
    started.push(node);
    await node.waitForOutput(/gRPC UserService on .* \(mutual TLS\)/, 60_000);
    await node.waitForOutput(/management HTTPS on https:/, 60_000);
    const https = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(tls.ca)] });
    try {
      await eventually("every event processed", async () => {
        const stats = await fetch(`https://localhost:${ports.mgmt}/stats`, { client: https })
          .then((r) => r.json()).catch(() => ({}));
        return stats.events === purchases.length;
      }, 60_000);
    } finally {
      https.close();
    }
    const target = `localhost:${ports.grpc}`;
    const query = (...args: string[]) => runUsershard(["query", "--grpc", target, "--tls", "--ca", tls.ca, ...args]);

    const withCert = await query("--cert", tls.clientCert, "--key", tls.clientKey, "--json", ...users);
    assert.equal(withCert.code, 0, withCert.stderr);
    assertAnswers(withCert.stdout, expected);
    const client = { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey };
    for (const [name, run] of [["grpcio", grpcio], ["grpc-js", grpcJs]] as const) {
      const result = await run(target, "ask", users, 60_000, client);
      assert.deepEqual(result.failed, {}, `${name}: no call fails`);
      assert.equal(result.ok, users.length, `${name}: every user answered`);
    }

    for (const refused of [[], ["--cert", tls.strangerCert, "--key", tls.strangerKey]]) {
      const result = await query(...refused, users[0]);
      assert.equal(result.code, 1, result.stderr);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, result.stderr);
      assert.match(lines[0], /certificate/i, `the line says a certificate is the matter: ${lines[0]}`);
    }
    const withoutCert = await grpcJs(target, "ask", users.slice(0, 3), 60_000, { ca: tls.ca });
    assert.equal(withoutCert.ok, 0, "grpc-js without a client certificate gets no answer");
    await node.waitForOutput(/gRPC connection from .* refused: TLS handshake failed/, 10_000);
    assert.ok(node.running, "the node is still running after the refused connections");

    const shards = (...args: string[]) =>
      runUsershard(["shards", "--node", `localhost:${ports.mgmt}`, "--type", stream.group, ...args]);
    const one = await shards("--tls", "--ca", tls.ca);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, new RegExp(`^4 shards, ${users.length} entities`, "m"));
    const all = await shards("--all", "--tls", "--ca", tls.ca);
    assert.equal(all.code, 0, all.stderr);
    const plain = await shards();
    assert.equal(plain.code, 1, plain.stdout);
    assert.equal(plain.stderr.trim().split("\n").length, 1, plain.stderr);
    const untrusted = await shards("--tls");
    assert.equal(untrusted.code, 1, untrusted.stdout);
    assert.match(untrusted.stderr.trim(), /certificate|TLS/i);
  });
});
