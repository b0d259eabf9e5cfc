import assert from "node:assert/strict";
import { type KafkaSecurityFlags, kafkaSecurityFlags } from "./common_flags.ts";
import { UsageError } from "./flags.ts";
import type { KafkaSecurity } from "../kafka/security.ts";

const none: KafkaSecurityFlags = {
  "security-protocol": undefined,
  "sasl-mechanism": undefined,
  "sasl-username": undefined,
  "sasl-password-file": undefined,
  "sasl-token-file": undefined,
  "kafka-ca": undefined,
  "kafka-cert": undefined,
  "kafka-key": undefined,
  "kafka-config": undefined,
};
const files: Record<string, string> = {
  "/run/secrets/kafka": "from-file\n",
  "/etc/ca.pem": "CA PEM",
  "/etc/client.properties": [
    "security.protocol=SASL_SSL",
    "sasl.mechanism=SCRAM-SHA-512",
    'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="cfg" password="from-config";',
    "ssl.truststore.type=PEM",
    "ssl.truststore.location=/etc/ca.pem",
  ].join("\n"),
};
/** The user and password SASL settings hold; fails for a token. */
function passwordSasl(security: KafkaSecurity | undefined): { username: string; password: string; mechanism: string } {
  const sasl = security?.sasl;
  assert.ok(sasl && "password" in sasl, "user and password SASL");
  return { username: sasl.username, password: sasl.password(), mechanism: sasl.mechanism };
}

const readFile = (path: string) => {
  if (!(path in files)) throw new Error("No such file or directory");
  return files[path];
};

Deno.test("no security flags: PLAINTEXT", () => {
  assert.equal(kafkaSecurityFlags(none, () => undefined, readFile), undefined);
});

Deno.test("the password comes from a file (its newline dropped) before KAFKA_SASL_PASSWORD, never from a flag", () => {
  const flags = { ...none, "security-protocol": "SASL_SSL", "sasl-mechanism": "PLAIN", "sasl-username": "app" };
  const env = (name: string) => (name === "KAFKA_SASL_PASSWORD" ? "from-env" : undefined);
  assert.equal(passwordSasl(kafkaSecurityFlags(flags, env, readFile)).password, "from-env");
  const withFile = { ...flags, "sasl-password-file": "/run/secrets/kafka" };
  assert.equal(passwordSasl(kafkaSecurityFlags(withFile, env, readFile)).password, "from-file");
});

Deno.test("a properties file gives everything; flags win over it", () => {
  const fromConfig = kafkaSecurityFlags(
    { ...none, "kafka-config": "/etc/client.properties" },
    () => undefined,
    readFile,
  );
  assert.equal(fromConfig?.protocol, "SASL_SSL");
  assert.deepEqual(passwordSasl(fromConfig), { mechanism: "SCRAM-SHA-512", username: "cfg", password: "from-config" });
  assert.equal(fromConfig?.tls?.ca, "CA PEM");
  const overridden = kafkaSecurityFlags(
    { ...none, "kafka-config": "/etc/client.properties", "sasl-username": "flag", "sasl-mechanism": "PLAIN" },
    () => undefined,
    readFile,
  );
  assert.deepEqual(passwordSasl(overridden), { mechanism: "PLAIN", username: "flag", password: "from-config" });
});

Deno.test("mistakes are usage errors of one line, without the password", () => {
  const refused = (flags: KafkaSecurityFlags, pattern: RegExp) =>
    assert.throws(
      () => kafkaSecurityFlags(flags, (name) => (name === "KAFKA_SASL_PASSWORD" ? "hunter2" : undefined), readFile),
      (e: unknown) => e instanceof UsageError && pattern.test(e.message) && !e.message.includes("hunter2"),
    );
  refused({ ...none, "kafka-ca": "/nowhere.pem", "security-protocol": "SSL" }, /cannot read --kafka-ca \/nowhere\.pem/);
  refused({ ...none, "security-protocol": "SASL_SSL", "sasl-username": "app" }, /needs a SASL mechanism/);
  refused({ ...none, "sasl-password-file": "/missing" }, /cannot read --sasl-password-file \/missing/);
});

Deno.test("OAUTHBEARER reads its token from the file at each authentication, and names the token's subject", () => {
  const claims = btoa(JSON.stringify({ sub: "app", exp: 2_000_000_000 })).replace(/=+$/, "");
  const tokens = [`eyJhbGciOiJub25lIn0.${claims}.`, "second-token"];
  const flags = { ...none, "security-protocol": "SASL_SSL", "sasl-mechanism": "OAUTHBEARER", "sasl-token-file": "/t" };
  const security = kafkaSecurityFlags(flags, () => undefined, (path) => (path === "/t" ? `${tokens[0]}\n` : ""));
  const sasl = security?.sasl;
  assert.ok(sasl?.mechanism === "OAUTHBEARER");
  assert.equal(sasl.subject, "app");
  assert.equal(sasl.token(), tokens[0]);
  tokens.shift();
  assert.equal(sasl.token(), "second-token", "a refreshed token is read the next time");
  assert.throws(
    () => kafkaSecurityFlags({ ...flags, "sasl-mechanism": "PLAIN", "sasl-username": "app" }, () => "pw", readFile),
    /cannot read --sasl-token-file \/t/,
  );
});
