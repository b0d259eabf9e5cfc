/**
 * gRPC clients of other stacks, run as their own processes: `@grpc/grpc-js`
 * on Node.js and Debian's `python3-grpcio`, each made from the wire contract
 * alone (`proto/users.proto`, or bytes written by hand), not from this
 * project's code.
 *
 * @module
 */

/** What one run of a client script reports. */
export interface ClientRun {
  /** Calls answered. */
  readonly ok: number;
  /** Calls failed, by gRPC status name. */
  readonly failed: Record<string, number>;
  /** The last answer for each user asked. */
  readonly answers: Record<string, { totalPurchases: number; amountSpent: number }>;
  /** grpcio's `services` pattern: the health status number (1 = SERVING). */
  readonly health?: number;
  /** grpcio's `services` pattern: the services reflection lists, by reflection version. */
  readonly services?: Record<string, string[]>;
}

const CLIENTS = new URL("../clients/", import.meta.url).pathname;
const USERS_PROTO = new URL("../../proto/users.proto", import.meta.url).pathname;
const PYTHON = "/usr/bin/python3";

/** TLS for a foreign client: the PEM files of the CA it trusts, and of its own certificate and key if it has one. */
export interface ForeignClientTls {
  readonly ca: string;
  readonly cert?: string;
  readonly key?: string;
}

/** Patterns both clients know: see `tests/clients/*`. */
export type Pattern = "ask" | "rounds" | "midflight" | "sequential";

async function runClient(
  command: string,
  args: string[],
  cwd: string,
  timeoutMs: number,
  tls: ForeignClientTls | undefined,
): Promise<ClientRun> {
  // GRPC_TEST_CA: the clients speak TLS, trusting that CA; GRPC_TEST_CERT and GRPC_TEST_KEY: with this client certificate.
  const env: Record<string, string> = {};
  if (tls) env.GRPC_TEST_CA = tls.ca;
  if (tls?.cert !== undefined && tls.key !== undefined) {
    Object.assign(env, { GRPC_TEST_CERT: tls.cert, GRPC_TEST_KEY: tls.key });
  }
  const child = new Deno.Command(command, { args, cwd, env, stdout: "piped", stderr: "piped" }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
  const output = await child.output();
  clearTimeout(timer);
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  if (output.code !== 0) {
    throw new Error(`${command} ${args.join(" ")} exited ${output.code} (signal ${output.signal}):\n${stderr}`);
  }
  try {
    return JSON.parse(stdout.trim().split("\n").at(-1)!);
  } catch {
    throw new Error(`${command} ${args.join(" ")} printed no result:\n${stdout}\n${stderr}`);
  }
}

let grpcJsFolder: Promise<string> | undefined;

/** Installs `@grpc/grpc-js` for Node.js once (`tests/clients/install.sh`) and gives its folder. */
function installGrpcJs(): Promise<string> {
  grpcJsFolder ??= (async () => {
    const output = await new Deno.Command("bash", { args: [`${CLIENTS}install.sh`], stderr: "inherit" }).output();
    if (!output.success) throw new Error("could not install @grpc/grpc-js for Node.js (tests/clients/install.sh)");
    const folder = new TextDecoder().decode(output.stdout).trim();
    // Node resolves an ES module's imports from the module's own folder, so the script runs from there.
    await Deno.copyFile(`${CLIENTS}grpc_js_client.mjs`, `${folder}/grpc_js_client.mjs`);
    return folder;
  })();
  return grpcJsFolder;
}

/** Runs the grpc-js client (`tests/clients/grpc_js_client.mjs`) on Node.js against `target`; over TLS with `tls`. */
export async function grpcJs(
  target: string,
  pattern: Pattern | "killed",
  users: readonly string[],
  timeoutMs = 120_000,
  tls?: ForeignClientTls,
): Promise<ClientRun> {
  const folder = await installGrpcJs();
  const args = ["grpc_js_client.mjs", target, USERS_PROTO, pattern, users.join(",")];
  return runClient("node", args, folder, timeoutMs, tls);
}

/** Runs the grpcio client (`tests/clients/grpcio_client.py`) with Debian's Python against `target`; over TLS with `tls`. */
export async function grpcio(
  target: string,
  pattern: Pattern | "services",
  users: readonly string[],
  timeoutMs = 120_000,
  tls?: ForeignClientTls,
): Promise<ClientRun> {
  const check = await new Deno.Command(PYTHON, { args: ["-c", "import grpc"], cwd: "/", stderr: "null" }).output()
    .catch(() => undefined);
  if (!check?.success) throw new Error(`${PYTHON} cannot import grpc: install Debian's python3-grpcio`);
  return runClient(PYTHON, ["grpcio_client.py", target, pattern, users.join(",")], CLIENTS, timeoutMs, tls);
}
