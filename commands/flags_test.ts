import assert from "node:assert/strict";
import {
  durationFlag,
  endpointFlag,
  helpText,
  hostPortList,
  intFlag,
  numberFlag,
  parseFlags,
  UsageError,
} from "./flags.ts";

const spec = {
  name: "demo",
  summary: "shows flags",
  usage: "usershard demo",
  flags: {
    brokers: { type: "string", env: "DEMO_BROKERS", default: "localhost:9092", description: "brokers" },
    count: { type: "string", description: "how many" },
    json: { type: "boolean", description: "print JSON" },
  },
} as const;

const noEnv = () => undefined;

Deno.test("parseFlags() prefers the flag, then the environment, then the default", () => {
  const env = (name: string) => (name === "DEMO_BROKERS" ? "kafka:9092" : undefined);
  assert.equal(parseFlags(spec, ["--brokers", "a:1"], env).flags.brokers, "a:1");
  assert.equal(parseFlags(spec, [], env).flags.brokers, "kafka:9092");
  assert.equal(parseFlags(spec, [], noEnv).flags.brokers, "localhost:9092");
  assert.equal(parseFlags(spec, [], noEnv).flags.count, undefined);
});

Deno.test("parseFlags() returns booleans, positionals and --help", () => {
  const parsed = parseFlags(spec, ["7", "--json", "8", "-h"], noEnv);
  assert.equal(parsed.flags.json, true);
  assert.deepEqual(parsed.positionals, ["7", "8"]);
  assert.equal(parsed.help, true);
});

Deno.test("parseFlags() refuses unknown flags and missing values in one line", () => {
  assert.throws(() => parseFlags(spec, ["--nope"], noEnv), (e) => e instanceof UsageError && !e.message.includes("\n"));
  assert.throws(() => parseFlags(spec, ["--count"], noEnv), UsageError);
});

Deno.test("helpText() lists every flag with its default and environment variable", () => {
  const text = helpText(spec);
  assert.match(text, /--brokers\s+brokers \(env DEMO_BROKERS; default localhost:9092\)/);
  assert.match(text, /--count\s+how many\n/);
  assert.match(text, /-h, --help/);
});

Deno.test("intFlag(), numberFlag() and hostPortList() say what they expected", () => {
  assert.equal(intFlag("users", "200", { min: 1 }), 200);
  assert.throws(() => intFlag("users", "0", { min: 1 }), /--users must be an integer of at least 1, got '0'/);
  assert.throws(() => intFlag("port", "70000", { min: 1, max: 65535 }), /from 1 to 65535/);
  assert.throws(() => intFlag("count", "1.5"), UsageError);
  assert.equal(numberFlag("rate", "0.5"), 0.5);
  assert.throws(() => numberFlag("rate", "-1"), /--rate must be a number of at least 0, got '-1'/);
  assert.deepEqual(hostPortList("seeds", "a:1, b:2"), ["a:1", "b:2"]);
  assert.throws(() => hostPortList("seeds", "a:1,b"), /--seeds expects host:port entries, got 'b'/);
  assert.throws(() => hostPortList("seeds", "a:0"), UsageError);
});

Deno.test("endpointFlag() takes host:port or a bare port, and durationFlag() only durations above zero", () => {
  assert.equal(endpointFlag("node", "8552", "localhost"), "localhost:8552");
  assert.equal(endpointFlag("grpc", "10.0.0.5:8082", "localhost"), "10.0.0.5:8082");
  assert.throws(() => endpointFlag("node", "99999", "localhost"), /--node must be a port \(1-65535\) or host:port/);
  assert.throws(() => endpointFlag("grpc", "http://x:1", "localhost"), UsageError);
  assert.equal(durationFlag("timeout", "1.5s"), 1500);
  assert.equal(durationFlag("down-after", "1h"), 3_600_000);
  assert.throws(() => durationFlag("timeout", "0s"), /--timeout must be a duration above zero/);
  assert.throws(() => durationFlag("timeout", "5"), UsageError);
});

Deno.test("parseFlags() says where each value came from", () => {
  const env = (name: string) => (name === "DEMO_BROKERS" ? "kafka:9092" : undefined);
  assert.deepEqual(parseFlags(spec, ["--count", "3"], env).sources, { brokers: "env", count: "flag", json: "default" });
});
