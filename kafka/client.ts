/**
 * The one place that builds kafkajs clients: bounded retries (so an unreachable
 * broker is reported in seconds, not retried forever), kafkajs logs routed into
 * the program's logger, and kafkajs errors turned into one readable line.
 *
 * @module
 */
import process from "node:process";
import { Kafka, type logCreator, logLevel } from "kafkajs";
import { getLogger } from "@logtape/logtape";

const kafkajsLog = getLogger(["usershard", "kafkajs"]);

// kafkajs schedules timers with negative delays (harmless: they run at once),
// which the Node compatibility layer reports on stderr as a process warning.
process.removeAllListeners("warning");
process.on("warning", (warning) => kafkajsLog.debug("{name}: {text}", { name: warning.name, text: warning.message }));

const toLogtape: logCreator = () => ({ namespace, level, log }) => {
  // kafkajs's own timestamp and logger name ("kafkajs") say again what the record already says.
  const { message, timestamp: _timestamp, logger: _logger, ...extra } = log;
  const text = `${namespace}: ${message}`;
  if (level === logLevel.ERROR || level === logLevel.WARN) kafkajsLog.warn(text, extra);
  else if (level === logLevel.INFO) kafkajsLog.debug(text, extra);
  else kafkajsLog.trace(text, extra);
};

/**
 * The least severe kafkajs level whose entries {@linkcode toLogtape} would pass on
 * at the levels logging is configured for now (by `--log-level`): below it kafkajs
 * would build every entry only for it to be dropped.
 */
function kafkajsLevel(): logLevel {
  if (kafkajsLog.isEnabledFor("trace")) return logLevel.DEBUG;
  if (kafkajsLog.isEnabledFor("debug")) return logLevel.INFO;
  if (kafkajsLog.isEnabledFor("warning")) return logLevel.WARN;
  return logLevel.NOTHING;
}

/** How to reach Kafka. */
export interface KafkaSettings {
  /** Bootstrap brokers as `host:port`. */
  readonly brokers: readonly string[];
  /** The client id Kafka's tools show for this process. */
  readonly clientId: string;
}

/**
 * A kafkajs client whose requests give up after a few seconds of retries. Its
 * log level is fixed here from the logging set up so far: set logging up first.
 *
 * @example
 * ```ts
 * const kafka = createKafka({ brokers: ["localhost:9092"], clientId: "usershard-producer" });
 * ```
 */
export function createKafka(settings: KafkaSettings): Kafka {
  return new Kafka({
    clientId: settings.clientId,
    brokers: [...settings.brokers],
    connectionTimeout: 3000,
    requestTimeout: 30000,
    retry: { initialRetryTime: 200, maxRetryTime: 2000, retries: 4 },
    logLevel: kafkajsLevel(),
    logCreator: toLogtape,
  });
}

/**
 * One line that says what went wrong talking to Kafka, naming the brokers.
 *
 * @example
 * ```ts
 * kafkaErrorLine(new Error("Connection error: connect ECONNREFUSED"), ["localhost:9092"]);
 * // "cannot reach Kafka at localhost:9092: connect ECONNREFUSED (is a broker running? `deno task kafka` starts one)"
 * ```
 */
export function kafkaErrorLine(error: unknown, brokers: readonly string[]): string {
  const messages = errorChain(error).map((e) => e.message);
  const detail = messages.at(-1) ?? String(error);
  const where = brokers.join(",");
  if (messages.some((m) => /connect|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|timed? ?out|getaddrinfo/i.test(m))) {
    return `cannot reach Kafka at ${where}: ${detail.replace(/^Connection error: /, "")} ` +
      "(is a broker running? `deno task kafka` starts one)";
  }
  return `Kafka at ${where} failed: ${detail}`;
}

/** An error and the errors behind it (at most four), outermost first. */
export function errorChain(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let e: unknown = error; e instanceof Error && chain.length < 4; e = causeOf(e)) chain.push(e);
  return chain;
}

function causeOf(error: Error): unknown {
  // kafkajs keeps the underlying error in `originalError`, newer code in `cause`, @platformatic/kafka in
  // `cause` or as the first of several `errors`.
  const nested = error as Error & { originalError?: unknown; errors?: unknown };
  return nested.originalError ?? error.cause ?? (Array.isArray(nested.errors) ? nested.errors[0] : undefined);
}
