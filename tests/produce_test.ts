import assert from "node:assert/strict";
import { decodePurchase } from "../kafka/purchase.ts";
import { partitionFor } from "../kafka/partitioner.ts";
import { MAX_PRICE, PRODUCTS } from "../kafka/producer.ts";
import { runUsershard } from "./support/cli.ts";
import { javaPartitions } from "./support/java.ts";
import { BROKERS, createTopic, readTopic, testKafka, withTopic } from "./support/kafka.ts";
import { freePort, RunningUsershard } from "./support/process.ts";

const brokers = BROKERS.join(",");

/** `usershard produce` against the test broker, into `topic`. */
const produceInto = (topic: string, ...more: string[]) => ["produce", "--brokers", brokers, "--topic", topic, ...more];

Deno.test("produce creates the topic and every record lands in Java's partition for its key", () =>
  withTopic("produce", async (topic) => {
    const result = await runUsershard(
      produceInto(topic, "--partitions", "12", "--users", "50", "--rate", "0", "--count", "300"),
    );
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`created topic ${topic} with 12 partitions`));
    assert.match(result.stderr, /sent 300 events/);

    const kafka = testKafka();
    const admin = kafka.admin();
    await admin.connect();
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.disconnect();
    assert.equal(metadata.topics[0].partitions.length, 12);

    const records = await readTopic(kafka, topic);
    assert.equal(records.length, 300);
    const java = await javaPartitions(records.map((r) => new Uint8Array(r.key ?? [])), 12);
    records.forEach((record, i) => {
      const decoded = decodePurchase(record.key, record.value);
      assert.ok(decoded.ok, `record ${record.partition}/${record.offset}: ${!decoded.ok && decoded.reason}`);
      const { userId, product, quantity, price } = decoded.purchase;
      assert.ok(Number(userId) >= 0 && Number(userId) < 50, `user ${userId}`);
      assert.ok(PRODUCTS.includes(product), product);
      assert.ok(quantity >= 1 && quantity <= 5, `quantity ${quantity}`);
      assert.ok(price >= 0 && price < MAX_PRICE, `price ${price}`);
      assert.equal(record.partition, java[i].partition, `user ${userId} landed in ${record.partition}`);
      assert.equal(record.partition, partitionFor(userId, 12));
    });
  }));

Deno.test("produce keeps an existing topic's partition count and says so", () =>
  withTopic("produce-existing", async (topic) => {
    const kafka = testKafka();
    await createTopic(topic, 5);

    const asked = await runUsershard(produceInto(topic, "--partitions", "12", "--rate", "0", "--count", "20"));
    assert.equal(asked.code, 0, asked.stderr);
    assert.match(asked.stderr, new RegExp(`WARNING.*topic ${topic} exists with 5 partitions, not 12; using its 5`));
    // Without --partitions nobody asked for 128, so there is nothing to warn about.
    const unasked = await runUsershard(produceInto(topic, "--rate", "0", "--count", "20"));
    assert.equal(unasked.code, 0, unasked.stderr);
    assert.doesNotMatch(unasked.stderr, /WARNING/);
    assert.match(unasked.stderr, new RegExp(`producing to ${topic} \\(5 partitions\\)`));
    const records = await readTopic(kafka, topic);
    assert.equal(records.length, 40);
    for (const record of records) assert.equal(record.partition, partitionFor(String(record.key), 5));
  }));

Deno.test("produce reports an unreachable broker in one line, in bounded time", async () => {
  const dead = `127.0.0.1:${freePort()}`;
  const started = performance.now();
  const result = await runUsershard(["produce", "--brokers", dead, "--count", "1"], { timeoutMs: 30_000 });
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
  assert.match(result.stderr, new RegExp(`^usershard produce: cannot reach Kafka at ${dead}: .*ECONNREFUSED`));
  assert.ok(performance.now() - started < 30_000);
});

Deno.test("produce refuses bad flags with one line and exit code 2", async () => {
  const cases: [string[], RegExp][] = [
    [["--rate", "fast"], /--rate must be a number of at least 0, got 'fast'/],
    [["--users", "0"], /--users must be an integer of at least 1/],
    [["--count=-3"], /--count must be an integer of at least 0, got '-3'/],
    [["--count", "-3"], /--count needs a value; write --count=VALUE/],
    [["--partitions", "0"], /--partitions must be an integer from 1/],
    [["--brokers", "localhost"], /--brokers expects host:port entries, got 'localhost'/],
    [["--topic", "bad topic!"], /--topic must be a Kafka topic name/],
    [["--colour"], /usershard produce: unknown flag --colour \(see usershard produce --help\)$/m],
    [["extra"], /unexpected argument 'extra'/],
  ];
  for (const [args, message] of cases) {
    const result = await runUsershard(["produce", ...args]);
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stderr}`);
    assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
    assert.match(result.stderr, message);
  }
  // A bad value from the environment is named by its variable, which is what to fix.
  const fromEnv = await runUsershard(["produce"], { env: { USERSHARD_PARTITIONS: "abc" } });
  assert.equal(fromEnv.code, 2);
  assert.match(fromEnv.stderr, /^usershard produce: USERSHARD_PARTITIONS \(--partitions\) must be an integer/);
});

Deno.test("produce logs each event at low rates and Ctrl-C flushes, summarises and exits 0", () =>
  withTopic("produce-interrupt", async (topic) => {
    const producer = new RunningUsershard(produceInto(topic, "--partitions", "3", "--rate", "8"));
    try {
      await producer.waitForOutput(/(Sending message to user \d+[\s\S]*){3}/);
      producer.kill("SIGINT");
      const status = await producer.exited();
      assert.equal(status.code, 0, producer.stderr);
      const sent = Number(producer.stderr.match(/sent (\d+) events to/)?.[1]);
      assert.ok(sent >= 3, producer.stderr);
      const logged = producer.stderr.match(/Sending message to user \d+/g)?.length;
      assert.equal(logged, sent, "one line per event sent");
      assert.equal((await readTopic(testKafka(), topic)).length, sent);
    } finally {
      await producer.stop();
    }
  }));

Deno.test("produce --log-format json writes every log line, at every level, as one JSON object", () =>
  withTopic("produce-json-logs", async (topic) => {
    const result = await runUsershard(
      produceInto(
        topic,
        "--partitions",
        "2",
        "--rate",
        "0",
        "--count",
        "20",
        "--log-format",
        "json",
        "--log-level",
        "debug",
      ),
    );
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stderr.trimEnd().split("\n");
    const records = lines.map((line) => {
      const record = JSON.parse(line);
      assert.match(record["@timestamp"], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, line);
      assert.ok(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].includes(record.level), line);
      assert.match(record.logger, /^usershard(\.[\w-]+)+$/, line);
      assert.equal(typeof record.message, "string", line);
      return record;
    });
    const sent = records.find((r) => r.logger === "usershard.producer" && r.message.startsWith("sent "));
    assert.equal(sent?.message.split(" in ")[0], `sent 20 events to ${topic}`, result.stderr);
    assert.equal(sent?.sent, 20);
    assert.equal(sent?.topic, topic);

    const bad = await runUsershard(produceInto(topic, "--log-format", "yaml"));
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr,
      "usershard produce: --log-format must be one of text, json, got 'yaml' (see usershard produce --help)\n",
    );
  }));

Deno.test("usershard --help lists the commands and produce --help every flag with its default", async () => {
  const top = await runUsershard(["--help"]);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /produce\s+writes user purchase events/);
  const help = await runUsershard(["produce", "--help"]);
  assert.equal(help.code, 0);
  for (const flag of ["brokers", "topic", "partitions", "users", "rate", "count", "log-level", "log-format"]) {
    assert.match(help.stdout, new RegExp(`--${flag}`));
  }
  assert.match(help.stdout, /env KAFKA_BROKERS; default localhost:9092/);
});
