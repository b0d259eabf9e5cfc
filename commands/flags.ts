/**
 * Declares a subcommand's flags once and derives from that declaration the
 * parsing (with environment-variable fallbacks and defaults) and the `--help`
 * text, so the two cannot drift apart.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** One flag: how it is typed, documented and defaulted. */
export interface FlagSpec {
  readonly type: "string" | "boolean";
  readonly description: string;
  /** Placeholder shown in help, e.g. `PORT`. */
  readonly value?: string;
  /** Default used when neither the flag nor its environment variable is set. */
  readonly default?: string;
  /** Environment variable read when the flag is absent. */
  readonly env?: string;
}

/** A subcommand's name, one-line summary, usage line and flags. */
export interface CommandSpec {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  readonly flags: Readonly<Record<string, FlagSpec>>;
  /** Extra help text after the flag list (examples, notes). */
  readonly details?: string;
}

/** Parsed flag values: strings for string flags, booleans for boolean flags. */
export type FlagValues<F extends Readonly<Record<string, FlagSpec>>> = {
  [K in keyof F]: F[K]["type"] extends "boolean" ? boolean
    : F[K]["default"] extends string ? string
    : string | undefined;
};

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

/** The result of {@linkcode parseFlags}. */
export interface Parsed<F extends Readonly<Record<string, FlagSpec>>> {
  readonly flags: FlagValues<F>;
  readonly positionals: string[];
  readonly help: boolean;
  /** Where each string flag's value came from, so errors and warnings can say. */
  readonly sources: Readonly<Record<keyof F, "flag" | "env" | "default">>;
}

/**
 * Parses `args` against `spec`; a flag left out falls back to its environment
 * variable, then to its default.
 *
 * @example
 * ```ts
 * const spec = { name: "x", summary: "", usage: "", flags: {
 *   rate: { type: "string", default: "1", description: "events/s" } } } as const;
 * parseFlags(spec, ["--rate", "5"]).flags.rate; // "5"
 * ```
 */
export function parseFlags<F extends Readonly<Record<string, FlagSpec>>>(
  spec: CommandSpec & { flags: F },
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Parsed<F> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const [name, flag] of Object.entries(spec.flags)) options[name] = { type: flag.type };
  let parsed;
  try {
    parsed = parseArgs({ args: [...args], options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(argsProblem(error instanceof Error ? error.message : String(error)));
  }
  const flags: Record<string, string | boolean | undefined> = {};
  const sources: Record<string, "flag" | "env" | "default"> = {};
  for (const [name, flag] of Object.entries(spec.flags)) {
    const given = parsed.values[name];
    if (flag.type === "boolean") {
      const fromEnv = given === undefined && isTrue(flag.env && env(flag.env));
      flags[name] = given === true || fromEnv;
      sources[name] = given === true ? "flag" : fromEnv ? "env" : "default";
      continue;
    }
    const fromEnv = flag.env ? env(flag.env) : undefined;
    sources[name] = typeof given === "string" ? "flag" : fromEnv !== undefined && fromEnv !== "" ? "env" : "default";
    flags[name] = { flag: given, env: fromEnv, default: flag.default }[sources[name]];
  }
  return {
    flags: flags as FlagValues<F>,
    positionals: parsed.positionals,
    help: parsed.values.help === true,
    sources: sources as Record<keyof F, "flag" | "env" | "default">,
  };
}

/** node:util's wording (several lines of hints) as one line in the program's own words. */
function argsProblem(message: string): string {
  const first = message.split("\n")[0].split(". ")[0].replace(/\.$/, "");
  const ambiguous = /Option '(--[^']+)' argument is ambiguous/.exec(first)?.[1];
  if (ambiguous) return `${ambiguous} needs a value; write ${ambiguous}=VALUE for one starting with '-'`;
  const missing = /Option '(--[^ ']+)[^']*' argument missing/.exec(first)?.[1];
  if (missing) return `${missing} needs a value`;
  const unknown = /Unknown option '([^']+)'/.exec(first)?.[1];
  if (unknown) return `unknown flag ${unknown}`;
  return first;
}

function isTrue(value: string | undefined | false): boolean {
  return value !== undefined && value !== false && ["1", "true", "yes"].includes(value.toLowerCase());
}

/** Renders the `--help` text of a subcommand from its spec. */
export function helpText(spec: CommandSpec): string {
  const rows = Object.entries(spec.flags).map(([name, flag]) => {
    const left = `--${name}${flag.value ? ` ${flag.value}` : ""}`;
    const notes = [
      flag.env ? `env ${flag.env}` : "",
      flag.default !== undefined ? `default ${flag.default === "" ? '""' : flag.default}` : "",
    ].filter(Boolean);
    return [left, flag.description + (notes.length ? ` (${notes.join("; ")})` : "")];
  });
  rows.push(["-h, --help", "show this help"]);
  const width = Math.max(...rows.map(([left]) => left.length)) + 2;
  const lines = [
    `usershard ${spec.name}: ${spec.summary}`,
    "",
    `Usage: ${spec.usage}`,
    "",
    "Flags:",
    ...rows.map(([left, right]) => `  ${left.padEnd(width)}${right}`),
  ];
  if (spec.details) lines.push("", spec.details.trimEnd());
  return lines.join("\n") + "\n";
}

/**
 * Reads an integer flag within bounds.
 *
 * @example
 * ```ts
 * intFlag("users", "200", { min: 1 }); // 200
 * ```
 */
export function intFlag(name: string, value: string, bounds: { min?: number; max?: number } = {}): number {
  const n = /^-?\d+$/.test(value.trim()) ? Number(value) : NaN;
  const { min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER } = bounds;
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    const range = bounds.max !== undefined ? `an integer from ${min} to ${max}` : `an integer of at least ${min}`;
    throw new UsageError(`--${name} must be ${range}, got '${value}'`);
  }
  return n;
}

/** Reads a non-negative number flag (fractions allowed, e.g. a rate of 0.5/s). */
export function numberFlag(name: string, value: string, min = 0): number {
  const n = value.trim() === "" ? NaN : Number(value);
  if (!Number.isFinite(n) || n < min) {
    throw new UsageError(`--${name} must be a number of at least ${min}, got '${value}'`);
  }
  return n;
}

/** Reads a TCP port flag (1..65535). */
export function portFlag(name: string, value: string): number {
  return intFlag(name, value, { min: 1, max: 65535 });
}

/**
 * Reads a flag that names one endpoint: `host:port`, or a bare port on
 * `defaultHost`.
 *
 * @example
 * ```ts
 * endpointFlag("node", "8552", "localhost"); // "localhost:8552"
 * endpointFlag("node", "10.0.0.5:8552", "localhost"); // "10.0.0.5:8552"
 * ```
 */
export function endpointFlag(name: string, value: string, defaultHost: string): string {
  const endpoint = /^\d+$/.test(value) ? `${defaultHost}:${value}` : value;
  const port = Number(/^[^\s/]+:(\d{1,5})$/.exec(endpoint)?.[1] ?? 0);
  if (port < 1 || port > 65535) throw new UsageError(`--${name} must be a port (1-65535) or host:port, got '${value}'`);
  return endpoint;
}

/**
 * Reads a comma-separated list of `host:port` addresses.
 *
 * @example
 * ```ts
 * hostPortList("brokers", "localhost:9092,kafka:9092"); // ["localhost:9092", "kafka:9092"]
 * ```
 */
export function hostPortList(name: string, value: string): string[] {
  const items = value.split(",").map((item) => item.trim()).filter((item) => item !== "");
  if (items.length === 0) throw new UsageError(`--${name} must list at least one host:port, got '${value}'`);
  for (const item of items) {
    const match = /^(.+):(\d+)$/.exec(item);
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65535 || /[\s/]/.test(match[1])) {
      throw new UsageError(`--${name} expects host:port entries, got '${item}'`);
    }
  }
  return items;
}

/**
 * Reads a duration flag: a number above zero with a unit, `ms`, `s`, `m` or
 * `h` (every duration the program takes is a wait or a timeout, where zero
 * would only mean "fail at once").
 *
 * @example
 * ```ts
 * durationFlag("down-after", "5s"); // 5000
 * ```
 */
export function durationFlag(name: string, value: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)$/.exec(value.trim());
  const ms = match &&
    Math.round(Number(match[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[match[2] as "ms" | "s" | "m" | "h"]);
  if (!ms) throw new UsageError(`--${name} must be a duration above zero like 500ms, 5s or 1m, got '${value}'`);
  return ms;
}

/**
 * The text of the file that `--NAME` names; a {@linkcode UsageError} of one
 * line when it cannot be read.
 */
export function fileFlag(
  name: string,
  path: string,
  readFile: (path: string) => string = (path) => Deno.readTextFileSync(path),
): string {
  try {
    return readFile(path);
  } catch (error) {
    throw new UsageError(`cannot read --${name} ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}
