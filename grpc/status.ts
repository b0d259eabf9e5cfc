/**
 * gRPC status codes (as numbers on the wire, and by their canonical names:
 * `OK`, `UNAVAILABLE`, as metrics, logs and grpcurl show them) and the error
 * that carries one.
 *
 * @module
 */

/** The status codes of gRPC (grpc/doc/statuscodes.md). */
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const NAMES = new Map(Object.entries(Status).map(([name, code]) => [code as number, name]));

/**
 * The canonical name of a status code.
 *
 * @example
 * ```ts
 * statusName(14); // "UNAVAILABLE"
 * ```
 */
export function statusName(code: number): string {
  return NAMES.get(code) ?? `CODE_${code}`;
}

/** A call that ended with a status other than OK. */
export class GrpcError extends Error {
  override name = "GrpcError";
  /**
   * @param code a {@linkcode Status} code
   * @param message the status message (`grpc-message`)
   */
  constructor(readonly code: number, message: string) {
    super(message);
  }
}
