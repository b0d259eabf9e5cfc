/**
 * Topic administration: create the events topic when it is missing, and read
 * its partition count, which is also the number of shards.
 *
 * @module
 */
import type { Admin } from "kafkajs";
import { getLogger } from "@logtape/logtape";
import { errorChain } from "./client.ts";

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
 * Lists topics first: asking kafkajs for a missing topic's metadata retries.
 */
export async function partitionCount(admin: Admin, topic: string): Promise<number | undefined> {
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) return undefined;
  return await knownPartitionCount(admin, topic, false);
}

/** The copies each partition of `topic` has, or `undefined` when it does not exist. */
export async function replicationFactor(admin: Admin, topic: string): Promise<number | undefined> {
  if (!(await admin.listTopics()).includes(topic)) return undefined;
  const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
  return topics[0]?.partitions[0]?.replicas.length;
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
  const configEntries = Object.entries(config).map(([name, value]) => ({ name, value }));
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions: partitions, replicationFactor, configEntries }],
    waitForLeaders: false,
  });
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
  const deadline = Date.now() + TOPIC_READY_TIMEOUT_MS;
  for (let delay = 50;; delay = Math.min(delay * 2, 1000)) {
    let problem: string;
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics[0]?.partitions ?? [];
      const leaderless = leaders ? partitions.filter((p) => p.leader < 0).length : 0;
      if (partitions.length > 0 && leaderless === 0) return partitions.length;
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
  return errorChain(error).some((e) => {
    const type = (e as Error & { type?: unknown }).type;
    return type === "UNKNOWN_TOPIC_OR_PARTITION" || type === "LEADER_NOT_AVAILABLE";
  });
}

/** kafkajs's ConfigResourceTypes.BROKER. */
const BROKER_RESOURCE = 4;

/** The replicas a topic gets when none are asked for: the brokers' `default.replication.factor`. */
export async function defaultReplicationFactor(admin: Admin): Promise<number> {
  const { brokers } = await admin.describeCluster();
  const described = await admin.describeConfigs({
    resources: [{
      type: BROKER_RESOURCE,
      name: String(brokers[0].nodeId),
      configNames: ["default.replication.factor"],
    }],
    includeSynonyms: false,
  });
  const value = described.resources[0]?.configEntries.find((e) => e.configName === "default.replication.factor");
  return Number(value?.configValue ?? 1);
}
