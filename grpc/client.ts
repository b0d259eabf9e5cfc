/**
 * A gRPC client on this project's own HTTP/2 client, so that no client in the
 * project runs on `node:http2`, whose session aborts the process when an
 * idle connection receives GOAWAY (denoland/deno#36788). Connections to one
 * endpoint, made again when they end, so a client outlives restarts of the
 * server it talks to.
 *
 * @module
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type ClientTls, Http2Client } from "./http2/client.ts";
import { ErrorCode } from "./http2/frame.ts";
import type { HeaderField } from "./http2/hpack.ts";
import type { Http2Stream } from "./http2/stream.ts";
import { decodeStatusMessage, encodeMessage, formatTimeout, MAX_TIMER_MS, MessageReader } from "./protocol.ts";
import { GrpcError, Status } from "./status.ts";

/** The server answered, but not as a gRPC server does (an HTTP status, another content type). */
export class NotGrpcError extends GrpcError {
  override name = "NotGrpcError";
}

/** A client of one gRPC endpoint. */
export class GrpcClient {
  readonly #http2: Http2Client;

  /** `tls`: over TLS. */
  constructor(hostname: string, port: number, tls?: ClientTls) {
    this.#http2 = new Http2Client(hostname, port, undefined, tls);
  }

  /**
   * One unary call. Rejects with {@linkcode GrpcError} for a status other
   * than OK (DEADLINE_EXCEEDED after `timeoutMs`), with `DialError` when the
   * endpoint cannot be reached, with `StreamResetError` when the connection
   * broke first.
   */
  async unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    timeoutMs: number,
  ): Promise<MessageShape<O>> {
    const path = `/${method.parent.typeName}/${method.name}`;
    const [response] = await this.call(path, [toBinary(method.input, create(method.input, request))], timeoutMs);
    if (!response) throw new GrpcError(Status.UNIMPLEMENTED, "the server sent no response message");
    return fromBinary(method.output, response);
  }

  /**
   * Sends `requests` (serialized messages) on one call to `path`, ends its
   * side, and gives back every response message once the call ended OK.
   */
  async call(path: string, requests: readonly Uint8Array[], timeoutMs: number): Promise<Uint8Array[]> {
    const headers: HeaderField[] = [
      [":method", "POST"],
      [":scheme", "http"],
      [":path", path],
      [":authority", this.#http2.authority],
      ["content-type", "application/grpc"],
      ["te", "trailers"],
      ["grpc-timeout", formatTimeout(timeoutMs)],
    ];
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const expired = new Promise<never>((_, reject) => {
      if (timeoutMs > MAX_TIMER_MS) return;
      timer = setTimeout(() => {
        timedOut = true;
        reject(new GrpcError(Status.DEADLINE_EXCEEDED, `no answer within ${formatDuration(timeoutMs)}`));
      }, timeoutMs);
    });
    expired.catch(() => {});
    // The deadline counts from the call, connecting included: a server that takes no connections is no answer.
    const opening = this.#http2.open(headers);
    let stream: Http2Stream;
    try {
      stream = await Promise.race([opening, expired]);
    } catch (error) {
      clearTimeout(timer);
      if (timedOut) opening.then((late) => late.reset(ErrorCode.CANCEL), () => {});
      throw error;
    }
    expired.catch(() => stream.reset(ErrorCode.CANCEL));
    try {
      for (const [i, request] of requests.entries()) {
        stream.write(encodeMessage(request), i === requests.length - 1).catch(() => {});
      }
      if (requests.length === 0) stream.end().catch(() => {});
      return await Promise.race([answer(stream), expired]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection; calls in flight fail. */
  close(): void {
    this.#http2.close();
  }
}

async function answer(stream: Http2Stream): Promise<Uint8Array[]> {
  const headers = new Map(await stream.receivedHeaders());
  const status = headers.get(":status");
  if (status !== "200") throw new NotGrpcError(Status.UNKNOWN, `HTTP ${status}`);
  const contentType = headers.get("content-type") ?? "";
  if (!/^application\/grpc(?:$|[+;])/.test(contentType)) {
    throw new NotGrpcError(Status.UNKNOWN, `content type ${JSON.stringify(contentType)}, not application/grpc`);
  }
  const reader = new MessageReader();
  const messages: Uint8Array[] = [];
  for await (const chunk of stream.body()) {
    messages.push(...reader.push(chunk));
    // A client reads the answers of servers it chose: what it holds need not hold the connection's window.
    stream.release(chunk.length);
  }
  // A trailers-only answer has its status among the headers.
  const trailers = headers.has("grpc-status") ? headers : new Map(stream.trailers);
  const code = Number(trailers.get("grpc-status") ?? NaN);
  if (!Number.isInteger(code)) throw new GrpcError(Status.UNKNOWN, "the answer ended without a grpc-status");
  if (code !== Status.OK) throw new GrpcError(code, decodeStatusMessage(trailers.get("grpc-message") ?? ""));
  return messages;
}

/** A duration as people write it: "5 s", "1.5 s", "400 ms". */
function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${ms / 1000} s`;
}
