/**
 * `usershard query`: asks any node (gRPC) for users' running totals; with no
 * ids, an interactive loop like the Akka sample's client.
 *
 * @module
 */
import { Status } from "../grpc/status.ts";
import type { ClientTls } from "../grpc/http2/client.ts";
import { QueryError, type UserStats, UserStatsClient } from "../grpc/user_client.ts";
import { userIdProblem } from "../cluster/sharding/entity.ts";
import { CliError, defineCommand, StdoutClosed, writeStdout } from "./command.ts";
import { type CommandSpec, durationFlag, endpointFlag, fileFlag, UsageError } from "./flags.ts";

/** The interactive loop's prompt, as in the sample. */
export const PROMPT = "Enter user id or :q to quit";

/** Flags of `usershard query`. */
export const querySpec = {
  name: "query",
  summary: "asks a node (gRPC) for users' running totals; no id starts an interactive loop",
  usage: "usershard query [ID ...] [--grpc PORT|HOST:PORT[,...]] [--timeout DURATION] [--json]",
  flags: {
    grpc: {
      type: "string",
      value: "PORT|HOST:PORT[,...]",
      env: "USERSHARD_GRPC",
      default: "localhost:8081",
      description:
        "gRPC endpoint of any processor node (its --grpc port; a bare port is on localhost); with several, " +
        "a node that cannot be reached is left for the next",
    },
    timeout: {
      type: "string",
      value: "DURATION",
      env: "USERSHARD_QUERY_TIMEOUT",
      default: "15s",
      description: "deadline of each query",
    },
    json: { type: "boolean", description: "print one JSON object per answer" },
    tls: { type: "boolean", description: "speak TLS to the nodes (their --grpc-tls-cert), trusting the system's CAs" },
    ca: {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_CA",
      description: "with --tls, trust the PEM CA certificates in FILE instead",
    },
    cert: {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_CERT",
      description: "with --tls, present this PEM client certificate (to nodes with --grpc-tls-client-ca; with --key)",
    },
    key: {
      type: "string",
      value: "FILE",
      env: "USERSHARD_GRPC_KEY",
      description: "the PEM key of --cert",
    },
  },
  details: `Examples:
  usershard query 7              User 7 has made 2 purchases for a total of 3096p
  usershard query 1 2 3 --json   {"id":"1","totalPurchases":1,"amountSpent":12060} ...
  usershard query --grpc 8082    ${PROMPT} (on standard error; reads ids from standard input)
  usershard query --grpc 8081,8082 7    asks node 1, or node 2 when node 1 cannot be reached

Exit status: 0 when every query was answered, 1 when any failed, 2 for a usage error.`,
} as const satisfies CommandSpec;

/** The sentence for a user's totals. */
export function describeStats(stats: UserStats): string {
  const purchases = stats.totalPurchases === 1 ? "purchase" : "purchases";
  return `User ${stats.id} has made ${stats.totalPurchases} ${purchases} for a total of ${stats.amountSpent}p`;
}

/** What `--tls`, `--ca`, `--cert` and `--key` ask for; `undefined` for plaintext. */
function clientTls(
  flags: { tls: boolean; ca: string | undefined; cert: string | undefined; key: string | undefined },
): ClientTls | undefined {
  for (const flag of ["ca", "cert", "key"] as const) {
    if (flags[flag] !== undefined && !flags.tls) throw new UsageError(`--${flag} needs --tls`);
  }
  if (!flags.tls) return undefined;
  if ((flags.cert === undefined) !== (flags.key === undefined)) throw new UsageError("--cert and --key go together");
  const read = (flag: "ca" | "cert" | "key") => {
    const path = flags[flag];
    return path === undefined ? undefined : fileFlag(flag, path);
  };
  return { ca: read("ca"), cert: read("cert"), key: read("key") };
}

/** `usershard query`. */
export const queryCommand = defineCommand(querySpec, async (flags, ids) => {
  const targets = flags.grpc.split(",").map((endpoint) => endpointFlag("grpc", endpoint.trim(), "localhost"));
  const timeoutMs = durationFlag("timeout", flags.timeout);
  const client = new UserStatsClient(targets, clientTls(flags));
  const format = (stats: UserStats) =>
    flags.json
      ? JSON.stringify({ id: stats.id, totalPurchases: stats.totalPurchases, amountSpent: stats.amountSpent })
      : describeStats(stats);
  const ask = async (id: string): Promise<string> => {
    const problem = userIdProblem(id);
    if (problem) throw new QueryError(Status.INVALID_ARGUMENT, problem);
    return format(await client.userStats(id, timeoutMs));
  };
  try {
    if (ids.length > 0) return await answerAll(ids, ask);
    return await interactive(ask);
  } finally {
    client.close();
  }
});

/** The error line of one id's query: it starts with the user, so a line among many says whose it is. */
function failureLine(id: string, error: QueryError): string {
  const user = /^[^\s"'\\\p{C}]{1,64}$/u.test(id) ? id : JSON.stringify(id.length > 64 ? `${id.slice(0, 64)}…` : id);
  return `usershard query: user ${user}: ${error.message}`;
}

async function answerAll(ids: readonly string[], ask: (id: string) => Promise<string>): Promise<number> {
  let failed = 0;
  for (const id of ids) {
    try {
      await writeStdout(`${await ask(id)}\n`);
    } catch (error) {
      if (error instanceof StdoutClosed) break;
      if (!(error instanceof QueryError)) throw error;
      // A node that fails as a whole fails every id the same way: say it once.
      if (error.nodeFailed) throw new CliError(error.message);
      console.error(failureLine(id, error));
      failed++;
    }
  }
  return failed > 0 ? 1 : 0;
}

// The prompt goes to stderr so that stdout holds only answers (`printf '7\n' | usershard query --json | jq .`).
async function interactive(ask: (id: string) => Promise<string>): Promise<number> {
  let failed = false;
  console.error(PROMPT);
  for await (const line of lines(Deno.stdin.readable)) {
    const id = line.trim();
    if (id === ":q") break;
    if (id !== "") {
      try {
        await writeStdout(`${await ask(id)}\n`);
      } catch (error) {
        if (error instanceof StdoutClosed) break;
        if (!(error instanceof QueryError)) throw error;
        console.error(failureLine(id, error));
        failed = true;
      }
    }
    console.error(PROMPT);
  }
  return failed ? 1 : 0;
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
