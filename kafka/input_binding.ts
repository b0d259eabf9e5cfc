/**
 * What binds a shard's changelog partition to the input it counts: a marker
 * record naming the input topic and the id Kafka gave that topic, written in
 * the first transaction of the partition, and the rules a restore checks
 * before it trusts what it read (see ARCHITECTURE.md, "State bound to its
 * input"). Pure: the facts come from Kafka, the verdict goes back.
 *
 * @module
 */
import { Buffer } from "node:buffer";

/**
 * The marker's key. A user id cannot hold control characters
 * (`userIdProblem`), so no user's record can take its place.
 */
export const MARKER_KEY = "\u0000usershard-input";

/** Which incarnation of which topic a changelog partition counts. */
export interface InputMarker {
  readonly topic: string;
  /** The id Kafka gave the topic when it was created; a topic deleted and created again has a new one. */
  readonly topicId: string;
}

/** The marker as stored. */
export function encodeMarker(marker: InputMarker): Buffer {
  return Buffer.from(JSON.stringify({ version: 1, topic: marker.topic, topicId: marker.topicId }));
}

/**
 * The marker in a stored value; `undefined` for a value that is not one this
 * version wrote.
 *
 * @example
 * ```ts
 * decodeMarker(encodeMarker({ topic: "user-events", topicId: "3f2c…" })); // { topic: "user-events", topicId: "3f2c…" }
 * ```
 */
export function decodeMarker(bytes: Uint8Array): InputMarker | undefined {
  try {
    const value = JSON.parse(new TextDecoder().decode(bytes));
    if (value?.version !== 1 || typeof value.topic !== "string" || typeof value.topicId !== "string") return undefined;
    return { topic: value.topic, topicId: value.topicId };
  } catch {
    return undefined;
  }
}

/** What a restore read from one changelog partition. */
export interface ChangelogFacts {
  readonly changelog: string;
  readonly partition: number;
  /** The partition's log start offset: above 0, records were deleted. */
  readonly logStart: number;
  /** The marker read, if any. */
  readonly marker: InputMarker | undefined;
  /** Users restored. */
  readonly users: number;
  /** The highest input offset the records say they count; -1 when none. */
  readonly lastOffset: number;
}

/** What Kafka says of the input partition the changelog partition counts. */
export interface InputFacts {
  readonly topic: string;
  readonly topicId: string;
  readonly group: string;
  /** The partition's log end: the offset the next event will get. */
  readonly logEnd: number;
  /** The group's committed offset for the partition; -1 when it has none. */
  readonly committed: number;
}

/** Whether a restore may go on, and whether the marker must be written first. */
export type Verdict =
  | { readonly trusted: true; readonly writeMarker: boolean }
  | { readonly trusted: false; readonly reason: string };

/**
 * Judges a restore: the state is trusted only when it counts this
 * incarnation of the input, counts no offset the input does not have, and
 * is not missing while the group says it counted something. Each refusal is
 * one line naming the topic, the partition, both offsets and the way out.
 *
 * @example
 * ```ts
 * judgeRestore(
 *   { changelog: "g-changelog", partition: 3, logStart: 0, marker: undefined, users: 0, lastOffset: -1 },
 *   { topic: "user-events", topicId: "a", group: "g", logEnd: 0, committed: -1 },
 * ); // { trusted: true, writeMarker: true }: a fresh start
 * ```
 */
export function judgeRestore(changelog: ChangelogFacts, input: InputFacts): Verdict {
  const where = `changelog ${changelog.changelog} partition ${changelog.partition}`;
  const inputPartition = `${input.topic}/${changelog.partition}`;
  const wayOut = `to count ${input.topic} again from its start: usershard rebuild --topic ${input.topic} ` +
    `--group ${input.group} (with the nodes of the group stopped)`;
  if (changelog.logStart > 0) {
    return refused(
      `${where} starts at offset ${changelog.logStart}, not 0: records before it were deleted (kafka-delete-records, ` +
        `or retention), and with them the totals of every user not written since; it counts ${inputPartition} up ` +
        `to offset ${changelog.lastOffset}, which ends at ${input.logEnd}; ${wayOut}`,
    );
  }
  const { marker } = changelog;
  if (marker && (marker.topicId !== input.topicId || marker.topic !== input.topic)) {
    return refused(
      `${where} counts another incarnation of ${marker.topic} (topic id ${marker.topicId}) up to offset ` +
        `${changelog.lastOffset}, but ${input.topic} is now topic id ${input.topicId} and ${inputPartition} ends at ` +
        `offset ${input.logEnd} (was the topic deleted and created again?): its totals count events that are not ` +
        `there; ${wayOut}`,
    );
  }
  if (changelog.lastOffset >= input.logEnd) {
    return refused(
      `${where} counts ${inputPartition} up to offset ${changelog.lastOffset}, but that partition ends at offset ` +
        `${input.logEnd} (was ${input.topic} deleted and created again?): its totals count events that are not ` +
        `there, and would have the new ones taken for counted; ${wayOut}`,
    );
  }
  if (!marker && changelog.users === 0 && input.committed > 0) {
    return refused(
      `${where} is empty, but group ${input.group} has counted ${inputPartition} up to offset ${input.committed} ` +
        `(its committed offset; the changelog counts up to offset -1): the totals counted up to there are lost ` +
        `(was the changelog deleted, or emptied?); ${wayOut}`,
    );
  }
  return { trusted: true, writeMarker: !marker };
}

function refused(reason: string): Verdict {
  return { trusted: false, reason };
}
