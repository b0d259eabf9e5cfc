/**
 * A `usershard` child process whose output a test can wait on.
 *
 * @module
 */
import { UsershardProcess } from "../../scripts/usershard_process.ts";

/** A running `usershard` process with its output collected as it comes. */
export class RunningUsershard {
  readonly #process: UsershardProcess;
  #stdout = "";
  #stderr = "";
  readonly #waiters = new Set<() => void>();
  readonly args: readonly string[];

  /** @param prefix a program to run `usershard` through (`setpriv --regid …`, say) */
  constructor(args: readonly string[], env: Record<string, string> = {}, prefix: readonly string[] = []) {
    this.args = args;
    const decoders = [new TextDecoder(), new TextDecoder()];
    const hear = (which: 0 | 1) => (chunk: Uint8Array) => {
      const text = decoders[which].decode(chunk, { stream: true });
      if (which === 0) this.#stdout += text;
      else this.#stderr += text;
      for (const wake of this.#waiters) wake();
    };
    this.#process = new UsershardProcess(args, { env, prefix, stdout: hear(0), stderr: hear(1) });
  }

  /** Everything written to standard output so far. */
  get stdout(): string {
    return this.#stdout;
  }

  /** Everything written to standard error (the logs) so far. */
  get stderr(): string {
    return this.#stderr;
  }

  /** Whether the process still runs. */
  get running(): boolean {
    return !this.#process.exited;
  }

  /** The process id. */
  get pid(): number {
    return this.#process.pid;
  }

  /**
   * Resolves when `pattern` appears in stderr (or stdout); rejects after
   * `timeoutMs`, or when the process exits first, quoting the output.
   */
  waitForOutput(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const match = this.#stderr.match(pattern) ?? this.#stdout.match(pattern);
        if (match) finish(() => resolve(match));
      };
      const finish = (then: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        then();
      };
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new Error(`no ${pattern} from usershard ${this.args.join(" ")} in ${timeoutMs} ms:\n${this.#tail()}`),
            )
          ),
        timeoutMs,
      );
      this.#waiters.add(check);
      this.#process.done.then(() => {
        check();
        finish(() => reject(new Error(`usershard ${this.args.join(" ")} exited before ${pattern}:\n${this.#tail()}`)));
      });
      check();
    });
  }

  #tail(): string {
    return this.#stderr.split("\n").slice(-30).join("\n");
  }

  /** Sends `signal` to the process. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    this.#process.kill(signal);
  }

  /** Waits for the exit (and the end of its output); kills it after `timeoutMs`, and fails. */
  async exited(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill("SIGKILL");
        reject(new Error(`usershard ${this.args.join(" ")} did not exit in ${timeoutMs} ms:\n${this.#tail()}`));
      }, timeoutMs);
    });
    try {
      return await Promise.race([this.#process.done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process if it still runs and waits for it; for test clean-up. */
  async stop(): Promise<void> {
    this.kill("SIGKILL");
    await this.#process.done;
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
