/**
 * A child process of the demo (a node, the producer): its output goes to its
 * own log file as it comes, and its last line is kept to say why it stopped.
 *
 * @module
 */
import { type Stopped, UsershardProcess } from "../usershard_process.ts";

/** A log line's message: `2026-01-01T00:00:00.000Z INFO  coordinator: rebalance …` → `rebalance …`. */
export function logMessage(line: string): string {
  return line.replace(/^\d{4}-\d\d-\d\dT\S+\s+[A-Z]+\s+(?:[\w.-]+: )?/, "");
}

/** A `usershard` the demo started. */
export class Child {
  readonly name: string;
  readonly logPath: string;
  readonly #process: UsershardProcess;
  /** The end of its output: enough for the last line. */
  #tail = "";
  #signalled = false;

  /** Starts `usershard args`, its output appended to `log` (at `logPath`). */
  constructor(name: string, args: readonly string[], logPath: string, log: Deno.FsFile) {
    this.name = name;
    this.logPath = logPath;
    const writer = log.writable.getWriter();
    const hear = () => {
      // One decoder per pipe: a character split across chunks of one must not meet the other's.
      const decoder = new TextDecoder();
      return async (chunk: Uint8Array) => {
        await writer.write(chunk);
        this.#tail = (this.#tail + decoder.decode(chunk, { stream: true })).slice(-4096);
      };
    };
    this.#process = new UsershardProcess(args, {
      // At info level, as text: a log that reads like the walkthrough it follows.
      env: { USERSHARD_LOG_LEVEL: "info", USERSHARD_LOG_FORMAT: "text" },
      stdout: hear(),
      stderr: hear(),
    });
    this.#process.done.finally(() => writer.close()).catch(() => {});
  }

  /** When it was started. */
  get startedAt(): number {
    return this.#process.startedAt;
  }

  /** Its exit status once it has exited. */
  get status(): Deno.CommandStatus | undefined {
    return this.#process.status;
  }

  /** Whether the demo has asked it to stop. */
  get signalled(): boolean {
    return this.#signalled;
  }

  /** Its last line, for a message that says why it stopped. */
  lastLine(): string {
    const last = this.#tail.split("\n").findLast((l) => l.trim() !== "");
    return last === undefined ? "(no output)" : logMessage(last);
  }

  /** Asks it to stop (once): a node leaves the cluster, the producer waits for Kafka's acknowledgements. */
  terminate(): void {
    if (this.#signalled) return;
    this.#signalled = true;
    this.#process.kill("SIGTERM");
  }

  /** Sends `signal` unless it has exited. */
  kill(signal: Deno.Signal): void {
    this.#process.kill(signal);
  }

  /** Stops it; kills it if it has not exited within `timeoutMs`. */
  stop(timeoutMs: number): Promise<Stopped> {
    // Not twice: a node takes a second stop signal as "exit at once", without leaving the cluster.
    const signal = this.#signalled ? undefined : "SIGTERM";
    this.#signalled = true;
    return this.#process.stop(signal, timeoutMs);
  }
}
