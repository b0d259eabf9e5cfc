/**
 * `usershard rebuild`: counts a group's totals again from its input topic,
 * the way out that every refusal of stored state names. Behaviour in
 * `kafka/rebuild.ts`; this only parses flags and prints.
 *
 * @module
 */
import { kafkaPrincipal } from "../kafka/authorization.ts";
import { createAdmin, kafkaErrorLine } from "../kafka/client.ts";
import { OffsetsReader } from "../kafka/offsets.ts";
import { planRebuild, rebuild, RebuildRefused } from "../kafka/rebuild.ts";
import { CliError, defineCommand, writeStdout } from "./command.ts";
import {
  BROKERS_FLAG,
  GROUP_FLAG,
  KAFKA_SECURITY_FLAGS,
  kafkaSecurityFlags,
  TOPIC_FLAG,
  topicFlag,
} from "./common_flags.ts";
import { type CommandSpec, hostPortList, UsageError } from "./flags.ts";

/** Flags of `usershard rebuild`. */
export const rebuildSpec = {
  name: "rebuild",
  summary: "counts a group's totals again from its topic (the way out of a refused changelog)",
  usage: "usershard rebuild --topic T --group G [--brokers HOST:PORT,...] [--accept-loss]",
  flags: {
    brokers: BROKERS_FLAG,
    ...KAFKA_SECURITY_FLAGS,
    topic: TOPIC_FLAG,
    group: GROUP_FLAG,
    "accept-loss": {
      type: "boolean",
      description: "rebuild even when the topic no longer holds every event (retention deleted some)",
    },
  },
  details: `With every node of the group stopped, deletes the group's committed offsets and its changelog
topic (GROUP-changelog) and creates the changelog again, empty: the next nodes to start count
the topic from offset 0 of each partition. Refused while the group has members, and when the
topic no longer holds every event unless --accept-loss.

Example, after "changelog user-processing-changelog partition 3 counts another incarnation …":
  usershard rebuild --topic user-events --group user-processing`,
} as const satisfies CommandSpec;

/** `usershard rebuild`. */
export const rebuildCommand = defineCommand(rebuildSpec, async (flags, positionals) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const brokers = hostPortList("brokers", flags.brokers);
  const topic = topicFlag(flags.topic);
  const kafka = { brokers, clientId: "usershard-rebuild", security: kafkaSecurityFlags(flags) };
  const admin = createAdmin(kafka);
  const offsets = new OffsetsReader(kafka);
  try {
    const plan = await planRebuild(admin, offsets, topic, flags.group, flags["accept-loss"]);
    const holds = plan.trimmed.length === 0
      ? "every event"
      : `what is left (${plan.trimmed.length} partitions lost their first events)`;
    await writeStdout(
      `rebuilding group ${plan.group} from ${plan.topic} (${plan.partitions} partitions, ${plan.events} events: ` +
        `${holds})\n`,
    );
    await rebuild(admin, offsets, plan);
    await writeStdout(
      `done: group ${plan.group} has no committed offsets and ${plan.changelog} is empty; start the nodes, and ` +
        `they count ${plan.topic} from its start\n`,
    );
    return 0;
  } catch (error) {
    if (error instanceof RebuildRefused) throw new CliError(error.message);
    throw new CliError(kafkaErrorLine(error, brokers, kafkaPrincipal(kafka.security)));
  } finally {
    await admin.close().catch(() => {});
    await offsets.close().catch(() => {});
  }
});
