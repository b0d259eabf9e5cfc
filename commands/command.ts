/**
 * What a subcommand is to `main.ts`: its spec (for help) and a function from
 * arguments to an exit code. Errors a user should read are thrown as
 * {@linkcode CliError} (exit 1) or {@linkcode UsageError} (exit 2) and printed
 * by `main.ts` as one line.
 *
 * @module
 */
import {
  type CommandSpec,
  type FlagSpec,
  type FlagValues,
  helpText,
  type Parsed,
  parseFlags,
  UsageError,
} from "./flags.ts";

/** A runtime failure the user should read: printed as one line, exit code 1. */
export class CliError extends Error {
  override name = "CliError";
}

/** A subcommand as `main.ts` sees it. */
export interface Command {
  readonly spec: CommandSpec;
  /** Parses `args`, prints help when asked, runs; resolves to the exit code. */
  execute(args: readonly string[]): Promise<number>;
}

/**
 * Binds a spec to the function that runs the command with parsed flags.
 *
 * @example
 * ```ts
 * const hello = defineCommand(
 *   { name: "hello", summary: "greets", usage: "usershard hello", flags: {} },
 *   async () => { console.log("hi"); return 0; },
 * );
 * ```
 */
export function defineCommand<F extends Readonly<Record<string, FlagSpec>>>(
  spec: CommandSpec & { readonly flags: F },
  run: (flags: FlagValues<F>, positionals: string[], sources: Parsed<F>["sources"]) => Promise<number>,
): Command {
  return {
    spec,
    async execute(args) {
      const parsed = parseFlags(spec, args);
      if (parsed.help) {
        await writeStdout(helpText(spec));
        return 0;
      }
      try {
        return await run(parsed.flags, parsed.positionals, parsed.sources);
      } catch (error) {
        throw error instanceof UsageError ? namingEnvironment(error, spec, parsed.sources) : error;
      }
    },
  };
}

/** A bad value that came from an environment variable is reported under that name, which is what to fix. */
function namingEnvironment<F extends Readonly<Record<string, FlagSpec>>>(
  error: UsageError,
  spec: CommandSpec & { readonly flags: F },
  sources: Parsed<F>["sources"],
): UsageError {
  const name = /^--([a-z-]+)/.exec(error.message)?.[1];
  const env = name && sources[name] === "env" ? spec.flags[name]?.env : undefined;
  return env ? new UsageError(error.message.replace(`--${name}`, `${env} (--${name})`)) : error;
}

const encoder = new TextEncoder();

/**
 * Writes `text` to standard output, all of it. When the reader has gone (a
 * pipe into `head`), the program ends quietly with status 0, as Unix tools do.
 */
export async function writeStdout(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  try {
    for (let written = 0; written < bytes.length;) written += await Deno.stdout.write(bytes.subarray(written));
  } catch (error) {
    if (error instanceof Deno.errors.BrokenPipe) Deno.exit(0);
    throw error;
  }
}
