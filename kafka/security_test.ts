import assert from "node:assert/strict";
import { clientProperties, kafkaSecurity, SecuritySettingError, tokenSubject } from "./security.ts";

Deno.test("PLAINTEXT is no security at all; a mechanism alone means SASL_SSL", () => {
  assert.equal(kafkaSecurity({}), undefined);
  assert.equal(kafkaSecurity({ protocol: "plaintext" }), undefined);
  const security = kafkaSecurity({ mechanism: "SCRAM-SHA-512", username: "app", password: "pw" });
  assert.equal(security?.protocol, "SASL_SSL");
  assert.deepEqual(security?.tls, { ca: undefined, cert: undefined, key: undefined });
});

Deno.test("the password is behind a function: printing or serialising the settings never shows it", () => {
  const security = kafkaSecurity({
    protocol: "SASL_PLAINTEXT",
    mechanism: "PLAIN",
    username: "app",
    password: "s3cr3t",
  })!;
  assert.ok(security.sasl && "password" in security.sasl);
  assert.equal(security.sasl.password(), "s3cr3t");
  assert.ok(!JSON.stringify(security).includes("s3cr3t"));
  assert.ok(!Deno.inspect(security, { depth: 10 }).includes("s3cr3t"));
});

Deno.test("a token's subject is its JWT sub claim; a token that is no JWT has none", () => {
  assert.equal(tokenSubject("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhcHAifQ."), "app");
  assert.equal(tokenSubject("opaque"), undefined);
  assert.equal(tokenSubject("a.not-base64!.c"), undefined);
  const security = kafkaSecurity({ mechanism: "OAUTHBEARER", token: () => "opaque" });
  assert.equal(security?.sasl?.mechanism, "OAUTHBEARER");
});

Deno.test("settings that cannot work are one line each", () => {
  const refused = (input: Parameters<typeof kafkaSecurity>[0], pattern: RegExp) =>
    assert.throws(
      () => kafkaSecurity(input),
      (e: unknown) => e instanceof SecuritySettingError && pattern.test(e.message),
    );
  refused({ protocol: "TLS" }, /one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'/);
  refused({ protocol: "SASL_SSL", username: "app", password: "pw" }, /needs a SASL mechanism/);
  refused({ protocol: "SASL_SSL", mechanism: "GSSAPI", username: "app", password: "pw" }, /got 'GSSAPI'/);
  refused({ protocol: "SASL_SSL", mechanism: "PLAIN", password: "pw" }, /needs a SASL user name/);
  refused({ protocol: "SASL_SSL", mechanism: "PLAIN", username: "app" }, /needs the SASL password/);
  refused({ protocol: "PLAINTEXT", ca: "pem" }, /needs SSL or SASL_SSL/);
  refused({ protocol: "SSL", cert: "pem" }, /needs its key/);
  refused({ protocol: "SSL", mechanism: "PLAIN" }, /needs SASL_PLAINTEXT or SASL_SSL/);
  refused({ protocol: "SASL_SSL", mechanism: "OAUTHBEARER" }, /OAUTHBEARER needs a token: --sasl-token-file/);
  refused(
    { mechanism: "PLAIN", username: "app", password: "pw", token: () => "t" },
    /a token is for SASL mechanism OAUTHBEARER/,
  );
});

Deno.test("a Java client properties file, as a managed Kafka hands it out", () => {
  const { input, files, unused } = clientProperties([
    "# from the console",
    "bootstrap.servers=pkc-1.example.com:9092",
    "security.protocol=SASL_SSL",
    "sasl.mechanism=PLAIN",
    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\",
    '    username="KEY" password="SECRET";',
    "ssl.truststore.type=PEM",
    "ssl.truststore.location=/etc/kafka/ca.pem",
  ].join("\n"));
  assert.deepEqual(input, { protocol: "SASL_SSL", mechanism: "PLAIN", username: "KEY", password: "SECRET" });
  assert.deepEqual(files, { ca: "/etc/kafka/ca.pem" });
  assert.deepEqual(unused, ["bootstrap.servers"]);
  assert.throws(() => clientProperties("ssl.truststore.type=JKS"), /PEM files only/);
});
