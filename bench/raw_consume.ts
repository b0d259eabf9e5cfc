/**
 * The yardstick of the throughput benchmarks: raw kafkajs consuming a topic
 * and counting, with no decoding and no work.
 *
 * @module
 */
import type { Kafka } from "kafkajs";
import { uniqueTopic } from "./context.ts";

/** Raw kafkajs: consume the whole topic and count, nothing else; events/s. */
export async function rawConsume(kafka: Kafka, topic: string, events: number): Promise<number> {
  const raw = kafka.consumer({ groupId: uniqueTopic("bench-raw"), maxWaitTimeInMs: 250 });
  const started = performance.now();
  await raw.connect();
  await raw.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  const done = Promise.withResolvers<number>();
  await raw.run({
    partitionsConsumedConcurrently: 8,
    eachBatch: ({ batch }) => {
      seen += batch.messages.length;
      if (seen >= events) done.resolve(performance.now());
      return Promise.resolve();
    },
  });
  const seconds = (await done.promise - started) / 1000;
  await raw.disconnect();
  return events / seconds;
}
