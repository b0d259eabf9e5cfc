/**
 * The standard gRPC health service (`grpc.health.v1.Health`): SERVING once
 * the node is ready for queries, NOT_SERVING before; `Watch` streams changes.
 *
 * Written here rather than taken from the grpc-node team's
 * `grpc-health-check`, which plugs into grpc-js's server only.
 *
 * @module
 */
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../proto/gen/grpc/health/v1/health_pb.ts";
import { sleep } from "../cluster/sleep.ts";
import { type Route, serverStreaming, unary } from "./server.ts";
import { GrpcError, Status } from "./status.ts";

/** How often `Watch` looks at whether the node serves. */
const WATCH_POLL_MS = 500;

/** The health service's routes; `services` are the names it reports on ("" = the whole server). */
export function healthRoutes(services: readonly string[], serving: () => boolean): Route[] {
  const known = new Set(["", ...services]);
  const status = (service: string) =>
    !known.has(service) ? ServingStatus.SERVICE_UNKNOWN : serving() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  return [
    unary(Health.method.check, (request) => {
      const current = status(request.service);
      if (current === ServingStatus.SERVICE_UNKNOWN) {
        throw new GrpcError(Status.NOT_FOUND, `unknown service '${request.service}'`);
      }
      return { status: current };
    }),
    serverStreaming(Health.method.watch, async function* (request, context) {
      let last: ServingStatus | undefined;
      while (!context.signal.aborted) {
        const current = status(request.service);
        if (current !== last) yield { status: current };
        last = current;
        await sleep(WATCH_POLL_MS, context.signal);
      }
    }),
  ];
}
