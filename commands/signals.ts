/**
 * SIGINT/SIGTERM handling for long-running commands: the first signal asks
 * for a graceful stop; another one more than a second later forces an exit.
 * Signals closer together are one request: Ctrl-C in a terminal reaches every
 * process of the group, and a supervising script may forward its own as well.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const log = getLogger(["usershard", "signals"]);

/** Listens for SIGINT/SIGTERM; returns a function that stops listening. */
export function onStopSignal(graceful: () => void, forced: () => void, debounceMs = 1000): () => void {
  let first: number | undefined;
  const listener = () => {
    const now = Date.now();
    if (first === undefined) {
      first = now;
      graceful();
    } else if (now - first >= debounceMs) {
      forced();
    } else {
      log.info(
        "another stop signal within {ms} ms of the first: still stopping gracefully (one more later exits at once)",
        {
          ms: debounceMs,
        },
      );
    }
  };
  Deno.addSignalListener("SIGINT", listener);
  Deno.addSignalListener("SIGTERM", listener);
  return () => {
    Deno.removeSignalListener("SIGINT", listener);
    Deno.removeSignalListener("SIGTERM", listener);
  };
}
