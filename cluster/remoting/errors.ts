/**
 * How remoting fails, and the one deadline helper the project shares.
 *
 * @module
 */

/** An ask that failed: no connection, timed out, refused, or the peer answered with a failure. */
export class RemotingError extends Error {
  override name = "RemotingError";
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
