/**
 * Producer throughput: `produce()` at `--rate 0` into a fresh topic on the
 * local broker. Prints events/s; asserts nothing.
 *
 * @module
 */
import { createAdmin } from "../kafka/client.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { produce, PurchaseSender } from "../kafka/producer.ts";
import { type BenchContext, uniqueTopic } from "./context.ts";

/** Produces `events` purchases as fast as the broker takes them and reports the rate. */
export async function benchProduce(context: BenchContext, events = 300_000): Promise<void> {
  const admin = createAdmin({ brokers: context.brokers, clientId: "usershard-bench" });
  const topic = uniqueTopic("bench-produce");
  await ensureTopic(admin, topic, 128).finally(() => admin.close());
  const producer = new PurchaseSender({ brokers: context.brokers, clientId: "usershard-bench" }, topic, 128);
  const summary = await produce(producer, { users: 200, rate: 0, count: events }, new AbortController().signal);
  await producer.close();
  context.report("produce --rate 0 (128 partitions)", `${Math.round(summary.sent / summary.seconds)} events/s`, {
    events: summary.sent,
    seconds: summary.seconds.toFixed(2),
  });
}
