/**
 * How remoting fails, and the one deadline helper the project shares.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Failure, FailureSchema, Refusal } from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";

export { Refusal };

/**
 * An ask that failed: no connection, timed out, refused, or the peer
 * answered with a failure. A handler throws one with a {@linkcode Refusal}
 * to refuse a request so that the asker can tell why without reading the
 * message; the asker's error carries the same code.
 */
export class RemotingError extends Error {
  override name = "RemotingError";

  constructor(message: string, readonly refusal: Refusal = Refusal.UNSPECIFIED) {
    super(message);
  }
}

/** The failure reply for a handler's error: its text, and its refusal code when it has one. */
export function failureOf(error: unknown): Failure {
  return create(FailureSchema, {
    message: errorText(error),
    refusal: error instanceof RemotingError ? error.refusal : Refusal.UNSPECIFIED,
  });
}

/** The asker's error for a failure reply, with the refusal code the handler gave. */
export function failureError(failure: Failure): RemotingError {
  return new RemotingError(failure.message, failure.refusal);
}

/** The listening port is taken, or the address cannot be bound. */
export class BindError extends Error {
  override name = "BindError";
}

/**
 * `promise`, or a {@linkcode RemotingError} saying `what` took too long once
 * `ms` have passed, whichever comes first. For one caller's deadline on work
 * that others may share.
 *
 * @example
 * ```ts
 * await within(new Promise(() => {}), 10, "waiting").catch((e) => e.message); // "waiting took longer than 10 ms"
 * ```
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RemotingError(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
