/**
 * usershard against a broker that takes SASL over TLS (`tests/secured/broker.sh`:
 * SCRAM-SHA-512 for the user "usershard", a certificate for "localhost"
 * signed by a CA made for the run). The nodes reach Kafka only through the
 * SASL_SSL listener; the test reads the topic through the broker's plaintext
 * one, as an independent client.
 */
import assert from "node:assert/strict";
import { runUsershard } from "../support/cli.ts";
import { nodePorts, shardsOf, startProcessor, withNodes } from "../support/cluster.ts";
import { BROKERS, createTopic, testKafka, withTopic } from "../support/kafka.ts";
import { exactOnEveryNode, SteadyStream } from "../support/totals.ts";
import { eventually } from "../support/wait.ts";

const RUN_DIR = Deno.env.get("KAFKA_SECURED_RUN_DIR") ?? "";
const CLIENT_PROPERTIES = `${RUN_DIR}/client.properties`;
const PASSWORD = RUN_DIR === "" ? "" : Deno.readTextFileSync(`${RUN_DIR}/tls/password`).trim();
const PORT = Number(BROKERS[0].split(":")[1]);
/** The SASL_SSL listener, by the name its certificate is for. */
const SASL_SSL = `localhost:${PORT + 2}`;
const SECURED = ["--brokers", SASL_SSL, "--kafka-config", CLIENT_PROPERTIES];

/** A properties file like the broker's, changed by `edit`, in a temporary folder. */
function clientProperties(edit: (text: string) => string): string {
  const path = `${Deno.makeTempDirSync()}/client.properties`;
  Deno.writeTextFileSync(path, edit(Deno.readTextFileSync(CLIENT_PROPERTIES)));
  return path;
}

Deno.test("two nodes over SASL_SSL process, restore after kill -9 and answer exactly; the password is never printed", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  await withNodes("secured", async (started, stream) => {
    await createTopic(stream.topic, 8);
    const [a, b] = nodePorts(2);
    const nodes = [a, b].map((ports) => startProcessor(ports, [a, b], stream, SECURED));
    started.push(...nodes);
    await Promise.all(nodes.map((node) => node.waitForOutput(/node ready/, 90_000)));
    const flow = new SteadyStream(stream.topic, { users: 40, perSecond: 200 });
    try {
      await eventually("both nodes host shards", async () => {
        const views = await Promise.all([a, b].map((n) => shardsOf(n, stream.group)));
        return views.every((v) => v !== undefined && v.shards.length > 0);
      }, 60_000);
      await flow.reach(600);
      nodes[1].kill("SIGKILL");
      await flow.reach(1400);
    } finally {
      await flow.stop();
    }
    await exactOnEveryNode(testKafka(), stream.topic, [a]);
    const restored = nodes[0].stderr.match(/restored shard \d+ from \S+: [1-9]\d* users/);
    assert.ok(restored, "the survivor restored a shard with users in it from the changelog over SASL_SSL");
    const pages = await Promise.all(
      ["/metrics", "/", "/stats", "/cluster/members"].map(async (path) => {
        const response = await fetch(`http://127.0.0.1:${a.mgmt}${path}`);
        return await response.text();
      }),
    );
    for (
      const [where, text] of [["node 1's log", nodes[0].stderr], ["node 2's log", nodes[1].stderr], [
        "the management pages",
        pages.join("\n"),
      ]]
    ) {
      assert.ok(!text.includes(PASSWORD), `${where} holds the SASL password`);
    }
  });
});

Deno.test("a wrong password, an untrusted CA and a wrong host name are one line each, exit 1", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  const produce = (brokers: string, properties: string) =>
    runUsershard([
      "produce",
      "--count",
      "1",
      "--topic",
      "secured-refused",
      "--brokers",
      brokers,
      "--kafka-config",
      properties,
    ]);
  const cases: [string, Promise<Awaited<ReturnType<typeof produce>>>, RegExp][] = [
    [
      "a wrong password",
      produce(SASL_SSL, clientProperties((t) => t.replace(/password="[^"]*"/, 'password="not-the-password"'))),
      /refused the SASL authentication \(wrong user or password\).*invalid credentials/,
    ],
    [
      "an untrusted CA",
      produce(SASL_SSL, clientProperties((t) => t.replace(/^ssl\.truststore.*$/gm, ""))),
      /TLS handshake with Kafka at .* failed \(the broker's certificate is not signed by a trusted CA/,
    ],
    [
      "a wrong host name",
      produce(`127.0.0.1:${PORT + 2}`, CLIENT_PROPERTIES),
      /TLS handshake with Kafka at 127\.0\.0\.1:\d+ failed \(the broker's certificate is not for that host name\)/,
    ],
  ];
  for (const [what, run, pattern] of cases) {
    const { code, stderr } = await run;
    const lines = stderr.trim().split("\n");
    assert.equal(code, 1, `${what}: exit 1\n${stderr}`);
    assert.match(lines.at(-1)!, pattern, what);
    assert.ok(!stderr.includes(PASSWORD), `${what}: the password is not printed`);
  }
});

Deno.test("SASL_PLAINTEXT with PLAIN, from flags and the password from a file: produce gets through", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  const passwordFile = `${Deno.makeTempDirSync()}/password`;
  Deno.writeTextFileSync(passwordFile, `${PASSWORD}\n`);
  await withTopic("secured-plain", async (topic) => {
    const { code, stderr } = await runUsershard([
      "produce",
      "--count",
      "5",
      "--topic",
      topic,
      "--partitions",
      "1",
      "--brokers",
      `localhost:${PORT + 3}`,
      "--security-protocol",
      "SASL_PLAINTEXT",
      "--sasl-mechanism",
      "PLAIN",
      "--sasl-username",
      "usershard",
      "--sasl-password-file",
      passwordFile,
    ]);
    assert.equal(code, 0, stderr);
    assert.match(stderr, /sent 5 events to /);
    assert.ok(!stderr.includes(PASSWORD), "the password is not printed");
  });
});
