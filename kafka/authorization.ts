/**
 * Kafka's ACL refusals, said so that an operator can fix them: which
 * principal may not do what to which resource, and the ACL that would allow
 * it, in the flags of Kafka's own `kafka-acls.sh`. Kafka answers only with a
 * code (`TOPIC_AUTHORIZATION_FAILED`); what was asked is known where the
 * request was made, so each such place names its {@linkcode Permission}.
 *
 * @module
 */
import { kafkaErrorCode } from "./error_codes.ts";
import type { KafkaSecurity } from "./security.ts";

/** What an ACL allows, in `kafka-acls.sh`'s words. */
export interface Permission {
  readonly operation: "Create" | "Describe" | "DescribeConfigs" | "IdempotentWrite" | "Read" | "Write";
  readonly resource: "Topic" | "Group" | "TransactionalId" | "Cluster";
  /** The resource's name; for a transactional id, the prefix every one of this program's starts with. */
  readonly name: string;
  /** Whether `name` is a prefix (`--resource-pattern-type prefixed`). */
  readonly prefixed?: boolean;
}

/** Kafka's error codes that say an ACL is missing, by number (as a fetch answer's partitions carry them). */
export const AUTHORIZATION_FAILURES: Readonly<Record<number, string>> = {
  29: "TOPIC_AUTHORIZATION_FAILED",
  30: "GROUP_AUTHORIZATION_FAILED",
  31: "CLUSTER_AUTHORIZATION_FAILED",
  53: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
};

const RESOURCE_OF_CODE: Readonly<Record<string, Permission["resource"]>> = {
  TOPIC_AUTHORIZATION_FAILED: "Topic",
  GROUP_AUTHORIZATION_FAILED: "Group",
  CLUSTER_AUTHORIZATION_FAILED: "Cluster",
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TransactionalId",
};

/**
 * Kafka refused a request because no ACL allows {@linkcode permission} to
 * {@linkcode principal}. The message says both, and the ACL that would allow it.
 */
export class KafkaNotAuthorized extends Error {
  override name = "KafkaNotAuthorized";
  /**
   * @param permission what was refused; `undefined` when the request did not say (then only the resource's kind is known)
   * @param code Kafka's error name
   * @param principal who asked, when known ({@linkcode kafkaPrincipal})
   */
  constructor(
    readonly permission: Permission | undefined,
    readonly code: string,
    readonly principal?: string,
    options?: ErrorOptions,
  ) {
    super(aclSentence(permission, code, principal), options);
  }

  /** The same refusal, said of `principal`. */
  of(principal: string): KafkaNotAuthorized {
    return this.principal ? this : new KafkaNotAuthorized(this.permission, this.code, principal, { cause: this.cause });
  }
}

/**
 * The ACL refusal in `error` as a {@linkcode KafkaNotAuthorized}: of the one
 * permission among `needs` on the kind of resource Kafka named (a topic, a
 * group, a transactional id, the cluster); `undefined` when Kafka did not
 * refuse by ACL.
 */
export function notAuthorized(
  error: unknown,
  needs: readonly Permission[],
  principal?: string,
): KafkaNotAuthorized | undefined {
  if (error instanceof KafkaNotAuthorized) return principal ? error.of(principal) : error;
  const code = kafkaErrorCode(error, (name) => name in RESOURCE_OF_CODE)?.code;
  if (code === undefined) return undefined;
  return refusal(code, needs, principal, { cause: error });
}

/** The refusal that Kafka's error `code` (a name from {@linkcode AUTHORIZATION_FAILURES}) means for a request that `needs` these. */
export function refusal(
  code: string,
  needs: readonly Permission[],
  principal?: string,
  options?: ErrorOptions,
): KafkaNotAuthorized {
  const resource = RESOURCE_OF_CODE[code];
  const asked = needs.find((p) => p.resource === resource) ??
    (resource === "Cluster" && needs.length > 0
      ? { operation: needs[0].operation, resource, name: "kafka-cluster" }
      : undefined);
  return new KafkaNotAuthorized(asked, code, principal, options);
}

/** Runs `request`; an ACL refusal becomes a {@linkcode KafkaNotAuthorized} of one of `needs`. */
export async function asking<T>(
  needs: Permission | readonly Permission[],
  request: () => Promise<T>,
  principal?: string,
): Promise<T> {
  try {
    return await request();
  } catch (error) {
    throw notAuthorized(error, Array.isArray(needs) ? needs : [needs as Permission], principal) ?? error;
  }
}

/**
 * The principal Kafka sees for these settings, as ACLs name it: the SASL
 * user, or for a client certificate alone, whatever the broker's
 * `ssl.principal.mapping.rules` make of its name.
 *
 * @example
 * ```ts
 * kafkaPrincipal(undefined); // "User:ANONYMOUS"
 * ```
 */
export function kafkaPrincipal(security: KafkaSecurity | undefined): string {
  const sasl = security?.sasl;
  if (sasl?.mechanism === "OAUTHBEARER") return sasl.subject ? `User:${sasl.subject}` : "the token's principal";
  if (sasl) return `User:${sasl.username}`;
  if (security?.tls?.cert !== undefined) return "the client certificate's principal (User:CN=…)";
  return security?.protocol === "SSL" ? "User:ANONYMOUS (TLS without a client certificate)" : "User:ANONYMOUS";
}

/**
 * Who may not do what, and the ACL that would allow it.
 *
 * @example
 * ```ts
 * aclSentence({ operation: "Read", resource: "Group", name: "g" }, "GROUP_AUTHORIZATION_FAILED", "User:u");
 * // "User:u is not authorized to read group g (GROUP_AUTHORIZATION_FAILED); the ACL that allows it:
 * //  kafka-acls.sh --add --allow-principal User:u --operation Read --group g"
 * ```
 */
export function aclSentence(permission: Permission | undefined, code: string, principal?: string): string {
  const who = principal ? `${principal} is not` : "not";
  if (!permission) {
    const kind = (RESOURCE_OF_CODE[code] ?? "resource").replace("TransactionalId", "transactional id").toLowerCase();
    return `${who} authorized (${code}): an ACL on the ${kind} is missing`;
  }
  const resource = {
    Topic: `--topic ${permission.name}`,
    Group: `--group ${permission.name}`,
    TransactionalId: `--transactional-id ${permission.name}`,
    Cluster: "--cluster",
  }[permission.resource];
  const pattern = permission.prefixed ? " --resource-pattern-type prefixed" : "";
  const user = principal?.startsWith("User:") ? principal.split(" ")[0] : "PRINCIPAL";
  return `${who} authorized to ${verb(permission.operation)} ${resourceWords(permission)} (${code}); ` +
    `the ACL that allows it: kafka-acls.sh --add --allow-principal ${user} --operation ${permission.operation} ` +
    `${resource}${pattern}`;
}

/** The first ACL refusal in `error` and its causes, as a {@linkcode KafkaNotAuthorized}. */
export function findNotAuthorized(error: unknown, depth = 0): KafkaNotAuthorized | undefined {
  if (error instanceof KafkaNotAuthorized) return error;
  if (!(error instanceof Error) || depth > 6) return undefined;
  return findNotAuthorized(error.cause, depth + 1);
}

function verb(operation: Permission["operation"]): string {
  if (operation === "DescribeConfigs") return "read the configuration of";
  if (operation === "IdempotentWrite") return "write idempotently to";
  return operation.toLowerCase();
}

function resourceWords(permission: Permission): string {
  if (permission.resource === "Cluster") return "the cluster";
  const kind = { Topic: "topic", Group: "group", TransactionalId: "transactional ids" }[permission.resource];
  return `${kind} ${permission.name}${permission.prefixed ? "*" : ""}`;
}

/**
 * Says each refusal once while it lasts (again every `repeatMs`), and its
 * end once: a node that lost a permission retries every second, and its log
 * should say so, not repeat it every second. Time is an input.
 */
export class RefusalLog {
  readonly #said = new Map<string, { readonly sentence: string; readonly at: number }>();

  constructor(readonly repeatMs = 30_000) {}

  /** `what` was refused, as `sentence`, at `now`: whether to log it (the first time, a new sentence, or `repeatMs` on). */
  refused(what: string, sentence: string, now: number): boolean {
    const said = this.#said.get(what);
    if (said && said.sentence === sentence && now - said.at < this.repeatMs) return false;
    this.#said.set(what, { sentence, at: now });
    return true;
  }

  /** `what` went through: whether it had been refused, so that its end is logged. */
  allowed(what: string): boolean {
    return this.#said.delete(what);
  }
}
