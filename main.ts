/**
 * `usershard`: processes a Kafka stream of user purchases on a cluster of
 * nodes, with each user's shard on the node that consumes its partition.
 * This file only picks the subcommand and turns errors into exit codes.
 *
 * @module
 */
import { type Command, runCommand, writeStdout } from "./commands/command.ts";
import { processCommand } from "./commands/process.ts";
import { produceCommand } from "./commands/produce.ts";
import { queryCommand } from "./commands/query.ts";
import { rebuildCommand } from "./commands/rebuild.ts";
import { shardsCommand } from "./commands/shards.ts";

/** The program's version, printed by `usershard --version`. */
export const VERSION = "0.1.0";

const commands: readonly Command[] = [
  produceCommand,
  processCommand,
  queryCommand,
  shardsCommand,
  rebuildCommand,
];

function usage(): string {
  const width = Math.max(...commands.map((c) => c.spec.name.length)) + 2;
  return [
    "usershard: Kafka partitions aligned with cluster shards, per-user totals over gRPC",
    "",
    "Usage: usershard <command> [flags]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.spec.name.padEnd(width)}${c.spec.summary}`),
    "",
    "Run `usershard <command> --help` for a command's flags.",
    "",
  ].join("\n");
}

/** Runs the program with `args`; resolves to the exit code. */
export async function main(args: readonly string[]): Promise<number> {
  const [name, ...rest] = args;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    await writeStdout(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === "--version" || name === "-V") {
    await writeStdout(`usershard ${VERSION}\n`);
    return 0;
  }
  const command = commands.find((c) => c.spec.name === name);
  if (!command) {
    console.error(`usershard: unknown command '${name}' (commands: ${commands.map((c) => c.spec.name).join(", ")})`);
    return 2;
  }
  return await runCommand(command, rest);
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
