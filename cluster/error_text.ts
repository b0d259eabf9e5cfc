/**
 * One line for an error, for logs and replies.
 *
 * @module
 */

/**
 * An error's message; for an error that gathers others (an AggregateError,
 * or a client's "failed 13 times"), the last of those too, since that is
 * what says why.
 *
 * @example
 * ```ts
 * errorText(new AggregateError([new Error("broker down")], "send failed 3 times")); // "send failed 3 times: broker down"
 * errorText("plain"); // "plain"
 * ```
 */
export function errorText(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const inner = (error as Error & { errors?: unknown }).errors;
  const last = Array.isArray(inner) ? inner.at(-1) : undefined;
  return last === undefined ? error.message : `${error.message}: ${errorText(last)}`;
}
