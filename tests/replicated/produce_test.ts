/**
 * `usershard produce` is what users check the totals against: it must ride
 * out the loss of a broker of three and exit 0 only with every event in the
 * topic exactly once.
 */
import assert from "node:assert/strict";
import { seededRandom } from "../../cluster/seeded_random.ts";
import { randomPurchase } from "../../kafka/producer.ts";
import { decodePurchase } from "../../kafka/purchase.ts";
import { BROKERS, createTopic, readTopic, testKafka, withTopic } from "../support/kafka.ts";
import { RunningUsershard } from "../support/process.ts";
import { killBroker, leaders, startBrokers } from "./brokers.ts";

const COUNT = 3000;
const SEED = 7;
const USERS = 200;

Deno.test("produce rides out kill -9 of the broker leading most partitions: exit 0, every event once", async () => {
  await withTopic("replicated-produce", async (topic) => {
    const kafka = testKafka();
    await createTopic(topic, 16);
    const producer = new RunningUsershard([
      "produce",
      ...["--topic", topic, "--brokers", BROKERS.join(",")],
      ...["--count", String(COUNT), "--rate", "200", "--seed", String(SEED), "--users", String(USERS)],
    ]);
    try {
      await producer.waitForOutput(/sent \d+ events \(/, 60_000);
      const [[victim, led]] = await leaders(topic);
      console.log(`kill -9 of broker ${victim}, which leads ${led} of 16 partitions`);
      await killBroker(victim);
      const from = producer.stderr.length;
      await producer.waitForOutput(/sent \d+ events|sent \d+ events to/, 120_000);
      await startBrokers();
      const status = await producer.exited(180_000);
      assert.equal(status.code, 0, producer.stderr.slice(from));
      assert.match(producer.stderr, new RegExp(`sent ${COUNT} events to ${topic}`));
    } finally {
      await producer.stop();
      await startBrokers();
    }
    // The topic holds exactly the seed's events: none lost, none twice.
    const random = seededRandom(SEED);
    const key = (p: { userId: string; product: string; quantity: number; price: number }) =>
      `${p.userId}|${p.product}|${p.quantity}|${p.price}`;
    const expected = new Map<string, number>();
    for (let i = 0; i < COUNT; i++) {
      const k = key(randomPurchase(USERS, random));
      expected.set(k, (expected.get(k) ?? 0) + 1);
    }
    const found = new Map<string, number>();
    const records = await readTopic(kafka, topic, 60_000);
    for (const record of records) {
      const decoded = decodePurchase(record.key, record.value);
      assert.ok(decoded.ok, `record ${record.partition}@${record.offset} is malformed`);
      const k = key(decoded.purchase);
      found.set(k, (found.get(k) ?? 0) + 1);
    }
    const differences = [...new Set([...expected.keys(), ...found.keys()])]
      .filter((k) => expected.get(k) !== found.get(k))
      .map((k) => `${k}: sent ${expected.get(k) ?? 0}, in the topic ${found.get(k) ?? 0}`);
    assert.deepEqual(differences.slice(0, 5), [], `${records.length} records in the topic, ${COUNT} sent`);
    assert.equal(records.length, COUNT);
  });
});
