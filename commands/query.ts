/**
 * `usershard query`: asks any node (gRPC) for users' running totals; with no
 * ids, an interactive loop like the Akka sample's client.
 *
 * @module
 */
import { status } from "@grpc/grpc-js";
import { QueryError, type UserStats, UserStatsClient } from "../grpc/user_client.ts";
import { userIdProblem } from "../grpc/user_service.ts";
import { CliError, defineCommand, writeStdout } from "./command.ts";
import { type CommandSpec, durationFlag, UsageError } from "./flags.ts";

/** The interactive loop's prompt, as in the sample. */
export const PROMPT = "Enter user id or :q to quit";

/** Flags of `usershard query`. */
export const querySpec = {
  name: "query",
  summary: "asks a node (gRPC) for users' running totals; no id starts an interactive loop",
  usage: "usershard query [ID ...] [--grpc HOST:PORT] [--json]",
  flags: {
    grpc: {
      type: "string",
      value: "HOST:PORT",
      env: "USERSHARD_GRPC",
      default: "localhost:8081",
      description: "gRPC endpoint of any processor node",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_QUERY_TIMEOUT",
      default: "15s",
      description: "deadline of each query",
    },
    json: { type: "boolean", description: "print one JSON object per answer" },
  },
  details: `Examples:
  usershard query 7              User 7 has made 2 purchases for a total of 3096p
  usershard query 1 2 3 --json   {"id":"1","totalPurchases":1,"amountSpent":12060} ...
  usershard query                ${PROMPT} (reads ids from standard input)`,
} as const satisfies CommandSpec;

/** The sentence for a user's totals. */
export function describeStats(stats: UserStats): string {
  const purchases = stats.totalPurchases === 1 ? "purchase" : "purchases";
  return `User ${stats.id} has made ${stats.totalPurchases} ${purchases} for a total of ${stats.amountSpent}p`;
}

/** `usershard query`. */
export const queryCommand = defineCommand(querySpec, async (flags, ids) => {
  if (!/^[^\s/]+:\d{1,5}$/.test(flags.grpc)) {
    throw new UsageError(`--grpc must be host:port, got '${flags.grpc}'`);
  }
  const timeoutMs = durationFlag("timeout", flags.timeout);
  const client = new UserStatsClient(flags.grpc);
  const format = (stats: UserStats) =>
    flags.json
      ? JSON.stringify({ id: stats.id, totalPurchases: stats.totalPurchases, amountSpent: stats.amountSpent })
      : describeStats(stats);
  const ask = async (id: string): Promise<string> => {
    const problem = userIdProblem(id);
    if (problem) throw new QueryError(status.INVALID_ARGUMENT, `user '${id}': ${problem}`);
    return format(await client.userStats(id, timeoutMs));
  };
  try {
    if (ids.length > 0) return await answerAll(ids, ask);
    return await interactive(ask);
  } finally {
    client.close();
  }
});

async function answerAll(ids: readonly string[], ask: (id: string) => Promise<string>): Promise<number> {
  let failed = 0;
  for (const id of ids) {
    try {
      await writeStdout(`${await ask(id)}\n`);
    } catch (error) {
      if (!(error instanceof QueryError)) throw error;
      // An unreachable node fails every id the same way: say it once.
      if (/^cannot reach/.test(error.message)) throw new CliError(error.message);
      console.error(`usershard query: ${error.message}`);
      failed++;
    }
  }
  return failed > 0 ? 1 : 0;
}

async function interactive(ask: (id: string) => Promise<string>): Promise<number> {
  await writeStdout(`${PROMPT}\n`);
  for await (const line of lines(Deno.stdin.readable)) {
    const id = line.trim();
    if (id === ":q") break;
    try {
      await writeStdout(`${await ask(id)}\n`);
    } catch (error) {
      if (!(error instanceof QueryError)) throw error;
      console.error(`usershard query: ${error.message}`);
    }
    await writeStdout(`${PROMPT}\n`);
  }
  return 0;
}

/** The lines of a byte stream, without their line ends. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  for await (const text of stream.pipeThrough(new TextDecoderStream())) {
    pending += text;
    const parts = pending.split(/\r?\n/);
    pending = parts.pop()!;
    yield* parts;
  }
  if (pending !== "") yield pending;
}
