/**
 * Flags that more than one subcommand takes, declared once so their names,
 * environment variables and defaults cannot drift apart.
 *
 * @module
 */
import { isValidTopicName } from "../kafka/admin.ts";
import { type FlagSpec, UsageError } from "./flags.ts";

/** `--brokers`: Kafka bootstrap brokers. */
export const BROKERS_FLAG = {
  type: "string",
  value: "HOST:PORT,...",
  env: "KAFKA_BROKERS",
  default: "localhost:9092",
  description: "Kafka bootstrap brokers",
} as const satisfies FlagSpec;

/** `--topic`: the purchase events topic. */
export const TOPIC_FLAG = {
  type: "string",
  value: "NAME",
  env: "USERSHARD_TOPIC",
  default: "user-events",
  description: "topic of purchase events; its partition count is the shard count",
} as const satisfies FlagSpec;

/** `--group`: the consumer group, which is also the sharding type name. */
export const GROUP_FLAG = {
  type: "string",
  value: "NAME",
  env: "USERSHARD_GROUP",
  default: "user-processing",
  description: "Kafka consumer group, also the sharding type name (/cluster/shards/NAME)",
} as const satisfies FlagSpec;

/** Reads `--topic`: a name Kafka accepts. */
export function topicFlag(value: string): string {
  if (!isValidTopicName(value)) {
    throw new UsageError(`--topic must be a Kafka topic name ([a-zA-Z0-9._-], at most 249), got '${value}'`);
  }
  return value;
}

/** `--partitions`: the partition count of a topic that has to be created. */
export const PARTITIONS_FLAG = {
  type: "string",
  value: "N",
  env: "USERSHARD_PARTITIONS",
  default: "128",
  description: "partitions when the topic has to be created (an existing topic keeps its count)",
} as const satisfies FlagSpec;

/** `--replication-factor`: copies of each partition of the topics usershard creates. */
export const REPLICATION_FACTOR_FLAG = {
  type: "string",
  value: "N",
  env: "USERSHARD_REPLICATION_FACTOR",
  description:
    "replicas of each partition of the topics this creates (default: the brokers' default.replication.factor)",
} as const satisfies FlagSpec;

/** Reads `--replication-factor`: absent means the brokers' default. */
export function replicationFactorFlag(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9]\d{0,1}$/.test(value)) {
    throw new UsageError(`--replication-factor must be a number from 1 to 99, got '${value}'`);
  }
  return Number(value);
}

/** `--log-level`. */
export const LOG_LEVEL_FLAG = {
  type: "string",
  value: "LEVEL",
  env: "USERSHARD_LOG_LEVEL",
  default: "info",
  description: "trace, debug, info, warning, error or fatal",
} as const satisfies FlagSpec;

/** `--log-format`. */
export const LOG_FORMAT_FLAG = {
  type: "string",
  value: "FORMAT",
  env: "USERSHARD_LOG_FORMAT",
  default: "text",
  description: "text, or json for one JSON object per line (for log collectors)",
} as const satisfies FlagSpec;
