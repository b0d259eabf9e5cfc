/**
 * `usershard produce`: writes random user purchase events to Kafka.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";
import { type CommandSpec, hostPortList, intFlag, numberFlag, UsageError } from "./flags.ts";
import { CliError, defineCommand } from "./command.ts";
import {
  BROKERS_FLAG,
  KAFKA_SECURITY_FLAGS,
  kafkaSecurityFlags,
  LOG_FORMAT_FLAG,
  LOG_LEVEL_FLAG,
  PARTITIONS_FLAG,
  REPLICATION_FACTOR_FLAG,
  replicationFactorFlag,
  TOPIC_FLAG,
  topicFlag,
} from "./common_flags.ts";
import { onStopSignal } from "./signals.ts";
import { logFormatFlag, logLevelFlag, setUpLogging } from "./logging.ts";
import { kafkaPrincipal, notAuthorized } from "../kafka/authorization.ts";
import { createAdmin, kafkaErrorLine } from "../kafka/client.ts";
import { ensureTopic } from "../kafka/admin.ts";
import { seededRandom } from "../cluster/seeded_random.ts";
import { PER_EVENT_LOG_MAX_RATE, produce, ProduceFailed, PurchaseSender } from "../kafka/producer.ts";

/** Flags of `usershard produce`. */
export const produceSpec = {
  name: "produce",
  summary: "writes user purchase events to Kafka, keyed by user id",
  usage: "usershard produce [--rate N] [--count N] [--users N] [--topic T] [--brokers HOST:PORT,...]",
  flags: {
    brokers: BROKERS_FLAG,
    ...KAFKA_SECURITY_FLAGS,
    topic: TOPIC_FLAG,
    partitions: PARTITIONS_FLAG,
    "replication-factor": REPLICATION_FACTOR_FLAG,
    users: { type: "string", value: "N", default: "200", description: "user ids are 0..N-1" },
    rate: {
      type: "string",
      value: "N",
      default: "1",
      description: "events per second; 0 sends as fast as the broker takes them",
    },
    count: { type: "string", value: "N", description: "stop after N events (default: until interrupted)" },
    seed: {
      type: "string",
      value: "N",
      description: "seed of the random purchases: the same seed sends the same events (default: random)",
    },
    "log-level": LOG_LEVEL_FLAG,
    "log-format": LOG_FORMAT_FLAG,
  },
  details: `Up to ${PER_EVENT_LOG_MAX_RATE} events/s each event is logged ("Sending message to user N");
faster rates log a progress line every 5 s. Ctrl-C stops after the events already
handed to Kafka are acknowledged, prints a summary and exits 0.

Example: usershard produce --rate 0 --count 100000`,
} as const satisfies CommandSpec;

/** `usershard produce`. */
export const produceCommand = defineCommand(produceSpec, async (flags, positionals, sources) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const brokers = hostPortList("brokers", flags.brokers);
  const kafka = { brokers, clientId: "usershard-producer", security: kafkaSecurityFlags(flags) };
  const topicName = topicFlag(flags.topic);
  const partitions = intFlag("partitions", flags.partitions, { min: 1, max: 10_000 });
  const users = intFlag("users", flags.users, { min: 1 });
  const rate = numberFlag("rate", flags.rate);
  const count = flags.count === undefined ? undefined : intFlag("count", flags.count, { min: 0 });
  const random = flags.seed === undefined ? undefined : seededRandom(intFlag("seed", flags.seed, { min: 0 }));
  await setUpLogging(logLevelFlag(flags["log-level"]), logFormatFlag(flags["log-format"]));
  const log = getLogger(["usershard", "producer"]);

  const admin = createAdmin(kafka);
  let producer: PurchaseSender | undefined;
  const stop = new AbortController();
  const stopListening = onStopSignal(() => {
    log.info("interrupted; waiting for Kafka to acknowledge what was sent (Ctrl-C again to quit at once)");
    stop.abort();
  }, () => Deno.exit(130));
  try {
    const topic = await ensureTopic(admin, topicName, partitions, {
      requested: sources.partitions !== "default",
      replicationFactor: replicationFactorFlag(flags["replication-factor"]),
    });
    await admin.close();
    producer = new PurchaseSender(kafka, topic.topic, topic.partitions);
    log.info("producing to {topic} ({partitions} partitions) at {brokers}, users 0..{last}, {pace}", {
      topic: topic.topic,
      partitions: topic.partitions,
      brokers: brokers.join(","),
      last: users - 1,
      pace: rate > 0 ? `${rate} events/s` : "as fast as possible",
    });
    const summary = await produce(producer, { users, rate, count, random }, stop.signal);
    const perSecond = summary.seconds > 0 ? Math.round(summary.sent / summary.seconds) : summary.sent;
    log.info("sent {sent} events to {topic} in {seconds} s ({perSecond} events/s)", {
      sent: summary.sent,
      topic: topic.topic,
      seconds: summary.seconds.toFixed(1),
      perSecond,
    });
    return 0;
  } catch (error) {
    const sent = error instanceof ProduceFailed
      ? `; ${error.sent} events were acknowledged before that, and are in the topic once each; the rest were not sent`
      : "";
    const cause = error instanceof ProduceFailed ? error.cause : error;
    const refused = notAuthorized(cause, [{ operation: "Write", resource: "Topic", name: topicName }]);
    throw new CliError(`${kafkaErrorLine(refused ?? cause, brokers, kafkaPrincipal(kafka.security))}${sent}`);
  } finally {
    stopListening();
    await Promise.allSettled([producer?.close(), admin.close()]);
  }
});
