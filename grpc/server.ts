/**
 * A gRPC server on this project's own HTTP/2 server, which no client can take
 * down: routes by path, messages decoded and encoded with the generated
 * protobuf schemas, deadlines from `grpc-timeout`, and every outcome a real
 * gRPC status in trailers. A unary call is answered with one burst of
 * frames (headers, message, trailers), written at once.
 *
 * @module
 */
import {
  create,
  type DescMessage,
  type DescMethodBiDiStreaming,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { ErrorCode } from "./http2/frame.ts";
import type { HeaderField } from "./http2/hpack.ts";
import { Http2Server, type ServerTls } from "./http2/server.ts";
import type { Http2Stream } from "./http2/stream.ts";
import { encodeMessage, encodeStatusMessage, MAX_TIMER_MS, MessageReader, parseTimeout } from "./protocol.ts";
import { GrpcError, Status } from "./status.ts";

const log = getLogger(["usershard", "grpc"]);

/** A gRPC port that cannot be bound. */
export class GrpcBindError extends Error {
  override name = "GrpcBindError";
}

/** How long calls in flight may take to finish when the server stops. */
export const SHUTDOWN_GRACE_MS = 2_000;

/** What a server lets its clients make it hold, across all their connections. */
export interface GrpcServerLimits {
  /** Calls running at once; more are refused with RESOURCE_EXHAUSTED. */
  readonly maxCallsInFlight: number;
  /** The largest request message taken: every method here takes small ones, and each one held costs memory. */
  readonly maxRequestBytes: number;
  /**
   * A call of one request message must send it within this, however far off
   * its deadline is; the stream of one that does not is reset (CANCEL).
   */
  readonly requestTimeoutMs: number;
}

/** Limits for a query front end. */
export const DEFAULT_SERVER_LIMITS: GrpcServerLimits = {
  maxCallsInFlight: 4096,
  maxRequestBytes: 64 << 10,
  requestTimeoutMs: 10_000,
};

/** Connection errors logged per interval at most; a flood of bad clients must not flood the log. */
const LOGGED_ERRORS_PER_INTERVAL = 5;
const LOG_INTERVAL_MS = 10_000;

/** What a handler knows of its call. */
export interface CallContext {
  /** Aborts when the client cancels, its connection ends, or the deadline passes. */
  readonly signal: AbortSignal;
  /** Milliseconds left before the client's deadline; `undefined` when it set none. */
  timeoutMs(): number | undefined;
}

/** One method the server answers: its path, and how a call of it runs over raw messages. */
export interface Route {
  readonly path: string;
  /** Whether the call has exactly one request message (unary and server-streaming). */
  readonly singleRequest: boolean;
  /** Runs the call: request messages in, response messages out (as bytes). */
  run(requests: AsyncIterable<Uint8Array>, context: CallContext): AsyncIterable<Uint8Array>;
}

function decoder<D extends DescMessage>(schema: D): (bytes: Uint8Array) => MessageShape<D> {
  return (bytes) => {
    try {
      return fromBinary(schema, bytes);
    } catch (error) {
      throw new GrpcError(Status.INTERNAL, `the request is not a ${schema.typeName}: ${(error as Error).message}`);
    }
  };
}

/** A unary method. */
export function unary<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  impl: (request: MessageShape<I>, context: CallContext) => Promise<MessageInitShape<O>> | MessageInitShape<O>,
): Route {
  const decode = decoder(method.input);
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    singleRequest: true,
    async *run(requests, context) {
      for await (const request of requests) {
        yield toBinary(method.output, create(method.output, await impl(decode(request), context)));
      }
    },
  };
}

/** A server-streaming method. */
export function serverStreaming<I extends DescMessage, O extends DescMessage>(
  method: DescMethodServerStreaming<I, O>,
  impl: (request: MessageShape<I>, context: CallContext) => AsyncIterable<MessageInitShape<O>>,
): Route {
  const decode = decoder(method.input);
  return {
    path: `/${method.parent.typeName}/${method.name}`,
    singleRequest: true,
    async *run(requests, context) {
      for await (const request of requests) {
        for await (const response of impl(decode(request), context)) {
          yield toBinary(method.output, create(method.output, response));
        }
      }
    },
  };
}

/**
 * A bidirectional-streaming method; `path` overrides the one the descriptor
 * gives (v1alpha reflection is v1 under another name).
 */
export function bidiStreaming<I extends DescMessage, O extends DescMessage>(
  method: DescMethodBiDiStreaming<I, O>,
  impl: (requests: AsyncIterable<MessageShape<I>>, context: CallContext) => AsyncIterable<MessageInitShape<O>>,
  path = `/${method.parent.typeName}/${method.name}`,
): Route {
  const decode = decoder(method.input);
  return {
    path,
    singleRequest: false,
    async *run(requests, context) {
      const decoded = (async function* () {
        for await (const request of requests) yield decode(request);
      })();
      for await (const response of impl(decoded, context)) {
        yield toBinary(method.output, create(method.output, response));
      }
    },
  };
}

/** A running gRPC server. */
export class GrpcServer {
  readonly #http2: Http2Server;

  private constructor(http2: Http2Server) {
    this.#http2 = http2;
  }

  /**
   * Serves `routes` on `host:port`, over TLS with `tls` (mutual when it has
   * a client CA); rejects with {@linkcode GrpcBindError} when the port cannot be bound.
   */
  static async start(
    host: string,
    port: number,
    routes: readonly Route[],
    limits: GrpcServerLimits = DEFAULT_SERVER_LIMITS,
    tls?: ServerTls,
  ): Promise<GrpcServer> {
    const byPath = new Map(routes.map((route) => [route.path, route]));
    const errors = rateLimited(LOGGED_ERRORS_PER_INTERVAL, LOG_INTERVAL_MS);
    const refusals = rateLimited(LOGGED_ERRORS_PER_INTERVAL, LOG_INTERVAL_MS);
    const address = `${host}:${port}`;
    let inFlight = 0;
    const handler = (stream: Http2Stream) => {
      if (inFlight >= limits.maxCallsInFlight) {
        refusals((suppressed) =>
          log.warning("gRPC: {calls} calls in flight, refusing more{suppressed}", {
            calls: inFlight,
            suppressed: suppressed > 0 ? ` (${suppressed} more refused since the last such line)` : "",
          })
        );
        const message = `the server runs ${limits.maxCallsInFlight} calls at once; try again`;
        return stream.respond([...RESPONSE_HEADERS, ...trailers(Status.RESOURCE_EXHAUSTED, message)], true);
      }
      inFlight++;
      serveCall(stream, byPath, limits).finally(() => inFlight--);
    };
    try {
      return new GrpcServer(
        await Http2Server.listen({
          hostname: host,
          port,
          handler,
          tls,
          onConnectionError: (peer, end) =>
            errors((suppressed) =>
              log.info("gRPC connection from {peer} ended: {reason}{suppressed}", {
                peer,
                reason: end.reason,
                suppressed: suppressed > 0 ? ` (and ${suppressed} more since the last such line)` : "",
              })
            ),
          onTlsRefused: (peer, reason) =>
            errors(() =>
              log.info("gRPC connection from {peer} refused: TLS handshake failed: {reason}", { peer, reason })
            ),
          onAcceptError: (error) =>
            errors(() => log.warning("gRPC port {address}: accept failed, retrying: {error}", { address, error })),
        }),
      );
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) throw new GrpcBindError(`gRPC port ${address} is already in use`);
      throw new GrpcBindError(`cannot serve gRPC on ${address}: ${error instanceof Error ? error.message : error}`);
    }
  }

  /** The address it listens on. */
  get addr(): Deno.NetAddr {
    return this.#http2.addr;
  }

  /** Stops: no new calls; calls in flight get {@linkcode SHUTDOWN_GRACE_MS} to finish. */
  close(): Promise<void> {
    return this.#http2.close(SHUTDOWN_GRACE_MS);
  }
}

const RESPONSE_HEADERS: HeaderField[] = [[":status", "200"], ["content-type", "application/grpc"]];

function trailers(code: number, message?: string): HeaderField[] {
  const fields: HeaderField[] = [["grpc-status", String(code)]];
  if (message) fields.push(["grpc-message", encodeStatusMessage(message)]);
  return fields;
}

/** Answers one call. Never throws; always ends or resets the stream. */
async function serveCall(
  stream: Http2Stream,
  routes: ReadonlyMap<string, Route>,
  limits: GrpcServerLimits,
): Promise<void> {
  let deadlineTimer: ReturnType<typeof setTimeout> | undefined;
  let headersSent = false;
  const finish = (code: number, message?: string) => {
    if (headersSent) stream.end(trailers(code, message)).catch(() => {});
    else stream.respond([...RESPONSE_HEADERS, ...trailers(code, message)], true);
  };
  try {
    let path = "";
    let method = "";
    let contentType = "";
    let timeout: string | undefined;
    let encoding: string | undefined;
    for (const [name, value] of stream.headers) {
      if (name === ":path") path = value;
      else if (name === ":method") method = value;
      else if (name === "content-type") contentType = value;
      else if (name === "grpc-timeout") timeout = value;
      else if (name === "grpc-encoding") encoding = value;
    }
    if (method !== "POST") return stream.respond([[":status", "405"], ["allow", "POST"]], true);
    if (!/^application\/grpc(?:$|[+;])/.test(contentType)) {
      return stream.respond([[":status", "415"], ["accept", "application/grpc"]], true);
    }
    const route = routes.get(path);
    if (!route) return finish(Status.UNIMPLEMENTED, `no method ${path} on this server`);
    if (encoding !== undefined && encoding !== "identity") {
      return finish(Status.UNIMPLEMENTED, `grpc-encoding ${encoding} is not supported; send identity`);
    }
    const timeoutMs = timeout === undefined ? undefined : parseTimeout(timeout);
    if (timeout !== undefined && timeoutMs === undefined) {
      return finish(Status.INVALID_ARGUMENT, `grpc-timeout ${JSON.stringify(timeout)} is malformed`);
    }
    const abort = new AbortController();
    const cancel = () => abort.abort(stream.signal.reason);
    stream.signal.addEventListener("abort", cancel, { once: true });
    let expire!: (error: GrpcError) => void;
    const expired = new Promise<never>((_, reject) =>
      expire = (error) => {
        abort.abort(error);
        reject(error);
      }
    );
    expired.catch(() => {});
    const deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
    // A timer cannot wait longer than 2^31-1 ms (24 days); a deadline further off is as good as none.
    if (timeoutMs !== undefined && timeoutMs <= MAX_TIMER_MS) {
      deadlineTimer = setTimeout(
        () => expire(new GrpcError(Status.DEADLINE_EXCEEDED, `the deadline of ${timeoutMs} ms passed`)),
        timeoutMs,
      );
    }
    // A client that never finishes its one request must not hold a call for as long as its deadline lets it.
    if (route.singleRequest && (timeoutMs === undefined || timeoutMs > limits.requestTimeoutMs)) {
      stream.requestTimeoutMs = limits.requestTimeoutMs;
    }
    const context: CallContext = {
      signal: abort.signal,
      timeoutMs: () => deadline === undefined ? undefined : Math.max(0, deadline - performance.now()),
    };
    try {
      const received = requests(stream, route.singleRequest, limits.maxRequestBytes);
      const responses = route.run(received, context)[Symbol.asyncIterator]();
      while (true) {
        const next = await Promise.race([responses.next(), expired]);
        if (next.done) break;
        if (!headersSent) {
          stream.respond(RESPONSE_HEADERS);
          headersSent = true;
        }
        await Promise.race([stream.write(encodeMessage(next.value)), expired]);
      }
      finish(Status.OK);
    } finally {
      stream.signal.removeEventListener("abort", cancel);
    }
  } catch (error) {
    if (stream.failure) return;
    // Its answer waits for a window the client does not give: trailers would wait behind it, forever.
    if (error instanceof GrpcError && stream.outbox.length > 0) return stream.reset(ErrorCode.CANCEL);
    if (error instanceof GrpcError) return finish(error.code, error.message);
    log.error("gRPC {path}: {error}", { path: stream.headers.find(([n]) => n === ":path")?.[1], error });
    finish(Status.INTERNAL, "internal error");
  } finally {
    clearTimeout(deadlineTimer);
    if (!stream.localEnded || stream.failure) stream.reset(ErrorCode.INTERNAL_ERROR);
  }
}

/**
 * The request messages of a call; a single-request method gets exactly one,
 * or an error. What a whole message took of the connection's window is given
 * back as the message is complete, so a connection's window bounds what its
 * unfinished messages hold.
 */
async function* requests(
  stream: Http2Stream,
  single: boolean,
  maxBytes: number,
): AsyncGenerator<Uint8Array> {
  const reader = new MessageReader(maxBytes);
  let first: Uint8Array | undefined;
  for await (const chunk of stream.body()) {
    const pendingBefore = reader.pending;
    const messages = reader.push(chunk);
    stream.release(pendingBefore + chunk.length - reader.pending);
    for (const message of messages) {
      if (!single) yield message;
      else if (first) throw new GrpcError(Status.UNIMPLEMENTED, "more than one request message");
      else first = message;
    }
  }
  if (reader.pending > 0) throw new GrpcError(Status.INTERNAL, "the request ends inside a message");
  if (single) {
    if (!first) throw new GrpcError(Status.UNIMPLEMENTED, "no request message");
    yield first;
  }
}

/**
 * Runs `action` at most `max` times per `intervalMs`; the next run after a
 * quiet spell learns how many were skipped.
 */
function rateLimited(max: number, intervalMs: number): (action: (suppressed: number) => void) => void {
  let windowStart = 0;
  let count = 0;
  let suppressed = 0;
  return (action) => {
    const now = performance.now();
    if (now - windowStart > intervalMs) {
      windowStart = now;
      count = 0;
    }
    if (++count > max) {
      suppressed++;
      return;
    }
    const skipped = suppressed;
    suppressed = 0;
    action(skipped);
  };
}
