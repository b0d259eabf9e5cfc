/**
 * grpc-js service definitions made from the generated protobuf descriptors,
 * so method paths and message codecs come from the .proto files, not from
 * hand-written strings.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { ServiceDefinition } from "@grpc/grpc-js";
import { type DescMessage, type DescService, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";

function codec<D extends DescMessage>(schema: D) {
  return {
    serialize: (message: MessageShape<D>) => Buffer.from(toBinary(schema, message)),
    deserialize: (bytes: Buffer) =>
      fromBinary(schema, new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)),
  };
}

/**
 * The grpc-js definition of every method of `service`. `typeName` overrides
 * the service's full name in the paths (v1alpha reflection is v1 renamed).
 *
 * @example
 * ```ts
 * import { UserService } from "../proto/gen/users_pb.ts";
 * serviceDefinition(UserService).UserStats.path; // "/UserService/UserStats"
 * ```
 */
export function serviceDefinition(service: DescService, typeName: string = service.typeName): ServiceDefinition {
  return Object.fromEntries(service.methods.map((method) => {
    const request = codec(method.input);
    const response = codec(method.output);
    return [method.name, {
      path: `/${typeName}/${method.name}`,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: request.serialize,
      requestDeserialize: request.deserialize,
      responseSerialize: response.serialize,
      responseDeserialize: response.deserialize,
    }];
  }));
}
