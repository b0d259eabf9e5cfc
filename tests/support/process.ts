/**
 * A `usershard` child process whose output a test can wait on, line by line.
 *
 * @module
 */
import { usershardCommand } from "./cli.ts";

/** A running `usershard` process with its output collected as it comes. */
export class RunningUsershard {
  readonly #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #waiters = new Set<() => void>();
  readonly #pumps: Promise<void>;
  #running = true;
  readonly args: readonly string[];

  /** @param prefix a program to run `usershard` through (`setpriv --regid …`, say) */
  constructor(args: readonly string[], env: Record<string, string> = {}, prefix: readonly string[] = []) {
    this.args = args;
    this.#child = usershardCommand(args, { env }, prefix).spawn();
    this.#child.status.then(() => (this.#running = false));
    this.#pumps = Promise.all([
      this.#pump(this.#child.stdout, (text) => (this.#stdout += text)),
      this.#pump(this.#child.stderr, (text) => (this.#stderr += text)),
    ]).then(() => {});
  }

  async #pump(stream: ReadableStream<Uint8Array>, append: (text: string) => void): Promise<void> {
    for await (const text of stream.pipeThrough(new TextDecoderStream())) {
      append(text);
      for (const wake of this.#waiters) wake();
    }
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
    return this.#running;
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
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
      this.#child.status.then(() =>
        this.#pumps.then(() => {
          check();
          finish(() =>
            reject(new Error(`usershard ${this.args.join(" ")} exited before ${pattern}:\n${this.#tail()}`))
          );
        })
      );
      check();
    });
  }

  #tail(): string {
    return this.#stderr.split("\n").slice(-30).join("\n");
  }

  /** Sends `signal` to the process. */
  kill(signal: Deno.Signal = "SIGTERM"): void {
    try {
      this.#child.kill(signal);
    } catch (error) {
      if (!(error instanceof TypeError)) throw error; // already exited
    }
  }

  /** Waits for the exit (and the end of its output); kills it after `timeoutMs`. */
  async exited(timeoutMs = 30_000): Promise<Deno.CommandStatus> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.kill("SIGKILL");
        reject(new Error(`usershard ${this.args.join(" ")} did not exit in ${timeoutMs} ms:\n${this.#tail()}`));
      }, timeoutMs);
    });
    try {
      const status = await Promise.race([this.#child.status, timeout]);
      await this.#pumps;
      return status;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Kills the process if it still runs and waits for it; for test clean-up. */
  async stop(): Promise<void> {
    this.kill("SIGKILL");
    await this.#child.status;
    await this.#pumps;
  }
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}
