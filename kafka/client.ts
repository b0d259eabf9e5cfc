/**
 * The one place that builds Kafka clients (`@platformatic/kafka`): bounded
 * retries, so an unreachable broker is reported in seconds, not retried
 * forever; and client errors turned into one readable line.
 *
 * @module
 */
import { Admin, type BaseOptions } from "@platformatic/kafka";
import { findNotAuthorized } from "./authorization.ts";
import { kafkaErrorCode } from "./error_codes.ts";
import type { KafkaSecurity } from "./security.ts";

/** How to reach Kafka. */
export interface KafkaSettings {
  /** Bootstrap brokers as `host:port`. */
  readonly brokers: readonly string[];
  /** The client id Kafka's tools show for this process. */
  readonly clientId: string;
  /** TLS and SASL; absent for PLAINTEXT. */
  readonly security?: KafkaSecurity;
}

/**
 * The connection settings every @platformatic/kafka client of this program
 * shares: bounded retries, so an unreachable broker is reported in seconds,
 * never retried forever.
 *
 * @example
 * ```ts
 * import { Producer } from "@platformatic/kafka";
 * new Producer({ ...clientOptions({ brokers: ["localhost:9092"], clientId: "usershard-producer" }), acks: -1 });
 * ```
 */
export function clientOptions(settings: KafkaSettings): BaseOptions {
  return {
    clientId: settings.clientId,
    bootstrapBrokers: [...settings.brokers],
    connectTimeout: 3000,
    timeout: 30_000,
    retries: 4,
    retryDelay: (_client: unknown, _operation: string, attempt: number) => Math.min(200 * 2 ** (attempt - 1), 2000),
    ...securityOptions(settings.security),
  };
}

/** The client's TLS and SASL options; the password is asked for when a connection authenticates. */
function securityOptions(security: KafkaSecurity | undefined): Pick<BaseOptions, "tls" | "sasl"> {
  if (!security) return {};
  const options: Pick<BaseOptions, "tls" | "sasl"> = {};
  if (security.tls) {
    const { ca, cert, key } = security.tls;
    // The client's TLS checks the broker's certificate against the host name it connects to, and
    // sends that name (unless it is an IP address, which TLS does not allow as a server name).
    options.tls = { ca, cert, key, rejectUnauthorized: true };
  }
  const sasl = security.sasl;
  if (sasl?.mechanism === "OAUTHBEARER") options.sasl = { mechanism: sasl.mechanism, token: sasl.token };
  else if (sasl) options.sasl = { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password };
  return options;
}

/**
 * An admin client with {@linkcode clientOptions}. It connects on its first
 * request; `close()` it when done.
 *
 * @example
 * ```ts
 * const admin = createAdmin({ brokers: ["localhost:9092"], clientId: "usershard-producer" });
 * try {
 *   await admin.listTopics();
 * } finally {
 *   await admin.close();
 * }
 * ```
 */
export function createAdmin(settings: KafkaSettings): Admin {
  return new Admin(clientOptions(settings));
}

/**
 * One line that says what went wrong talking to Kafka, naming the brokers;
 * for a request an ACL did not allow, also `principal` and the ACL it needs.
 *
 * @example
 * ```ts
 * const refused = new Error("connect ECONNREFUSED 127.0.0.1:9092");
 * kafkaErrorLine(new Error("Connection to localhost:9092 failed.", { cause: refused }), ["localhost:9092"]);
 * // "cannot reach Kafka at localhost:9092: connect ECONNREFUSED 127.0.0.1:9092 (is a broker running? …)"
 * ```
 */
export function kafkaErrorLine(error: unknown, brokers: readonly string[], principal?: string): string {
  const chain = errorChain(error);
  const messages = chain.map((e) => e.message);
  const detail = chain.length > 0 ? withBrokerReason(chain[chain.length - 1]) : String(error);
  const where = brokers.join(",");
  const notAuthorized = findNotAuthorized(error);
  if (notAuthorized) return `Kafka at ${where}: ${(principal ? notAuthorized.of(principal) : notAuthorized).message}`;
  const refusal = kafkaErrorCode(
    error,
    (code) => /AUTHORIZATION_FAILED$|^SASL_AUTHENTICATION_FAILED$|^UNSUPPORTED_SASL|^ILLEGAL_SASL_STATE$/.test(code),
  );
  if (refusal) {
    const said = withBrokerReason(refusal.error);
    const why = {
      SASL_AUTHENTICATION_FAILED: "wrong user or password",
      UNSUPPORTED_SASL_MECHANISM: "the broker does not offer this mechanism",
      // An OAUTHBEARER token the broker refuses leaves the client's exchange unfinished, and the next request says so.
      ILLEGAL_SASL_STATE: "with OAUTHBEARER: an invalid or expired token, or one not meant for this broker",
    }[refusal.code];
    if (why !== undefined) return `Kafka at ${where} refused the SASL authentication (${why}): ${said}`;
    const what = refusal.code.slice(0, -"_AUTHORIZATION_FAILED".length).toLowerCase().replaceAll("_", " ");
    return `Kafka at ${where} did not authorize this (an ACL on the ${what} is missing for this user): ${said}`;
  }
  const tls = messages.find((m) => TLS_FAILURE.test(m));
  if (tls !== undefined) {
    return `the TLS handshake with Kafka at ${where} failed (${tlsReason(tls)}): ${tls}`;
  }
  if (messages.some((m) => /connect|ECONNREFUSED|ENOTFOUND|EAI_AGAIN|timed? ?out|getaddrinfo/i.test(m))) {
    return `cannot reach Kafka at ${where}: ${detail} ` +
      "(is a broker running? `deno task kafka` starts one)";
  }
  return `Kafka at ${where} failed: ${detail}`;
}

/** What a failed TLS handshake says, in Deno's (rustls) words or OpenSSL's. */
const TLS_FAILURE =
  /peer certificate|UnknownIssuer|NotValidForName|certificate verify|self[- ]signed|unable to verify|handshake|altnames|Hostname\/IP/i;

function tlsReason(message: string): string {
  if (/NotValidForName|altnames|Hostname\/IP/i.test(message)) {
    return "the broker's certificate is not for that host name";
  }
  if (/UnknownIssuer|self[- ]signed|unable to verify|certificate verify/i.test(message)) {
    return "the broker's certificate is not signed by a trusted CA; give its CA with --kafka-ca";
  }
  return "is the listener TLS? SASL_PLAINTEXT and PLAINTEXT listeners do not speak it";
}

/**
 * An error's message and, when Kafka refused a request, the broker's own
 * reason: @platformatic/kafka names only the error code ("Replication-factor
 * is invalid."), the broker says why.
 */
function withBrokerReason(error: Error): string {
  const reason = (error as Error & { serverErrorMessage?: unknown }).serverErrorMessage;
  return typeof reason === "string" && reason !== "" ? `${error.message} ${reason}` : error.message;
}

/**
 * An error and the errors behind it (at most six: @platformatic/kafka wraps
 * a refused connection five deep), outermost first.
 */
export function errorChain(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let e: unknown = error; e instanceof Error && chain.length < 6; e = causeOf(e)) chain.push(e);
  return chain;
}

function causeOf(error: Error): unknown {
  // @platformatic/kafka keeps the underlying error in `cause`, or gathers several (one per attempt, say) in
  // `errors`, the first of which stands for them all.
  const { errors } = error as Error & { errors?: unknown };
  return error.cause ?? (Array.isArray(errors) ? errors[0] : undefined);
}
