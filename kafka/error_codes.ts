/**
 * Finding the error code by which Kafka refused a request. @platformatic/kafka
 * names it in `apiId` and nests one error per attempt and per partition, so
 * the code sought need not be on the outermost error.
 *
 * @module
 */

/** The first error in `error`, its nested errors and its causes whose Kafka error name `matches`, with that name. */
export function kafkaErrorCode(
  error: unknown,
  matches: (code: string) => boolean,
  depth = 0,
): { readonly code: string; readonly error: Error } | undefined {
  if (!(error instanceof Error) || depth > 6) return undefined;
  const { apiId, errors } = error as Error & { apiId?: unknown; errors?: unknown };
  if (typeof apiId === "string" && matches(apiId)) return { code: apiId, error };
  for (const inner of [...(Array.isArray(errors) ? errors : []), error.cause]) {
    const found = kafkaErrorCode(inner, matches, depth + 1);
    if (found) return found;
  }
  return undefined;
}
