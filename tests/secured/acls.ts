/**
 * Users and ACLs on the secured broker, through Kafka's own kafka-acls.sh
 * and kafka-configs.sh (`tests/secured/broker.sh acls|configs`, on the
 * plaintext listener, whose principal is a super user there). The broker's
 * start allows "usershard" everything on every topic, group and
 * transactional id; a test denies it one thing and takes the denial back,
 * or makes a user of its own with only the ACLs it grants.
 */

/** The principal the secured tests connect as. */
export const PRINCIPAL = "User:usershard";

const BROKER_SH = new URL("./broker.sh", import.meta.url).pathname;

/** Runs `broker.sh TOOL ARGS` (a Kafka tool); throws with its output when it fails. */
async function kafkaTool(tool: "acls" | "configs", args: string[]): Promise<void> {
  const output = await new Deno.Command("bash", { args: [BROKER_SH, tool, ...args], stdout: "null", stderr: "piped" })
    .output();
  if (!output.success) {
    throw new Error(`kafka-${tool} ${args.join(" ")} failed: ${new TextDecoder().decode(output.stderr)}`);
  }
}

/**
 * Denies "usershard" `operation` on the topics or groups whose names start
 * with `prefix`; the returned function takes the denial back.
 */
export async function deny(
  operation: "Create" | "Read" | "Write",
  resource: "topic" | "group",
  prefix: string,
): Promise<() => Promise<void>> {
  const acl = [
    ...["--deny-principal", PRINCIPAL, "--operation", operation, `--${resource}`, prefix],
    ...["--resource-pattern-type", "prefixed"],
  ];
  await kafkaTool("acls", ["--add", ...acl]);
  return () => kafkaTool("acls", ["--remove", "--force", ...acl]);
}

/** Adds ACLs: `kafka-acls.sh --add` with `args`. */
export function allow(args: string[]): Promise<void> {
  return kafkaTool("acls", ["--add", ...args]);
}

/**
 * A new SCRAM-SHA-512 user with no ACLs, and a client properties file for it
 * made from `properties` (the broker's, for "usershard"); its principal and
 * the file's path.
 */
export async function newUser(name: string, properties: string): Promise<{ principal: string; properties: string }> {
  const password = crypto.randomUUID();
  await kafkaTool("configs", [
    ...["--alter", "--add-config", `SCRAM-SHA-512=[password=${password}]`],
    ...["--entity-type", "users", "--entity-name", name],
  ]);
  const path = `${await Deno.makeTempDir()}/client.properties`;
  const text = (await Deno.readTextFile(properties))
    .replace(/username="[^"]*"/, `username="${name}"`)
    .replace(/password="[^"]*"/, `password="${password}"`);
  await Deno.writeTextFile(path, text);
  return { principal: `User:${name}`, properties: path };
}
