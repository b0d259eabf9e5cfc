/**
 * What a subcommand is to `main.ts`: its spec (for help) and a function from
 * arguments to an exit code. Errors a user should read are thrown as
 * {@linkcode CliError} (exit 1) or {@linkcode UsageError} (exit 2) and printed
 * by `main.ts` as one line.
 *
 * @module
 */
import { type CommandSpec, type FlagSpec, type FlagValues, helpText, parseFlags } from "./flags.ts";

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
  run: (flags: FlagValues<F>, positionals: string[]) => Promise<number>,
): Command {
  return {
    spec,
    async execute(args) {
      const parsed = parseFlags(spec, args);
      if (parsed.help) {
        await writeStdout(helpText(spec));
        return 0;
      }
      return await run(parsed.flags, parsed.positionals);
    },
  };
}

const encoder = new TextEncoder();

/** Writes `text` to standard output, all of it. */
export async function writeStdout(text: string): Promise<void> {
  const bytes = encoder.encode(text);
  for (let written = 0; written < bytes.length;) written += await Deno.stdout.write(bytes.subarray(written));
}
