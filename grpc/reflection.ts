/**
 * gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so generic
 * tools (grpcurl, Postman, evans) can list the services and call them without
 * the .proto files. Serves the descriptors compiled into the generated code.
 *
 * @module
 */
import { create, type DescFile, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import {
  ServerReflection,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from "../proto/gen/grpc/reflection/v1/reflection_pb.ts";
import { bidiStreaming, type Route } from "./server.ts";

// v1alpha is v1 under another name, with the same messages.
const V1ALPHA = "grpc.reflection.v1alpha.ServerReflection";

/** Every fully qualified symbol a file defines: messages (nested too), enums, services and methods. */
function symbolsOf(file: DescFile): string[] {
  const names: string[] = [];
  const messages = (list: DescFile["messages"]) => {
    for (const m of list) {
      names.push(m.typeName);
      for (const e of m.nestedEnums) names.push(e.typeName);
      messages(m.nestedMessages);
    }
  };
  messages(file.messages);
  for (const e of file.enums) names.push(e.typeName);
  for (const s of file.services) {
    names.push(s.typeName);
    for (const method of s.methods) names.push(`${s.typeName}.${method.name}`);
  }
  return names;
}

/**
 * The reflection routes (v1, and v1alpha: the same under another name) over
 * `files`.
 *
 * Written here rather than taken from `@grpc/reflection`, which plugs into
 * grpc-js's server and reads protobuf.js definitions only.
 */
export function reflectionRoutes(files: readonly DescFile[]): Route[] {
  const bySymbol = new Map<string, DescFile>();
  for (const file of files) for (const symbol of symbolsOf(file)) bySymbol.set(symbol, file);
  const byName = new Map(files.map((f) => [f.proto.name, f]));
  const services = [...files.flatMap((f) => f.services.map((s) => s.typeName)), V1ALPHA];

  const answer = (request: ServerReflectionRequest): ServerReflectionResponse => {
    const base = { validHost: request.host, originalRequest: request };
    const descriptors = (file: DescFile | undefined, what: string) =>
      file
        ? create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "fileDescriptorResponse",
            value: { fileDescriptorProto: [toBinary(FileDescriptorProtoSchema, file.proto)] },
          },
        })
        : create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: { case: "errorResponse", value: { errorCode: 5, errorMessage: `${what} not found` } },
        });
    const { messageRequest } = request;
    switch (messageRequest.case) {
      case "listServices":
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: { case: "listServicesResponse", value: { service: services.map((name) => ({ name })) } },
        });
      case "fileByFilename":
        return descriptors(byName.get(messageRequest.value), `file ${messageRequest.value}`);
      case "fileContainingSymbol":
        return descriptors(bySymbol.get(messageRequest.value), `symbol ${messageRequest.value}`);
      case "allExtensionNumbersOfType":
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "allExtensionNumbersResponse",
            value: { baseTypeName: messageRequest.value, extensionNumber: [] },
          },
        });
      default:
        // What is left is file_containing_extension, and these files define no extensions.
        return create(ServerReflectionResponseSchema, {
          ...base,
          messageResponse: {
            case: "errorResponse",
            value: { errorCode: 5, errorMessage: "no extensions are defined" },
          },
        });
    }
  };

  const method = ServerReflection.method.serverReflectionInfo;
  const answerAll = async function* (requests: AsyncIterable<ServerReflectionRequest>) {
    for await (const request of requests) yield answer(request);
  };
  return [bidiStreaming(method, answerAll), bidiStreaming(method, answerAll, `/${V1ALPHA}/${method.name}`)];
}
