/**
 * Log set-up shared by the subcommands: text lines on standard error (standard
 * output stays for results), one level for the program, and the Kafka client's
 * own chatter only when debugging.
 *
 * @module
 */
import * as grpc from "@grpc/grpc-js";
import { configure, getLogger, getTextFormatter, isLogLevel, type LogLevel, type Sink } from "@logtape/logtape";
import { UsageError } from "./flags.ts";

/** The levels `--log-level` accepts. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** Reads `--log-level`, accepting `warn` for `warning`. */
export function logLevelFlag(value: string): LogLevel {
  const level = value.toLowerCase() === "warn" ? "warning" : value.toLowerCase();
  if (!isLogLevel(level)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(", ")}, got '${value}'`);
  }
  return level;
}

const formatter = getTextFormatter({
  timestamp: "rfc3339",
  level: "FULL",
  value: "bare",
  // The root category is always "usershard"; the rest says which part speaks.
  category: (category) => category.slice(1).join("."),
  format: ({ timestamp, level, category, message }) =>
    `${timestamp} ${level.padEnd(5)} ${category ? `${category}: ` : ""}${message}`,
});

const encoder = new TextEncoder();

// Synchronous writes: a line logged just before exit is never lost in a buffer.
const stderrSink: Sink = (record) => {
  Deno.stderr.writeSync(encoder.encode(formatter(record)));
};

/** Sends the program's logs at `level` and above to standard error. */
export async function setUpLogging(level: LogLevel): Promise<void> {
  // grpc-js writes its own lines ("E No address added out of total 1 resolved") straight to
  // stderr; they belong with the rest of the log, at debug level, unless someone asked
  // grpc-js itself for them (GRPC_TRACE, GRPC_VERBOSITY).
  if (!Deno.env.get("GRPC_TRACE") && !Deno.env.get("GRPC_VERBOSITY")) {
    const grpcLog = getLogger(["usershard", "grpc-js"]);
    grpc.setLogger({ error: (...parts: unknown[]) => grpcLog.debug(parts.map(String).join(" ")) });
  }
  const libraries = level === "trace" || level === "debug" ? level : "fatal";
  await configure({
    reset: true,
    sinks: { stderr: stderrSink },
    loggers: [
      { category: ["usershard"], lowestLevel: level, sinks: ["stderr"] },
      // kafkajs and grpc-js report every retry and bind attempt; our own code reports what finally happened.
      { category: ["usershard", "kafkajs"], lowestLevel: libraries },
      { category: ["usershard", "grpc-js"], lowestLevel: libraries },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
