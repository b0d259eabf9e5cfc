/**
 * Flags that more than one subcommand takes, declared once so their names,
 * environment variables and defaults cannot drift apart.
 *
 * @module
 */
import { isValidTopicName } from "../kafka/admin.ts";
import { fileFlag, type FlagSpec, UsageError } from "./flags.ts";
import {
  clientProperties,
  type KafkaSecurity,
  kafkaSecurity,
  type SecurityInput,
  SecuritySettingError,
} from "../kafka/security.ts";

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

/**
 * The flags that secure the Kafka connections, named after the Java client's
 * settings. The SASL password is never a flag, so that it is never on a
 * command line: `KAFKA_SASL_PASSWORD`, or a file.
 */
export const KAFKA_SECURITY_FLAGS = {
  "security-protocol": {
    type: "string",
    value: "PROTOCOL",
    env: "KAFKA_SECURITY_PROTOCOL",
    description: "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (security.protocol; default PLAINTEXT)",
  },
  "sasl-mechanism": {
    type: "string",
    value: "MECHANISM",
    env: "KAFKA_SASL_MECHANISM",
    description: "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER (sasl.mechanism)",
  },
  "sasl-username": {
    type: "string",
    value: "USER",
    env: "KAFKA_SASL_USERNAME",
    description: "the SASL user; its password comes from KAFKA_SASL_PASSWORD or --sasl-password-file",
  },
  "sasl-password-file": {
    type: "string",
    value: "FILE",
    env: "KAFKA_SASL_PASSWORD_FILE",
    description: "a file holding the SASL password (trailing newline ignored)",
  },
  "sasl-token-file": {
    type: "string",
    value: "FILE",
    env: "KAFKA_SASL_TOKEN_FILE",
    description: "for OAUTHBEARER, a file holding the token; read again at each authentication, so whatever " +
      "refreshes it there is followed",
  },
  "kafka-ca": {
    type: "string",
    value: "FILE",
    env: "KAFKA_SSL_CA",
    description: "PEM CA certificates to trust for the brokers (default: the system's)",
  },
  "kafka-cert": {
    type: "string",
    value: "FILE",
    env: "KAFKA_SSL_CERT",
    description: "PEM client certificate, for brokers that ask for one (mutual TLS)",
  },
  "kafka-key": {
    type: "string",
    value: "FILE",
    env: "KAFKA_SSL_KEY",
    description: "PEM key of --kafka-cert",
  },
  "kafka-config": {
    type: "string",
    value: "FILE",
    env: "KAFKA_CONFIG",
    description: "Java client properties (security.protocol, sasl.mechanism, sasl.jaas.config, PEM ssl.* files); " +
      "flags and their variables win over it",
  },
} as const satisfies Readonly<Record<string, FlagSpec>>;

/** The values of {@linkcode KAFKA_SECURITY_FLAGS}. */
export type KafkaSecurityFlags = { readonly [K in keyof typeof KAFKA_SECURITY_FLAGS]: string | undefined };

/**
 * Reads the security flags (and the files they name) into checked settings;
 * `undefined` for PLAINTEXT. Any mistake is a {@linkcode UsageError} of one
 * line that never holds the password.
 */
export function kafkaSecurityFlags(
  flags: KafkaSecurityFlags,
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
  readFile: (path: string) => string = (path) => Deno.readTextFileSync(path),
): KafkaSecurity | undefined {
  const read = (flag: string, path: string) => fileFlag(flag, path, readFile);
  try {
    const properties = flags["kafka-config"] === undefined
      ? { input: {} as SecurityInput, files: {} as Record<string, string | undefined> }
      : clientProperties(read("kafka-config", flags["kafka-config"]));
    const file = (flag: "kafka-ca" | "kafka-cert" | "kafka-key", fromConfig: string | undefined) => {
      const path = flags[flag] ?? fromConfig;
      return path === undefined ? undefined : read(flag, path);
    };
    const tokenFile = flags["sasl-token-file"];
    // Read now, so that a missing file is a usage error; then at each authentication, for a refreshed token.
    if (tokenFile !== undefined) read("sasl-token-file", tokenFile);
    const token = tokenFile === undefined ? undefined : () => readFile(tokenFile).trim();
    const passwordFile = flags["sasl-password-file"];
    const password = passwordFile !== undefined
      ? read("sasl-password-file", passwordFile).replace(/\r?\n$/, "")
      : env("KAFKA_SASL_PASSWORD") ?? properties.input.password;
    return kafkaSecurity({
      protocol: flags["security-protocol"] ?? properties.input.protocol,
      mechanism: flags["sasl-mechanism"] ?? properties.input.mechanism,
      username: flags["sasl-username"] ?? properties.input.username,
      password,
      token,
      ca: file("kafka-ca", properties.files.ca) ?? properties.input.ca,
      cert: file("kafka-cert", properties.files.cert),
      key: file("kafka-key", properties.files.key),
    });
  } catch (error) {
    if (error instanceof SecuritySettingError) throw new UsageError(error.message);
    throw error;
  }
}
