/**
 * How a Kafka connection is secured, in the words Kafka's own clients use:
 * `security.protocol` (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) and
 * `sasl.mechanism` (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512), with the CA, client
 * certificate and key as PEM files. Settings can also come from a Java client
 * properties file, as a managed Kafka's console hands them out.
 *
 * The password is held behind a function, never as a field: nothing that
 * prints or serialises the settings (a log line, `/stats`, an error) can show it.
 *
 * @module
 */

/** Kafka's `security.protocol` values. */
export const SECURITY_PROTOCOLS = ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] as const;
/** One of {@linkcode SECURITY_PROTOCOLS}. */
export type SecurityProtocol = typeof SECURITY_PROTOCOLS[number];

/** The `sasl.mechanism` values usershard speaks. */
export const SASL_MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"] as const;
/** One of {@linkcode SASL_MECHANISMS}. */
export type SaslMechanism = typeof SASL_MECHANISMS[number];

/** TLS to the brokers: the CA to trust (the system's when absent) and, for mutual TLS, a certificate and key. */
export interface KafkaTls {
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** SASL with a user and a password (PLAIN, SCRAM); the password only through {@linkcode PasswordSasl.password}. */
export interface PasswordSasl {
  readonly mechanism: Exclude<SaslMechanism, "OAUTHBEARER">;
  readonly username: string;
  readonly password: () => string;
}

/**
 * SASL/OAUTHBEARER with a token that something else obtains and refreshes
 * (an identity provider's client, a Kubernetes projected token): the token
 * is read from its file at each authentication, so a refreshed one is used
 * from the next connection on.
 */
export interface TokenSasl {
  readonly mechanism: "OAUTHBEARER";
  /** The token now; throws when its file cannot be read. */
  readonly token: () => string;
  /** The token's subject (its `sub` claim), which Kafka takes for the principal's name, when it has one. */
  readonly subject?: string;
}

/** SASL credentials. */
export type KafkaSasl = PasswordSasl | TokenSasl;

/** A secured connection's settings; absent means PLAINTEXT. */
export interface KafkaSecurity {
  readonly protocol: SecurityProtocol;
  readonly tls?: KafkaTls;
  readonly sasl?: KafkaSasl;
}

/** What the operator gave, from flags, environment and the properties file, before it is checked. */
export interface SecurityInput {
  readonly protocol?: string;
  readonly mechanism?: string;
  readonly username?: string;
  readonly password?: string;
  /** For OAUTHBEARER: reads the token, each time it is needed. */
  readonly token?: () => string;
  /** PEM text. */
  readonly ca?: string;
  readonly cert?: string;
  readonly key?: string;
}

/** A security setting that cannot work: one line that says which and why. */
export class SecuritySettingError extends Error {
  override name = "SecuritySettingError";
}

/**
 * The checked security settings, or `undefined` for PLAINTEXT. A SASL
 * protocol needs a mechanism, a user name and a password; a CA or a client
 * certificate needs a TLS protocol.
 *
 * @example
 * ```ts
 * const security = kafkaSecurity({ protocol: "SASL_SSL", mechanism: "SCRAM-SHA-512", username: "app", password: "s3cret" });
 * security?.sasl?.mechanism; // "SCRAM-SHA-512"
 * ```
 */
export function kafkaSecurity(input: SecurityInput): KafkaSecurity | undefined {
  const protocol = (input.protocol ?? (input.mechanism ? "SASL_SSL" : "PLAINTEXT")).toUpperCase();
  if (!(SECURITY_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw new SecuritySettingError(
      `security protocol must be one of ${SECURITY_PROTOCOLS.join(", ")}, got '${input.protocol}'`,
    );
  }
  const tls = protocol === "SSL" || protocol === "SASL_SSL";
  const sasl = protocol.startsWith("SASL_");
  if (!tls && (input.ca !== undefined || input.cert !== undefined || input.key !== undefined)) {
    throw new SecuritySettingError(`a CA or client certificate needs SSL or SASL_SSL, not ${protocol}`);
  }
  if ((input.cert === undefined) !== (input.key === undefined)) {
    throw new SecuritySettingError("a client certificate needs its key, and a key its certificate");
  }
  if (!sasl && (input.mechanism !== undefined || input.username !== undefined)) {
    throw new SecuritySettingError(`a SASL mechanism or user needs SASL_PLAINTEXT or SASL_SSL, not ${protocol}`);
  }
  if (protocol === "PLAINTEXT") return undefined;
  const security: { protocol: SecurityProtocol; tls?: KafkaTls; sasl?: KafkaSasl } = {
    protocol: protocol as SecurityProtocol,
  };
  if (tls) security.tls = { ca: input.ca, cert: input.cert, key: input.key };
  if (sasl) {
    const mechanism = (input.mechanism ?? "").toUpperCase();
    if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
      throw new SecuritySettingError(
        `${protocol} needs a SASL mechanism, one of ${SASL_MECHANISMS.join(", ")}` +
          (input.mechanism ? `, got '${input.mechanism}'` : ""),
      );
    }
    if (input.token && mechanism !== "OAUTHBEARER") {
      throw new SecuritySettingError(`a token is for SASL mechanism OAUTHBEARER, not ${mechanism}`);
    }
    if (mechanism === "OAUTHBEARER") {
      if (!input.token) throw new SecuritySettingError("OAUTHBEARER needs a token: --sasl-token-file");
      const token = input.token;
      security.sasl = { mechanism, token, subject: tokenSubject(token()) };
      return security;
    }
    if (!input.username) throw new SecuritySettingError(`${protocol} needs a SASL user name`);
    if (input.password === undefined || input.password === "") {
      throw new SecuritySettingError(`${protocol} needs the SASL password (KAFKA_SASL_PASSWORD or a password file)`);
    }
    const password = input.password;
    security.sasl = {
      mechanism: mechanism as PasswordSasl["mechanism"],
      username: input.username,
      password: () => password,
    };
  }
  return security;
}

/**
 * The `sub` claim of a JWT, which Kafka's OAUTHBEARER validators take for the
 * principal's name; `undefined` for a token that is no JWT or has none.
 *
 * @example
 * ```ts
 * tokenSubject("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhcHAifQ."); // "app"
 * ```
 */
export function tokenSubject(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (payload === undefined) return undefined;
  try {
    const base64 = payload.replaceAll("-", "+").replaceAll("_", "/");
    const claims = JSON.parse(atob(base64 + "=".repeat((4 - base64.length % 4) % 4)));
    return typeof claims?.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The settings a Java client properties file holds that usershard reads:
 * `security.protocol`, `sasl.mechanism`, the user and password of
 * `sasl.jaas.config`, and PEM CA, certificate and key files
 * (`ssl.truststore.location` and `ssl.keystore.location` with type PEM, or
 * `ssl.truststore.certificates` inline). Other keys are returned as unused,
 * for a warning.
 *
 * @example
 * ```ts
 * clientProperties('security.protocol=SASL_SSL\nsasl.jaas.config=... username="app" password="s3cret";');
 * // { input: { protocol: "SASL_SSL", username: "app", password: "s3cret" }, files: {}, unused: [] }
 * ```
 */
export function clientProperties(text: string): {
  input: SecurityInput;
  /** PEM files the properties name, to be read by the caller. */
  files: { ca?: string; cert?: string; key?: string };
  unused: string[];
} {
  const values = new Map<string, string>();
  const lines = text.replace(/\\\r?\n\s*/g, "").split(/\r?\n/);
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed.startsWith("!")) continue;
    const at = trimmed.search(/[=:]/);
    if (at < 0) continue;
    values.set(trimmed.slice(0, at).trim(), trimmed.slice(at + 1).trim());
  }
  const input: { -readonly [K in keyof SecurityInput]: SecurityInput[K] } = {};
  const files: { ca?: string; cert?: string; key?: string } = {};
  const unused: string[] = [];
  for (const [key, value] of values) {
    switch (key) {
      case "security.protocol":
        input.protocol = value;
        break;
      case "sasl.mechanism":
        input.mechanism = value;
        break;
      case "sasl.jaas.config":
        input.username = /username\s*=\s*"([^"]*)"/.exec(value)?.[1];
        input.password = /password\s*=\s*"([^"]*)"/.exec(value)?.[1];
        break;
      case "ssl.truststore.location":
        files.ca = value;
        break;
      case "ssl.truststore.certificates":
        input.ca = value;
        break;
      case "ssl.keystore.location":
        files.cert = files.key = value;
        break;
      case "ssl.truststore.type":
      case "ssl.keystore.type":
        if (value.toUpperCase() !== "PEM") {
          throw new SecuritySettingError(`${key}=${value}: usershard reads PEM files only (convert with openssl)`);
        }
        break;
      default:
        unused.push(key);
    }
  }
  return { input, files, unused };
}
