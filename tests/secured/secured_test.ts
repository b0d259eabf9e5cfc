/**
 * usershard against a broker that takes SASL over TLS (`tests/secured/broker.sh`:
 * SCRAM-SHA-512 for the user "usershard", a certificate for "localhost"
 * signed by a CA made for the run). The nodes reach Kafka only through the
 * SASL_SSL listener; the test reads the topic through the broker's plaintext
 * one, as an independent client.
 */
import assert from "node:assert/strict";
import { runUsershard } from "../support/cli.ts";
import { nodePorts, ready, shardsOf, startProcessor, withNodes } from "../support/cluster.ts";
import { BROKERS, createTopic, testKafka, withTopic } from "../support/kafka.ts";
import { exactOnEveryNode, SteadyStream } from "../support/totals.ts";
import { eventually } from "../support/wait.ts";
import { allow, deny, newUser, PRINCIPAL } from "./acls.ts";

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
    await Promise.all(nodes.map((node, i) => ready(node, [a, b][i])));
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

Deno.test("a missing ACL is one line naming the permission and the ACL; a running node that loses one says so, retries and loses nothing", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  // Every denial is taken back, whatever happens: the broker outlives the test.
  const denials = new Set<() => Promise<void>>();
  const denied = async (...args: Parameters<typeof deny>): Promise<() => Promise<void>> => {
    const allow = await deny(...args);
    denials.add(allow);
    return () => {
      denials.delete(allow);
      return allow();
    };
  };
  await withNodes("secured-acl", async (started, stream) => {
    await createTopic(stream.topic, 4);
    const changelog = `${stream.group}-changelog`;
    const [ports] = nodePorts(1);
    try {
      const allowCreate = await denied("Create", "topic", changelog);
      const refused = startProcessor(ports, [ports], stream, SECURED);
      started.push(refused);
      assert.equal((await refused.exited(60_000)).code, 1, "a node that may not create its changelog exits 1");
      assert.equal(
        refused.stderr.trim().split("\n").at(-1),
        `usershard process: Kafka at ${SASL_SSL}: ${PRINCIPAL} is not authorized to create topic ${changelog} ` +
          `(TOPIC_AUTHORIZATION_FAILED); the ACL that allows it: kafka-acls.sh --add --allow-principal ${PRINCIPAL} ` +
          `--operation Create --topic ${changelog}`,
      );
      await allowCreate();

      const node = startProcessor(ports, [ports], stream, SECURED);
      started.push(node);
      await ready(node, ports);
      const flow = new SteadyStream(stream.topic, { users: 30, perSecond: 100 });
      try {
        await flow.reach(200);
        const allowRead = await denied("Read", "topic", stream.topic);
        await node.waitForOutput(
          new RegExp(
            `reading ${stream.topic}: ${PRINCIPAL} is not authorized to read topic ${stream.topic} ` +
              `\\(TOPIC_AUTHORIZATION_FAILED\\); the ACL that allows it: .* --operation Read --topic ${stream.topic}; ` +
              "trying again until it is allowed",
          ),
          60_000,
        );
        await flow.reach(flow.sent + 200);
        await allowRead();
        await node.waitForOutput(new RegExp(`reading ${stream.topic}: Kafka allows it again`), 60_000);

        const allowWrite = await denied("Write", "topic", changelog);
        await node.waitForOutput(
          new RegExp(`a changelog write failed \\(${PRINCIPAL} is not authorized to write topic ${changelog} `),
          60_000,
        );
        await flow.reach(flow.sent + 200);
        await allowWrite();
        await flow.reach(flow.sent + 200);
      } finally {
        await flow.stop();
      }
      await exactOnEveryNode(testKafka(), stream.topic, [ports]);
      assert.ok(node.running, "the node ran through it all");
      assert.equal(
        node.stderr.match(new RegExp(`reading ${stream.topic}: ${PRINCIPAL} is not authorized`, "g"))?.length,
        1,
        "the lost permission is said once while it lasts, not at every retry",
      );
    } finally {
      await Promise.all([...denials].map((allow) => allow()));
    }
  });
});

Deno.test("with only the ACLs the README lists, a node processes, restores after kill -9 and answers exactly", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  await withNodes("secured-min", async (started, stream) => {
    await createTopic(stream.topic, 4);
    const changelog = `${stream.group}-changelog`;
    const user = await newUser(`minimal-${crypto.randomUUID().slice(0, 8)}`, CLIENT_PROPERTIES);
    const to = ["--allow-principal", user.principal];
    const operations = (...names: string[]) => names.flatMap((name) => ["--operation", name]);
    await allow([...to, ...operations("Read", "Describe"), "--topic", stream.topic, "--group", stream.group]);
    await allow([...to, ...operations("Create", "Describe", "DescribeConfigs", "Read", "Write"), "--topic", changelog]);
    await allow([
      ...to,
      ...operations("Write", "Describe"),
      ...["--transactional-id", `${changelog}-`, "--resource-pattern-type", "prefixed"],
    ]);
    await allow([...to, ...operations("IdempotentWrite"), "--cluster"]);

    const [ports] = nodePorts(1);
    const flags = ["--brokers", SASL_SSL, "--kafka-config", user.properties];
    const first = startProcessor(ports, [ports], stream, flags);
    started.push(first);
    await ready(first, ports);
    const flow = new SteadyStream(stream.topic, { users: 30, perSecond: 100 });
    try {
      await flow.reach(300);
      first.kill("SIGKILL");
      await first.exited();
      const second = startProcessor(ports, [ports], stream, flags);
      started.push(second);
      await ready(second, ports);
      await flow.reach(flow.sent + 300);
    } finally {
      await flow.stop();
    }
    await exactOnEveryNode(testKafka(), stream.topic, [ports]);
    const logs = started.map((node) => node.stderr).join("\n");
    assert.match(logs, /restored shard \d+ from \S+: [1-9]\d* users/, "the second node restored what the first wrote");
    assert.doesNotMatch(logs, /AUTHORIZATION_FAILED/, "no request was refused");
  });
});

/** An unsigned JWT for `subject`, expiring `seconds` from now: what the broker's development validator takes. */
function unsecuredToken(subject: string, seconds: number): string {
  const base64url = (value: unknown) =>
    btoa(JSON.stringify(value)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  const now = Math.floor(Date.now() / 1000);
  return `${base64url({ alg: "none" })}.${base64url({ sub: subject, iat: now, exp: now + seconds })}.`;
}

Deno.test("OAUTHBEARER with a token from a file: a node processes exactly; an expired token is one line, exit 1", async () => {
  assert.ok(RUN_DIR !== "", "KAFKA_SECURED_RUN_DIR names the secured broker's folder (deno task test:secured)");
  const folder = await Deno.makeTempDir();
  const tokenFile = `${folder}/token`;
  const oauth = (file: string) => [
    ...["--brokers", SASL_SSL, "--security-protocol", "SASL_SSL", "--sasl-mechanism", "OAUTHBEARER"],
    ...["--sasl-token-file", file, "--kafka-ca", `${RUN_DIR}/tls/ca.pem`],
  ];
  await Deno.writeTextFile(tokenFile, unsecuredToken("usershard", 3600));
  await withNodes("secured-oauth", async (started, stream) => {
    await createTopic(stream.topic, 4);
    const [ports] = nodePorts(1);
    const node = startProcessor(ports, [ports], stream, oauth(tokenFile));
    started.push(node);
    await ready(node, ports);
    const flow = new SteadyStream(stream.topic, { users: 20, perSecond: 100 });
    try {
      await flow.reach(300);
    } finally {
      await flow.stop();
    }
    await exactOnEveryNode(testKafka(), stream.topic, [ports]);
  });

  const expired = `${folder}/expired`;
  await Deno.writeTextFile(expired, unsecuredToken("usershard", -60));
  const { code, stderr } = await runUsershard([
    "produce",
    "--count",
    "1",
    "--topic",
    "secured-oauth",
    ...oauth(expired),
  ]);
  assert.equal(code, 1, stderr);
  assert.match(
    stderr.trim().split("\n").at(-1)!,
    /refused the SASL authentication \(with OAUTHBEARER: an invalid or expired token/,
  );
});
