/**
 * Topic administration: create the events topic when it is missing, and read
 * its partition count, which is also the number of shards.
 *
 * @module
 */
import { type Admin, type ClusterPartitionMetadata, ConfigResourceTypes } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";
import { asking } from "./authorization.ts";
import { errorChain } from "./client.ts";
import { kafkaErrorCode } from "./error_codes.ts";

const log = getLogger(["usershard", "kafka"]);

/** What {@linkcode ensureTopic} found or made. */
export interface TopicInfo {
  readonly topic: string;
  readonly partitions: number;
  readonly created: boolean;
}

/** Kafka's rule for topic names. */
export function isValidTopicName(name: string): boolean {
  return /^[a-zA-Z0-9._-]{1,249}$/.test(name) && name !== "." && name !== "..";
}

/** How long {@linkcode ensureTopic} waits for a new topic's partitions to have leaders. */
export const TOPIC_READY_TIMEOUT_MS = 30_000;

/**
 * The partition count of `topic`, or `undefined` when it does not exist.
 * Lists topics first: the client retries a missing topic's metadata for
 * seconds before it says the topic is unknown.
 */
export async function partitionCount(admin: Admin, topic: string): Promise<number | undefined> {
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) return undefined;
  return await asking(
    { operation: "Describe", resource: "Topic", name: topic },
    () => knownPartitionCount(admin, topic, false),
  );
}

/** The copies each partition of `topic` has, or `undefined` when it does not exist. */
export async function replicationFactor(admin: Admin, topic: string): Promise<number | undefined> {
  if (!(await admin.listTopics()).includes(topic)) return undefined;
  // The broker that listed it may know it before the one asked for its metadata does.
  return (await readyPartitions(admin, topic, false))[0]?.replicas.length;
}

/** How {@linkcode ensureTopic} creates a missing topic. */
export interface TopicCreation {
  /** Whether the partition count was asked for (rather than a default): a topic with another is warned about. */
  readonly requested?: boolean;
  /** Topic configs (`cleanup.policy`, say). */
  readonly config?: Readonly<Record<string, string>>;
  /** Replicas of each partition; the brokers' `default.replication.factor` when absent. */
  readonly replicationFactor?: number;
}

/**
 * Creates `topic` with `partitions` partitions unless it exists; an existing
 * topic with another count is kept as it is, since changing it would move
 * users between partitions (said with a warning when the count was
 * requested, rather than a default). Resolves once every partition has a
 * leader, so the caller can produce and consume at once.
 */
export async function ensureTopic(
  admin: Admin,
  topic: string,
  partitions: number,
  creation: TopicCreation = {},
): Promise<TopicInfo> {
  const { requested = true, config = {}, replicationFactor = -1 } = creation;
  const existing = await partitionCount(admin, topic);
  if (existing !== undefined) {
    if (existing !== partitions && requested) {
      log.warn(
        "topic {topic} exists with {existing} partitions, not {partitions}; using its {existing} partitions",
        { topic, existing, partitions },
      );
    }
    return { topic, partitions: existing, created: false };
  }
  const configs = Object.entries(config).map(([name, value]) => ({ name, value }));
  let created = true;
  try {
    await asking(
      { operation: "Create", resource: "Topic", name: topic },
      () => admin.createTopics({ topics: [topic], partitions, replicas: replicationFactor, configs }),
    );
  } catch (error) {
    // Another process created it since it was listed: it is there, which is all this asks.
    if (!hasKafkaError(error, ["TOPIC_ALREADY_EXISTS"])) throw error;
    created = false;
  }
  const count = await knownPartitionCount(admin, topic, created);
  if (created) log.info("created topic {topic} with {partitions} partitions", { topic, partitions });
  return { topic, partitions: count, created };
}

/**
 * The partition count of an existing topic once the broker knows it and, with
 * `leaders`, once every partition has a leader (only worth waiting for on a
 * topic just created: an old one may have a broker down, and only its count matters).
 */
async function knownPartitionCount(admin: Admin, topic: string, leaders: boolean): Promise<number> {
  return (await readyPartitions(admin, topic, leaders)).length;
}

/** The partitions of an existing topic once the broker asked knows it (and, with `leaders`, every one has a leader). */
async function readyPartitions(admin: Admin, topic: string, leaders: boolean): Promise<ClusterPartitionMetadata[]> {
  const deadline = Date.now() + TOPIC_READY_TIMEOUT_MS;
  for (let delay = 50;; delay = Math.min(delay * 2, 1000)) {
    let problem: string;
    try {
      const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
      const partitions = metadata.topics.get(topic)?.partitions ?? [];
      const leaderless = leaders ? partitions.filter((p) => p.leader < 0).length : 0;
      if (partitions.length > 0 && leaderless === 0) return partitions;
      problem = `${leaderless} of ${partitions.length} partitions have no leader`;
    } catch (error) {
      if (!isTopicNotReady(error)) throw error;
      problem = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() + delay > deadline) {
      throw new Error(`topic ${topic} is not ready after ${TOPIC_READY_TIMEOUT_MS / 1000} s: ${problem}`);
    }
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Errors a topic gives while the broker is still learning of it or electing its leaders. */
function isTopicNotReady(error: unknown): boolean {
  // The client reports an unknown topic's metadata as a plain "Unknown topic <name>." error, without Kafka's code.
  return hasKafkaError(error, ["UNKNOWN_TOPIC_OR_PARTITION", "LEADER_NOT_AVAILABLE"]) ||
    errorChain(error).some((e) => e.message.startsWith("Unknown topic "));
}

/** Whether Kafka refused with one of `codes` (its error names), anywhere in `error`. */
function hasKafkaError(error: unknown, codes: readonly string[]): boolean {
  return kafkaErrorCode(error, (code) => codes.includes(code)) !== undefined;
}

/** The replicas a topic gets when none are asked for: the brokers' `default.replication.factor`. */
export async function defaultReplicationFactor(admin: Admin): Promise<number> {
  // The admin client has no DescribeCluster; metadata names the brokers as well.
  const { brokers } = await admin.metadata({ topics: [] });
  const [broker] = brokers.keys();
  const [described] = await admin.describeConfigs({
    resources: [{
      resourceType: ConfigResourceTypes.BROKER,
      resourceName: String(broker),
      configurationKeys: ["default.replication.factor"],
    }],
  });
  const value = described?.configs.find((c) => c.name === "default.replication.factor")?.value;
  return Number(value ?? 1);
}
