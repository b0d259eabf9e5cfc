/**
 * Log set-up shared by the subcommands: lines on standard error (standard
 * output stays for results), as text for people or JSON for log collectors,
 * one level for the program, and the Kafka client's own chatter only when
 * debugging.
 *
 * @module
 */
import {
  configure,
  getJsonLinesFormatter,
  getTextFormatter,
  isLogLevel,
  type LogLevel,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";
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

/** The formats `--log-format` accepts. */
export const LOG_FORMATS = ["text", "json"] as const;

/** How log lines are written: `text` for people, `json` (one object per line) for log collectors. */
export type LogFormat = typeof LOG_FORMATS[number];

/** Reads `--log-format`. */
export function logFormatFlag(value: string): LogFormat {
  const format = LOG_FORMATS.find((f) => f === value.toLowerCase());
  if (!format) throw new UsageError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, got '${value}'`);
  return format;
}

const textFormatter = getTextFormatter({
  timestamp: "rfc3339",
  level: "FULL",
  value: "bare",
  // The root category is always "usershard"; the rest says which part speaks.
  category: (category) => category.slice(1).join("."),
  format: ({ timestamp, level, category, message }) =>
    `${timestamp} ${level.padEnd(5)} ${category ? `${category}: ` : ""}${message}`,
});

const jsonLinesFormatter = getJsonLinesFormatter({ properties: "flatten" });

// logtape's JSON formatter renders values as JSON ("to user \"42\""); the message should read as
// in text ("to user 42"). JSON escapes control characters itself, so they are left as they are.
const bareMessage = getTextFormatter({ value: "bare", sanitize: false, format: ({ message }) => message });

// logtape writes a record's own fields first and its flattened properties after them, so a
// property called "message" (the coordinator client's retry line has one) would overwrite the
// rendered message.
const RECORD_FIELDS: readonly string[] = ["@timestamp", "level", "logger", "message"];

/**
 * One JSON object per record: `@timestamp` (ISO 8601), `level`, `logger` (the
 * category joined by "."), `message` (rendered, as in text) and each structured
 * property as a field of its own; a property named like one of those four is
 * written as `_NAME`.
 *
 * @example
 * ```ts
 * // {"@timestamp":"2026-01-02T03:04:05.000Z","level":"INFO","message":"sent 3 events","logger":"usershard.producer","sent":3}
 * ```
 */
export function jsonLogLine(record: LogRecord): string {
  // A one-part message is written as it is; bareMessage ends its line, which is not part of the message.
  const message = [bareMessage(record).slice(0, -1)];
  const properties = Object.fromEntries(
    Object.entries(record.properties).map(([key, value]) => [RECORD_FIELDS.includes(key) ? `_${key}` : key, value]),
  );
  return jsonLinesFormatter({ ...record, message, properties });
}

const formatters: Readonly<Record<LogFormat, TextFormatter>> = { text: textFormatter, json: jsonLogLine };

const encoder = new TextEncoder();

// Synchronous writes: a line logged just before exit is never lost in a buffer.
function stderrSink(format: LogFormat): Sink {
  const formatter = formatters[format];
  return (record) => {
    Deno.stderr.writeSync(encoder.encode(formatter(record)));
  };
}

/** Sends the program's logs at `level` and above to standard error, written as `format`. */
export async function setUpLogging(level: LogLevel, format: LogFormat = "text"): Promise<void> {
  await configure({
    reset: true,
    sinks: { stderr: stderrSink(format) },
    loggers: [
      { category: ["usershard"], lowestLevel: level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}
