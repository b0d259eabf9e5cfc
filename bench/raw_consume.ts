/**
 * The yardsticks of the throughput benchmarks: a raw client consuming a
 * topic and counting, with no decoding and no work.
 *
 * @module
 */
import type { Kafka } from "kafkajs";
import { Consumer, MessagesStreamModes } from "@platformatic/kafka";
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

/**
 * Raw @platformatic/kafka, the client usershard consumes with: its own
 * message stream over the whole topic, counting, nothing else; events/s.
 */
export async function rawPlatformaticConsume(
  brokers: readonly string[],
  topic: string,
  events: number,
): Promise<number> {
  const started = performance.now();
  const raw = new Consumer({
    clientId: "usershard-bench-raw",
    bootstrapBrokers: [...brokers],
    groupId: uniqueTopic("bench-raw-platformatic"),
    maxWaitTime: 250,
    autocommit: false,
  });
  const stream = await raw.consume({ topics: [topic], mode: MessagesStreamModes.EARLIEST });
  let seen = 0;
  let finished = started;
  for await (const _ of stream) {
    if (++seen >= events) {
      finished = performance.now();
      break;
    }
  }
  await stream.close();
  await raw.close(true);
  return events / ((finished - started) / 1000);
}
