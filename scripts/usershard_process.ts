/**
 * `usershard` as a child process, run the way a user runs it from the
 * repository: the demo's nodes and producer, and the tests' nodes, are these.
 *
 * @module
 */

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/**
 * The command line that runs `usershard` with `args`, without colours;
 * `prefix` runs it through another program (`setpriv --regid …`, say).
 */
export function usershardCommand(
  args: readonly string[],
  options: Deno.CommandOptions = {},
  prefix: readonly string[] = [],
): Deno.Command {
  const command = [...prefix, Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args];
  return new Deno.Command(command[0], {
    args: command.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    ...options,
    env: { NO_COLOR: "1", ...options.env },
  });
}

/** How a {@linkcode UsershardProcess} is started, and who hears its output. */
export interface UsershardProcessOptions {
  readonly env?: Record<string, string>;
  /** A program to run `usershard` through. */
  readonly prefix?: readonly string[];
  /** Hears each chunk of standard output, as it comes. */
  readonly stdout?: (chunk: Uint8Array) => void | Promise<void>;
  /** Hears each chunk of standard error (the logs), as it comes. */
  readonly stderr?: (chunk: Uint8Array) => void | Promise<void>;
}

/** How a stop ended. */
export interface Stopped {
  readonly status: Deno.CommandStatus;
  /** From the signal to the exit. */
  readonly ms: number;
  /** Whether it had to be killed, past the bound. */
  readonly killed: boolean;
}

/** A running `usershard`: its output handed on as it comes, its exit, and signals. */
export class UsershardProcess {
  readonly args: readonly string[];
  readonly startedAt = Date.now();
  readonly #child: Deno.ChildProcess;
  #status: Deno.CommandStatus | undefined;
  #exited = false;
  /** Settles once the process has exited and its output has been handed on. */
  readonly done: Promise<Deno.CommandStatus>;

  constructor(args: readonly string[], options: UsershardProcessOptions = {}) {
    this.args = args;
    this.#child = usershardCommand(args, { env: options.env }, options.prefix).spawn();
    const output = Promise.all([pump(this.#child.stdout, options.stdout), pump(this.#child.stderr, options.stderr)]);
    this.#child.status.then(() => (this.#exited = true));
    this.done = Promise.all([this.#child.status, output]).then(([status]) => (this.#status = status));
  }

  /** Whether the process has exited (its output may still be coming). */
  get exited(): boolean {
    return this.#exited;
  }

  /** Its exit status, once it has exited and its output is handed on. */
  get status(): Deno.CommandStatus | undefined {
    return this.#status;
  }

  /** The process id. */
  get pid(): number {
    return this.#child.pid;
  }

  /** Sends `signal`, unless it has exited. */
  kill(signal: Deno.Signal): void {
    if (this.#status) return;
    try {
      this.#child.kill(signal);
    } catch (error) {
      // It exited between the check and the signal.
      if (!(error instanceof TypeError)) throw error;
    }
  }

  /** Sends `signal` (none when it was sent already), and kills it if it has not exited within `timeoutMs`. */
  async stop(signal: Deno.Signal | undefined, timeoutMs: number): Promise<Stopped> {
    const from = Date.now();
    if (signal) this.kill(signal);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), timeoutMs));
    const first = await Promise.race([this.done, late]);
    clearTimeout(timer);
    if (first === "late") this.kill("SIGKILL");
    return { status: await this.done, ms: Date.now() - from, killed: first === "late" };
  }
}

/** Reads `stream` to its end, handing each chunk on; a listener that fails is not handed more, but the pipe is still drained. */
async function pump(
  stream: ReadableStream<Uint8Array>,
  hear: ((chunk: Uint8Array) => void | Promise<void>) | undefined,
): Promise<void> {
  let listening = hear;
  for await (const chunk of stream) {
    try {
      await listening?.(chunk);
    } catch {
      // A full pipe would block the child: it is read on, unheard.
      listening = undefined;
    }
  }
}
