/**
 * Topic administration: create the events topic when it is missing, and read
 * its partition count, which is also the number of shards.
 *
 * @module
 */
import type { Admin } from "kafkajs";
import { getLogger } from "@logtape/logtape";

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

/**
 * The partition count of `topic`, or `undefined` when it does not exist.
 * Lists topics first: asking kafkajs for a missing topic's metadata retries.
 */
export async function partitionCount(admin: Admin, topic: string): Promise<number | undefined> {
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) return undefined;
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
  return metadata.topics[0]?.partitions.length;
}

/**
 * Creates `topic` with `partitions` partitions unless it exists; an existing
 * topic with another count is kept as it is (and said so), since changing it
 * would move users between partitions.
 */
export async function ensureTopic(admin: Admin, topic: string, partitions: number): Promise<TopicInfo> {
  const existing = await partitionCount(admin, topic);
  if (existing !== undefined) {
    if (existing !== partitions) {
      log.warn(
        "topic {topic} exists with {existing} partitions, not {partitions}; using its {existing} partitions",
        { topic, existing, partitions },
      );
    }
    return { topic, partitions: existing, created: false };
  }
  const created = await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
  // false means another client created it in between; its count is the one that holds.
  const count = created ? partitions : await partitionCount(admin, topic) ?? partitions;
  if (created) log.info("created topic {topic} with {partitions} partitions", { topic, partitions });
  return { topic, partitions: count, created };
}
