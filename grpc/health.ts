/**
 * The standard gRPC health service (`grpc.health.v1.Health`): SERVING once
 * the node is ready for queries, NOT_SERVING before; `Watch` streams changes.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponse_ServingStatus as Status,
  HealthCheckResponseSchema,
} from "../proto/gen/grpc/health/v1/health_pb.ts";
import { serviceDefinition } from "./definitions.ts";

const WATCH_POLL_MS = 500;

/** Adds the health service to `server`; `services` are the names it reports on ("" = the whole server). */
export function addHealthService(server: grpc.Server, services: readonly string[], serving: () => boolean): void {
  const known = new Set(["", ...services]);
  const status = (service: string) =>
    !known.has(service) ? Status.SERVICE_UNKNOWN : serving() ? Status.SERVING : Status.NOT_SERVING;
  server.addService(serviceDefinition(Health), {
    Check: (
      call: grpc.ServerUnaryCall<HealthCheckRequest, HealthCheckResponse>,
      callback: grpc.sendUnaryData<HealthCheckResponse>,
    ) => {
      const current = status(call.request.service);
      if (current === Status.SERVICE_UNKNOWN) {
        callback({ code: grpc.status.NOT_FOUND, details: `unknown service '${call.request.service}'` });
      } else {
        callback(null, create(HealthCheckResponseSchema, { status: current }));
      }
    },
    Watch: (call: grpc.ServerWritableStream<HealthCheckRequest, HealthCheckResponse>) => {
      let last: Status | undefined;
      const send = () => {
        const current = status(call.request.service);
        if (current !== last) call.write(create(HealthCheckResponseSchema, { status: current }));
        last = current;
      };
      send();
      const timer = setInterval(send, WATCH_POLL_MS);
      call.on("cancelled", () => clearInterval(timer));
      call.on("close", () => clearInterval(timer));
    },
  });
}
