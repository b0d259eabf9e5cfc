/**
 * Rebuilding a group's totals from its input topic: the explicit way out of
 * every refusal of stored state (a topic deleted and created again, a
 * changelog lost or trimmed). With every node of the group stopped, the
 * group's committed offsets and its changelog go, and the next start counts
 * the topic from offset 0 of each partition, exactly once, as on the first
 * day. Refused while the group has members, and, unless told to accept it,
 * when the topic no longer holds every event.
 *
 * @module
 */
import type { Admin } from "@platformatic/kafka";
import { getLogger } from "@logtape/logtape";
import { partitionCount, replicationFactor } from "./admin.ts";
import { changelogTopicFor, ensureChangelog } from "./changelog.ts";
import type { OffsetsReader } from "./offsets.ts";

const log = getLogger(["usershard", "rebuild"]);

/** How long deleting the old changelog may take before the new one is created. */
const CHANGELOG_GONE_TIMEOUT_MS = 60_000;

/** A rebuild that must not go ahead, with one line that says why and what to do. */
export class RebuildRefused extends Error {
  override name = "RebuildRefused";
}

/** What a rebuild starts from: the topic, and how much of it Kafka still holds. */
export interface RebuildPlan {
  readonly topic: string;
  readonly group: string;
  readonly changelog: string;
  readonly partitions: number;
  /** Events the topic holds now, from each partition's log start to its end. */
  readonly events: number;
  /** Partitions whose first events are gone (log start above 0), with their log start. */
  readonly trimmed: readonly (readonly [partition: number, start: number])[];
  /** The copies the changelog has now, which the new one keeps; `undefined` when there is none. */
  readonly changelogReplicas: number | undefined;
}

/**
 * Checks that `group` can be rebuilt from `topic` and says from what.
 * Throws {@linkcode RebuildRefused} while the group has members, when there
 * is no such topic, and when the topic lost events unless `acceptLoss`.
 */
export async function planRebuild(
  admin: Admin,
  offsets: OffsetsReader,
  topic: string,
  group: string,
  acceptLoss: boolean,
): Promise<RebuildPlan> {
  const partitions = await partitionCount(admin, topic);
  if (partitions === undefined) throw new RebuildRefused(`there is no topic ${topic} to rebuild from`);
  const members = [...(await admin.describeGroups({ groups: [group] })).get(group)?.members.values() ?? []];
  if (members.length > 0) {
    const who = [...new Set(members.map((m) => m.clientId))].join(", ");
    throw new RebuildRefused(
      `group ${group} has ${members.length} members running (${who}): stop every node of the group first, ` +
        "then rebuild",
    );
  }
  const bounds = await offsets.bounds(topic, Array.from({ length: partitions }, (_, p) => p));
  const trimmed = [...bounds].filter(([, b]) => b.start > 0).map(([p, b]) => [p, b.start] as const);
  const events = [...bounds.values()].reduce((n, b) => n + b.end - b.start, 0);
  if (trimmed.length > 0 && !acceptLoss) {
    const [first, start] = trimmed[0];
    throw new RebuildRefused(
      `${topic} no longer holds every event: ${trimmed.length} of its ${partitions} partitions start past offset 0 ` +
        `(partition ${first} at ${start}), so a rebuild would count only what is left; run again with ` +
        "--accept-loss to rebuild from that",
    );
  }
  const changelog = changelogTopicFor(group);
  const changelogReplicas = await replicationFactor(admin, changelog);
  return { topic, group, changelog, partitions, events, trimmed, changelogReplicas };
}

/**
 * Carries a plan out: deletes the group (its committed offsets) and the
 * changelog, and creates the changelog again, empty, with as many copies as
 * it had. The next nodes to start count the topic from its start.
 */
export async function rebuild(admin: Admin, offsets: OffsetsReader, plan: RebuildPlan): Promise<void> {
  const groups = await admin.describeGroups({ groups: [plan.group] });
  if ((groups.get(plan.group)?.members.size ?? 0) > 0) {
    throw new RebuildRefused(`group ${plan.group} gained members meanwhile: stop every node of the group first`);
  }
  if ((await admin.listGroups()).has(plan.group)) {
    await admin.deleteGroups({ groups: [plan.group] });
    log.info("deleted group {group} and its committed offsets", { group: plan.group });
  }
  if (await offsets.topicId(plan.changelog) !== undefined) {
    await admin.deleteTopics({ topics: [plan.changelog] });
    const deadline = Date.now() + CHANGELOG_GONE_TIMEOUT_MS;
    while (await offsets.topicId(plan.changelog) !== undefined) {
      if (Date.now() > deadline) {
        throw new RebuildRefused(`changelog topic ${plan.changelog} is still being deleted; run the rebuild again`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    log.info("deleted changelog topic {changelog}", { changelog: plan.changelog });
  }
  // Kafka may still be deleting the old partitions for a moment after the topic is gone from the list.
  for (let attempt = 0;; attempt++) {
    try {
      await ensureChangelog(admin, plan.changelog, plan.partitions, plan.changelogReplicas);
      return;
    } catch (error) {
      if (attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}
