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
import { errorText } from "../cluster/error_text.ts";

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
        if (error instanceof StdoutClosed) return 0;
        throw error instanceof UsageError ? namingEnvironment(error, spec, parsed.sources) : error;
      }
    },
  };
}

/**
 * Runs `command` with `args` and turns what it throws into an exit code and
 * one line on standard error: 2 for a usage error, 1 for anything else. An
 * error nobody foresaw gets one line too (its stack only with
 * `USERSHARD_STACK=1`): a stack trace tells a user nothing they can act on.
 */
export async function runCommand(command: Command, args: readonly string[]): Promise<number> {
  const name = command.spec.name;
  try {
    return await command.execute(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`usershard ${name}: ${error.message} (see usershard ${name} --help)`);
      return 2;
    }
    if (error instanceof CliError) {
      console.error(`usershard ${name}: ${error.message}`);
      return 1;
    }
    console.error(`usershard ${name}: unexpected error: ${errorText(error).replace(/\s*\n\s*/g, " ")}`);
    if (Deno.env.get("USERSHARD_STACK") === "1" && error instanceof Error) console.error(error.stack);
    return 1;
  }
}

/** A bad value that came from an environment variable is reported under that name, which is what to fix. */
function namingEnvironment<F extends Readonly<Record<string, FlagSpec>>>(
  error: UsageError,
  spec: CommandSpec & { readonly flags: F },
  sources: Parsed<F>["sources"],
): UsageError {
  const message = error.message.replace(/--([a-z-]+)/g, (flag, name: string) => {
    const env = sources[name] === "env" ? spec.flags[name]?.env : undefined;
    return env ? `${env} (${flag})` : flag;
  });
  return message === error.message ? error : new UsageError(message);
}

const encoder = new TextEncoder();

/**
 * Nobody reads standard output any more (a pipe into `head`). A command ends
 * quietly then, as Unix tools do: with status 0, unless it already knows of a
 * failure, which it returns instead.
 */
export class StdoutClosed extends Error {
  override name = "StdoutClosed";
}

/** Writes `text` to standard output, all of it; throws {@linkcode StdoutClosed} when the reader has gone. */
export async function writeStdout(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  try {
    for (let written = 0; written < bytes.length;) written += await Deno.stdout.write(bytes.subarray(written));
  } catch (error) {
    throw error instanceof Deno.errors.BrokenPipe ? new StdoutClosed("standard output was closed") : error;
  }
}
