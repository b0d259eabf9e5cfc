/**
 * Runs the real `usershard` program as a child process, the way a user does,
 * or one command in this process with what it prints captured.
 *
 * @module
 */
import { type Command, runCommand } from "../../commands/command.ts";
import { usershardCommand } from "../../scripts/usershard_process.ts";

const decoder = new TextDecoder();

/** What a finished CLI run printed and returned. */
export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `usershard` to completion; fails the test if it takes longer than
 * `timeoutMs` (the process is killed first).
 */
export async function runUsershard(
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number; stdin?: string } = {},
): Promise<CliResult> {
  const child = usershardCommand(args, { env: options.env, stdin: options.stdin === undefined ? "null" : "piped" })
    .spawn();
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const timeoutMs = options.timeoutMs ?? 60_000;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill("SIGKILL");
  }, timeoutMs);
  const output = await child.output();
  clearTimeout(timer);
  const result = { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
  if (timedOut) throw new Error(`usershard ${args.join(" ")} did not finish in ${timeoutMs} ms:\n${result.stderr}`);
  return result;
}

/** Runs `fn` with console.error captured; returns what it resolved with and what it printed, line by line. */
export async function stderrOf<T>(fn: () => Promise<T>): Promise<{ result: T; lines: string[] }> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => lines.push(args.map(String).join(" "));
  try {
    return { result: await fn(), lines };
  } finally {
    console.error = original;
  }
}

/** Runs `command` with `args` in this process; its exit code and the lines it printed on standard error. */
export async function runInProcess(
  command: Command,
  args: readonly string[],
): Promise<{ code: number; lines: string[] }> {
  const { result, lines } = await stderrOf(() => runCommand(command, args));
  return { code: result, lines };
}
