/**
 * `bin/deno task demo`: the walkthrough of the Akka sample this project
 * follows ("Aligning Kafka Partitions with Akka Cluster Sharding"), run step
 * by step (`demo/walkthrough.ts`). Each step prints a headline and the
 * figures that prove it, read from the nodes themselves: their management
 * endpoints and the `usershard` CLI. The nodes' and the producer's logs go to
 * files in a folder printed first. Ctrl-C stops the producer and lets both
 * nodes leave the cluster; `--exit` does the same after the last step.
 *
 * @module
 */
import { CliError, defineCommand } from "../commands/command.ts";
import { BROKERS_FLAG, GROUP_FLAG, PARTITIONS_FLAG, TOPIC_FLAG, topicFlag } from "../commands/common_flags.ts";
import { type CommandSpec, hostPortList, intFlag, numberFlag, UsageError } from "../commands/flags.ts";
import { nodePorts } from "./demo/ports.ts";
import { Demo, type DemoOptions } from "./demo/walkthrough.ts";

/** Flags of the demo. */
export const demoSpec = {
  name: "demo",
  summary: "the walkthrough: Kafka, node 1, a producer, node 2, the shards following the partitions, queries",
  usage: "bin/deno task demo [--exit] [--ports BASE] [--rate N] [--topic NAME] [--group NAME]",
  flags: {
    exit: { type: "boolean", description: "stop everything and exit after the last step instead of at Ctrl-C" },
    ports: {
      type: "string",
      value: "BASE",
      env: "USERSHARD_DEMO_PORTS",
      description: "six ports from BASE: remoting BASE and BASE+1, management BASE+2 and BASE+3, gRPC BASE+4 " +
        "and BASE+5 (default: the walkthrough's 2551/2552, 8551/8552, 8081/8082); best below the ephemeral " +
        "range (32768 on Linux), which outgoing connections may take from meanwhile",
    },
    rate: { type: "string", value: "N", default: "10", description: "the producer's events per second" },
    brokers: BROKERS_FLAG,
    topic: TOPIC_FLAG,
    group: GROUP_FLAG,
    partitions: PARTITIONS_FLAG,
  },
  details: `Logs go to a new folder under $TMPDIR (or /tmp), printed first. The nodes and the producer log
at info level, as text, whatever USERSHARD_LOG_LEVEL and USERSHARD_LOG_FORMAT say: logs to read
beside the walkthrough, whose figures come from the nodes' endpoints. Kafka stays up afterwards
(bin/deno task kafka:stop).

Exit status: 0 when every step held and everything stopped cleanly, 1 when a step failed (one
line on standard error says which and where its log is), 130 after a second Ctrl-C.`,
} as const satisfies CommandSpec;

/** The demo as a command: flags parsed and checked, `--help`, exit status. */
export const demoCommand = defineCommand(demoSpec, async (flags, positionals) => {
  if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
  const base = flags.ports === undefined ? undefined : intFlag("ports", flags.ports, { min: 1, max: 65530 });
  const options: DemoOptions = {
    exit: flags.exit,
    nodes: nodePorts(base),
    rate: numberFlag("rate", flags.rate),
    brokers: hostPortList("brokers", flags.brokers),
    topic: topicFlag(flags.topic),
    group: flags.group,
    partitions: intFlag("partitions", flags.partitions, { min: 2, max: 10_000 }),
  };
  if (options.rate === 0) throw new UsageError("--rate must be above 0: the demo's producer runs at a modest rate");
  const logs = await Deno.makeTempDir({ prefix: "usershard-demo-" }).catch((error) => {
    throw new CliError(`cannot create a folder for the logs: ${error}`);
  });
  return await new Demo(options, logs).run();
});

if (import.meta.main) {
  let code: number;
  try {
    code = await demoCommand.execute(Deno.args);
  } catch (error) {
    // As main.ts does for a subcommand, but pointing at this program's own help.
    if (!(error instanceof UsageError || error instanceof CliError)) throw error;
    const hint = error instanceof UsageError ? " (see bin/deno task demo --help)" : "";
    console.error(`usershard demo: ${error.message}${hint}`);
    code = error instanceof UsageError ? 2 : 1;
  }
  Deno.exit(code);
}
