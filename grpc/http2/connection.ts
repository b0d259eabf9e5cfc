/**
 * One HTTP/2 connection (RFC 9113), either side, as a state machine apart
 * from I/O: bytes go in through `receive`, bytes to write come out of
 * `takeOutput`, time comes in through `tick`. Every piece of the connection's
 * state (streams, windows, settings, the HPACK table) lives here and changes
 * only in these calls, as in Go's HTTP/2 server, whose serve loop owns it
 * all.
 *
 * Whatever the peer sends, `receive` does not throw: a frame that breaks the
 * protocol ends its stream (RST_STREAM) or the connection (GOAWAY, then
 * `closed`), never the process. What the application does with a stream
 * cannot break the connection either.
 *
 * @module
 */
import {
  concatBytes,
  decodeSettings,
  DEFAULT_MAX_FRAME_SIZE,
  encodeFrame,
  encodeGoAway,
  encodePing,
  encodeRstStream,
  encodeSettings,
  encodeWindowUpdate,
  ErrorCode,
  errorName,
  Flag,
  type Frame,
  FrameDecoder,
  FrameSizeError,
  FrameType,
  MAX_WINDOW,
  PREFACE,
  Setting,
  uint32,
} from "./frame.ts";
import { encodeHeaders, type HeaderField, HpackDecoder, HpackError } from "./hpack.ts";
import { Http2Stream, type Outgoing, StreamResetError } from "./stream.ts";

/** Limits of one connection; every one bounds what a peer can make this side hold or do. */
export interface ConnectionLimits {
  /** Streams the peer may have open at once (announced as SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams: number;
  /** Each stream's receive window (announced as SETTINGS_INITIAL_WINDOW_SIZE). */
  readonly streamWindow: number;
  /** The connection's receive window, across streams. */
  readonly connectionWindow: number;
  /** The longest header list kept (announced as SETTINGS_MAX_HEADER_LIST_SIZE; RFC 7541 sizes). */
  readonly maxHeaderListSize: number;
  /** The most bytes one header block may take on the wire, HEADERS and CONTINUATION together. */
  readonly maxHeaderBlockBytes: number;
  /** No byte from the peer for this long: a PING asks whether it is still there. */
  readonly keepaliveMs: number;
  /** A PING unanswered this long ends the connection: the peer is gone (a half-open connection). */
  readonly keepaliveTimeoutMs: number;
  /** A server waits this long for the client's preface and first SETTINGS. */
  readonly handshakeTimeoutMs: number;
  /**
   * Streams refused because the peer kept too many busy (resets included)
   * before the connection is ended; each stream that finishes normally
   * forgives one.
   */
  readonly maxRefusedStreams: number;
  /** Bytes produced for a peer that does not read them, before the connection is dropped. */
  readonly maxUnwrittenBytes: number;
}

/** Limits that suit a gRPC front end. */
export const DEFAULT_LIMITS: ConnectionLimits = {
  // A client's calls beyond this wait in its own queue, and grpc-js drops that queue as UNAVAILABLE when it closes
  // the channel; memory stays bounded by the connection window, whatever the count.
  maxConcurrentStreams: 1000,
  streamWindow: 65_535,
  connectionWindow: 1 << 20,
  maxHeaderListSize: 16 << 10,
  maxHeaderBlockBytes: 64 << 10,
  keepaliveMs: 60_000,
  keepaliveTimeoutMs: 20_000,
  handshakeTimeoutMs: 10_000,
  maxRefusedStreams: 1000,
  maxUnwrittenBytes: 8 << 20,
};

/** Frames one header block may take: a peer's empty CONTINUATION frames cost work, not bytes. */
const MAX_HEADER_BLOCK_FRAMES = 64;

/** What every frame costs on the wire before its payload. */
const FRAME_HEADER_BYTES = 9;

/** How a connection ended. */
export interface ConnectionEnd {
  /** The error code sent or received in GOAWAY; NO_ERROR for an orderly end. */
  readonly code: number;
  /** What happened, for a log line. */
  readonly reason: string;
  /** Whether the peer ended it (its GOAWAY, or its socket closed) rather than this side. */
  readonly byPeer: boolean;
  /** Whether the peer had spoken HTTP/2 (its SETTINGS arrived) before the end. */
  readonly handshaken: boolean;
}

/** What a connection tells its I/O loop and its application. */
export interface ConnectionHooks {
  /** There are bytes to write: call `takeOutput`. */
  writable(): void;
  /** A server's peer opened a stream; its request headers are in `stream.headers`. */
  stream?(stream: Http2Stream): void;
  /** The connection is over: write what `takeOutput` still gives, then close the socket. Called once. */
  closed(end: ConnectionEnd): void;
}

/** A client could not open a stream on this connection (it is going away, or at the peer's stream limit). */
export class StreamRefusedError extends Error {
  override name = "StreamRefusedError";
}

const HTTP1_REPLY = [
  "HTTP/1.1 505 HTTP Version Not Supported",
  "content-type: text/plain; charset=utf-8",
  "connection: close",
  "",
  "This port serves gRPC, which needs HTTP/2; use a gRPC client (grpcurl -plaintext, usershard query).\n",
].join("\r\n");

// RFC 9113 §8.2.2: fields that belong to one HTTP/1 connection, not to a request.
const CONNECTION_SPECIFIC = new Set(["connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade"]);
const REQUEST_PSEUDO = new Set([":method", ":scheme", ":path", ":authority"]);

/** A violation that ends the connection. */
class ConnectionError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

/** A violation that ends one stream. */
class StreamError extends Error {
  constructor(readonly streamId: number, readonly code: number, message: string) {
    super(message);
  }
}

/** One HTTP/2 connection; see the module documentation. */
export class Http2Connection {
  readonly #role: "server" | "client";
  readonly #hooks: ConnectionHooks;
  readonly #limits: ConnectionLimits;
  readonly #decoder = new FrameDecoder(DEFAULT_MAX_FRAME_SIZE);
  readonly #hpack: HpackDecoder;
  readonly #streams = new Map<number, Http2Stream>();
  /** Streams the peer opened that the application has not finished with (reset ones included). */
  readonly #busy = new Set<Http2Stream>();
  readonly #sendable = new Set<Http2Stream>();
  #output: Uint8Array[] = [];
  #outputBytes = 0;

  #prefaceSeen: boolean;
  #settingsSeen = false;
  #continuation:
    | { streamId: number; end: boolean; fragments: Uint8Array[]; wireBytes: number; frames: number }
    | undefined;
  /** A stream error found in a HEADERS frame, raised once its block is decoded (the HPACK table needs it). */
  #pendingError: StreamError | undefined;
  #lastPeerStream = 0;
  #nextLocalStream = 1;
  #refused = 0;

  // What the peer announced.
  #peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  #peerInitialWindow = 65_535;
  #peerMaxStreams = Infinity;

  #sendWindow = 65_535;
  #receiveWindow: number;
  #pendingConnectionCredit = 0;

  #goingAway = false;
  #peerLastStream: number | undefined;
  #ended: ConnectionEnd | undefined;
  #startedAt = 0;
  #lastHeardAt = 0;
  #pingSentAt: number | undefined;

  constructor(role: "server" | "client", hooks: ConnectionHooks, limits: ConnectionLimits = DEFAULT_LIMITS) {
    this.#role = role;
    this.#hooks = hooks;
    this.#limits = limits;
    this.#hpack = new HpackDecoder(4096, limits.maxHeaderListSize);
    this.#prefaceSeen = role === "client";
    this.#receiveWindow = 65_535;
  }

  /**
   * Starts the connection: a client sends its preface at once; a server
   * sends its own once the client's has arrived, so that an HTTP/1 client
   * gets a plain HTTP/1 answer and nothing else.
   */
  start(now: number): void {
    this.#startedAt = now;
    this.#lastHeardAt = now;
    if (this.#role === "client") {
      this.#emit(PREFACE);
      this.#sendPreface();
    }
  }

  /** SETTINGS, and the connection's receive window raised to its limit. */
  #sendPreface(): void {
    const settings = new Map<number, number>([
      [Setting.MAX_CONCURRENT_STREAMS, this.#limits.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#limits.streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.#limits.maxHeaderListSize],
    ]);
    if (this.#role === "client") settings.set(Setting.ENABLE_PUSH, 0);
    this.#emit(encodeSettings(settings));
    const raise = this.#limits.connectionWindow - this.#receiveWindow;
    if (raise > 0) {
      this.#emit(encodeWindowUpdate(0, raise));
      this.#receiveWindow += raise;
    }
  }

  /** Whether the connection has ended. */
  get ended(): boolean {
    return this.#ended !== undefined;
  }

  /** Streams open now. */
  get openStreams(): number {
    return this.#streams.size;
  }

  /** Whether a client may open another stream here. */
  get canOpenStream(): boolean {
    return !this.#ended && !this.#goingAway && this.#peerLastStream === undefined &&
      this.#streams.size < this.#peerMaxStreams && this.#nextLocalStream <= MAX_WINDOW;
  }

  /** Bytes produced and not taken yet. */
  get pendingOutput(): number {
    return this.#outputBytes;
  }

  /** Everything to write now, as one buffer; `undefined` when there is nothing. */
  takeOutput(): Uint8Array | undefined {
    if (this.#outputBytes === 0) return undefined;
    const chunks = this.#output;
    const bytes = chunks.length === 1 ? chunks[0] : concatBytes(chunks, this.#outputBytes);
    this.#output = [];
    this.#outputBytes = 0;
    return bytes;
  }

  /** Bytes from the peer. Never throws. */
  receive(bytes: Uint8Array, now: number): void {
    if (this.#ended) return;
    this.#lastHeardAt = now;
    this.#pingSentAt = undefined;
    try {
      this.#decoder.push(bytes);
      if (!this.#prefaceSeen && !this.#readPreface()) return;
      while (!this.#ended) {
        const frame = this.#decoder.next();
        if (!frame) break;
        this.#frame(frame);
      }
    } catch (error) {
      if (error instanceof ConnectionError) {
        this.#fail(error.code, error.message);
      } else if (error instanceof FrameSizeError) {
        this.#fail(ErrorCode.FRAME_SIZE_ERROR, error.message);
      } else if (error instanceof HpackError) {
        this.#fail(ErrorCode.COMPRESSION_ERROR, `header block: ${error.message}`);
      } else {
        this.#fail(ErrorCode.INTERNAL_ERROR, `internal error: ${error instanceof Error ? error.message : error}`);
      }
    }
  }

  /** The socket ended or failed: every stream fails, and the connection is over. */
  socketClosed(reason: string): void {
    this.#end({ code: ErrorCode.NO_ERROR, reason, byPeer: true });
  }

  /** Time passes: keepalive pings, the handshake's deadline, and requests their application timed. */
  tick(now: number): void {
    if (this.#ended) return;
    for (const stream of this.#streams.values()) {
      const timeout = stream.requestTimeoutMs;
      if (timeout !== undefined && !stream.remoteEnded && now - stream.openedAt > timeout) {
        this.#resetStream(stream, ErrorCode.CANCEL, `did not finish its request within ${timeout} ms`);
      }
    }
    if (!this.#settingsSeen && now - this.#startedAt > this.#limits.handshakeTimeoutMs) {
      this.#fail(ErrorCode.SETTINGS_TIMEOUT, `no HTTP/2 preface within ${this.#limits.handshakeTimeoutMs} ms`);
      return;
    }
    if (this.#pingSentAt !== undefined) {
      if (now - this.#pingSentAt > this.#limits.keepaliveTimeoutMs) {
        this.#end({
          code: ErrorCode.NO_ERROR,
          reason: `the peer did not answer a PING within ${this.#limits.keepaliveTimeoutMs} ms`,
          byPeer: false,
        });
      }
    } else if (now - this.#lastHeardAt > this.#limits.keepaliveMs) {
      this.#pingSentAt = now;
      this.#emit(encodePing(new Uint8Array(8), false));
    }
  }

  /**
   * Ends the connection in order: GOAWAY naming the last stream the peer
   * opened, which still finishes; no new streams; `closed` once none is left.
   */
  goAway(reason: string): void {
    if (this.#ended || this.#goingAway) return;
    this.#goingAway = true;
    this.#emit(encodeGoAway(this.#lastPeerStream, ErrorCode.NO_ERROR, reason));
    this.#closeIfIdle(reason, false);
  }

  /** Ends the connection at once with GOAWAY `code`; every stream fails. */
  abort(code: number, reason: string): void {
    this.#fail(code, reason);
  }

  /**
   * A client opens a stream by sending its request headers. Throws
   * {@linkcode StreamResetError} when the connection has ended (with how it
   * ended), {@linkcode StreamRefusedError} when it may not open one now.
   */
  openStream(headers: readonly HeaderField[], end: boolean): Http2Stream {
    if (this.#ended) {
      throw new StreamResetError(ErrorCode.CANCEL, `the connection ended: ${this.#ended.reason}`, this.#ended);
    }
    if (!this.canOpenStream) throw new StreamRefusedError("the connection is going away or at the peer's stream limit");
    const stream = this.#newStream(this.#nextLocalStream);
    this.#nextLocalStream += 2;
    this.#sendHeaders(stream, headers, end);
    return stream;
  }

  // The stream's side of things (StreamOwner).

  #owner = {
    sendHeaders: (stream: Http2Stream, headers: readonly HeaderField[], end: boolean) =>
      this.#sendHeaders(stream, headers, end),
    sendData: (stream: Http2Stream, data: Uint8Array, end: boolean) => this.#sendData(stream, data, end),
    reset: (stream: Http2Stream, code: number) => this.#resetStream(stream, code, "reset by this side"),
    consumed: (stream: Http2Stream, bytes: number) => this.#consumed(stream, bytes),
    released: (stream: Http2Stream, bytes: number) => this.#released(stream, bytes),
  };

  #newStream(id: number): Http2Stream {
    const stream = new Http2Stream(id, this.#owner, this.#limits.streamWindow, this.#peerInitialWindow);
    this.#streams.set(id, stream);
    return stream;
  }

  #sendHeaders(stream: Http2Stream, headers: readonly HeaderField[], end: boolean): void {
    if (stream.failure || !this.#streams.has(stream.id)) this.#busy.delete(stream);
    if (stream.localEnded || this.#ended) return;
    if (end) stream.localEnded = true;
    stream.outbox.push({ kind: "headers", headers, end });
    this.#sendable.add(stream);
    this.#flushStreams();
  }

  #sendData(stream: Http2Stream, data: Uint8Array, end: boolean): Promise<void> {
    if (stream.failure || !this.#streams.has(stream.id)) this.#busy.delete(stream);
    if (stream.failure) return Promise.reject(stream.failure);
    if (stream.localEnded || this.#ended) {
      return Promise.reject(new StreamResetError(ErrorCode.STREAM_CLOSED, "the stream's sending side has ended"));
    }
    if (end) stream.localEnded = true;
    return new Promise((sent, failed) => {
      stream.outbox.push({ kind: "data", data, end, sent, failed });
      this.#sendable.add(stream);
      this.#flushStreams();
    });
  }

  #resetStream(stream: Http2Stream, code: number, reason: string): void {
    this.#busy.delete(stream);
    if (!this.#streams.has(stream.id)) return;
    if (!this.#ended) this.#emit(encodeRstStream(stream.id, code));
    this.#forget(stream, new StreamResetError(code, `stream ${stream.id} ${reason} (${errorName(code)})`));
  }

  /** The application read `bytes` of the stream's data: the peer may send that much more on the stream. */
  #consumed(stream: Http2Stream, bytes: number): void {
    if (this.#ended || stream.remoteEnded || !this.#streams.has(stream.id)) return;
    stream.pendingCredit += bytes;
    if (stream.pendingCredit >= this.#limits.streamWindow / 2) {
      this.#emit(encodeWindowUpdate(stream.id, stream.pendingCredit));
      stream.receiveWindow += stream.pendingCredit;
      stream.pendingCredit = 0;
    }
  }

  /** The application no longer holds `bytes` of the stream's data: the peer may send that much more in all. */
  #released(stream: Http2Stream, bytes: number): void {
    const released = Math.min(bytes, stream.unreleased);
    stream.unreleased -= released;
    this.#creditConnection(released);
  }

  #creditConnection(bytes: number): void {
    if (this.#ended || bytes <= 0) return;
    this.#pendingConnectionCredit += bytes;
    if (this.#pendingConnectionCredit >= this.#limits.connectionWindow / 2) {
      this.#emit(encodeWindowUpdate(0, this.#pendingConnectionCredit));
      this.#receiveWindow += this.#pendingConnectionCredit;
      this.#pendingConnectionCredit = 0;
    }
  }

  /** Moves queued frames of every stream out, as far as the windows allow. */
  #flushStreams(): void {
    for (const stream of this.#sendable) {
      this.#flushStream(stream);
      if (stream.outbox.length === 0) this.#sendable.delete(stream);
    }
  }

  #flushStream(stream: Http2Stream): void {
    while (stream.outbox.length > 0) {
      const item: Outgoing = stream.outbox[0];
      if (item.kind === "headers") {
        stream.outbox.shift();
        this.#emitHeaders(stream.id, item.headers, item.end);
        if (item.end) this.#localEnd(stream);
        continue;
      }
      // A window can be negative: SETTINGS may shrink it below what was already sent (RFC 9113 §6.9.2).
      const allowed = Math.max(0, Math.min(item.data.length, stream.sendWindow, this.#sendWindow));
      if (allowed === 0 && item.data.length > 0) return;
      for (let at = 0; at < allowed; at += this.#peerMaxFrame) {
        const piece = item.data.subarray(at, Math.min(allowed, at + this.#peerMaxFrame));
        const last = at + piece.length === item.data.length;
        this.#emit(encodeFrame(FrameType.DATA, last && item.end ? Flag.END_STREAM : 0, stream.id, piece));
      }
      stream.sendWindow -= allowed;
      this.#sendWindow -= allowed;
      if (allowed < item.data.length) {
        item.data = item.data.subarray(allowed);
        return;
      }
      if (item.data.length === 0) this.#emit(encodeFrame(FrameType.DATA, item.end ? Flag.END_STREAM : 0, stream.id));
      stream.outbox.shift();
      item.sent();
      if (item.end) this.#localEnd(stream);
    }
  }

  #emitHeaders(streamId: number, headers: readonly HeaderField[], end: boolean): void {
    const block = encodeHeaders(headers);
    const endFlag = end ? Flag.END_STREAM : 0;
    if (block.length <= this.#peerMaxFrame) {
      this.#emit(encodeFrame(FrameType.HEADERS, endFlag | Flag.END_HEADERS, streamId, block));
      return;
    }
    for (let at = 0; at < block.length; at += this.#peerMaxFrame) {
      const last = at + this.#peerMaxFrame >= block.length;
      const type = at === 0 ? FrameType.HEADERS : FrameType.CONTINUATION;
      const flags = (at === 0 ? endFlag : 0) | (last ? Flag.END_HEADERS : 0);
      this.#emit(encodeFrame(type, flags, streamId, block.subarray(at, at + this.#peerMaxFrame)));
    }
  }

  /** This side sent END_STREAM on `stream`. */
  #localEnd(stream: Http2Stream): void {
    if (this.#busy.delete(stream) && this.#refused > 0) this.#refused--;
    if (stream.remoteEnded) {
      this.#forget(stream);
    } else if (this.#role === "server") {
      // RFC 9113 §8.1: the response is complete; the client need not send the rest of its request.
      this.#emit(encodeRstStream(stream.id, ErrorCode.NO_ERROR));
      this.#forget(stream);
    }
  }

  /**
   * The stream is closed. What its application will never read, and on a
   * server everything of a finished call, no longer holds the connection's
   * window; a request the server stopped reading early ends for its reader.
   */
  #forget(stream: Http2Stream, failure?: StreamResetError): void {
    if (!this.#streams.delete(stream.id)) return;
    this.#sendable.delete(stream);
    if (failure) stream.fail(failure);
    if (failure || this.#role === "server") {
      stream.discardUnread();
      if (!stream.remoteEnded) stream.receiveEnd();
      this.#released(stream, stream.unreleased);
    }
    this.#closeIfIdle("every stream finished after GOAWAY", this.#peerLastStream !== undefined);
  }

  #closeIfIdle(reason: string, byPeer: boolean): void {
    const leaving = this.#goingAway || this.#peerLastStream !== undefined;
    if (leaving && this.#streams.size === 0 && !this.#ended) this.#end({ code: ErrorCode.NO_ERROR, reason, byPeer });
  }

  // What arrives.

  #readPreface(): boolean {
    const start = this.#decoder.peek(PREFACE.length);
    for (let i = 0; i < start.length; i++) {
      if (start[i] !== PREFACE[i]) {
        const text = new TextDecoder().decode(start);
        if (/^[A-Z]{3,7} [^ ]/.test(text)) {
          this.#emit(new TextEncoder().encode(HTTP1_REPLY));
          this.#end({
            code: ErrorCode.HTTP_1_1_REQUIRED,
            reason: "an HTTP/1 request on an HTTP/2 port",
            byPeer: false,
          });
        } else {
          this.#fail(ErrorCode.PROTOCOL_ERROR, "the client did not send the HTTP/2 preface");
        }
        return false;
      }
    }
    if (!this.#decoder.take(PREFACE.length)) return false;
    this.#prefaceSeen = true;
    this.#sendPreface();
    return true;
  }

  #frame(frame: Frame): void {
    if (!this.#settingsSeen && (frame.type !== FrameType.SETTINGS || frame.flags & Flag.ACK)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "the first frame of a connection must be SETTINGS");
    }
    if (this.#continuation && frame.type !== FrameType.CONTINUATION) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a header block interrupted by another frame");
    }
    try {
      switch (frame.type) {
        case FrameType.DATA:
          return this.#data(frame);
        case FrameType.HEADERS:
          return this.#headers(frame);
        case FrameType.PRIORITY:
          return this.#priority(frame);
        case FrameType.RST_STREAM:
          return this.#rstStream(frame);
        case FrameType.SETTINGS:
          return this.#settings(frame);
        case FrameType.PUSH_PROMISE:
          throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE, but push is not enabled");
        case FrameType.PING:
          return this.#ping(frame);
        case FrameType.GOAWAY:
          return this.#goAwayReceived(frame);
        case FrameType.WINDOW_UPDATE:
          return this.#windowUpdate(frame);
        case FrameType.CONTINUATION:
          return this.#continuationFrame(frame);
        default:
          // RFC 9113 §5.5: unknown frame types are ignored.
          return;
      }
    } catch (error) {
      if (!(error instanceof StreamError)) throw error;
      const stream = this.#streams.get(error.streamId);
      if (stream) {
        this.#resetStream(stream, error.code, error.message);
      } else {
        this.#emit(encodeRstStream(error.streamId, error.code));
      }
    }
  }

  /** Whether `id` names a stream the peer could have opened (its parity) that it has not opened yet. */
  #idle(id: number): boolean {
    const peerOpens = this.#role === "server" ? id % 2 === 1 : id % 2 === 0;
    return peerOpens ? id > this.#lastPeerStream : id >= this.#nextLocalStream;
  }

  /** The payload without padding (RFC 9113 §6.1, §6.2). */
  #unpadded(frame: Frame, prefixBytes = 0): Uint8Array {
    let payload = frame.payload;
    if (frame.flags & Flag.PADDED) {
      if (payload.length < 1) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a padded frame without length");
      const padding = payload[0];
      if (padding + prefixBytes >= payload.length) {
        throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "padding as long as the frame");
      }
      payload = payload.subarray(1, payload.length - padding);
    }
    return payload;
  }

  #data(frame: Frame): void {
    if (frame.streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (this.#idle(frame.streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `DATA on stream ${frame.streamId}, which is not open`);
    }
    const length = frame.payload.length;
    this.#receiveWindow -= length;
    if (this.#receiveWindow < 0) {
      throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection's window");
    }
    const data = this.#unpadded(frame);
    const stream = this.#streams.get(frame.streamId);
    if (!stream || stream.remoteEnded) {
      this.#creditConnection(length);
      throw new StreamError(frame.streamId, ErrorCode.STREAM_CLOSED, "DATA on a closed stream");
    }
    stream.receiveWindow -= length;
    if (stream.receiveWindow < 0) {
      this.#creditConnection(length);
      throw new StreamError(frame.streamId, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream's window");
    }
    if (stream.headers.length === 0) {
      this.#creditConnection(length);
      throw new StreamError(frame.streamId, ErrorCode.PROTOCOL_ERROR, "DATA before the response's headers");
    }
    // Padding counts against the windows but is never read: credit it back at once.
    if (length > data.length) {
      this.#consumed(stream, length - data.length);
      this.#creditConnection(length - data.length);
    }
    stream.receiveData(data);
    if (frame.flags & Flag.END_STREAM) this.#remoteEnd(stream);
  }

  #remoteEnd(stream: Http2Stream): void {
    stream.receiveEnd();
    if (stream.localEnded) this.#forget(stream);
  }

  #headers(frame: Frame): void {
    if (frame.streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let fragment = this.#unpadded(frame, frame.flags & Flag.PRIORITY ? 5 : 0);
    if (frame.flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "HEADERS too short");
      if ((uint32(fragment) & 0x7fff_ffff) === frame.streamId) {
        this.#pendingError = new StreamError(frame.streamId, ErrorCode.PROTOCOL_ERROR, "a stream depends on itself");
      }
      fragment = fragment.subarray(5);
    }
    this.#continuation = {
      streamId: frame.streamId,
      end: (frame.flags & Flag.END_STREAM) !== 0,
      fragments: [fragment],
      wireBytes: FRAME_HEADER_BYTES + frame.payload.length,
      frames: 1,
    };
    if (this.#continuation.wireBytes > this.#limits.maxHeaderBlockBytes) this.#blockTooLong();
    if (frame.flags & Flag.END_HEADERS) this.#headerBlockDone();
  }

  #continuationFrame(frame: Frame): void {
    const block = this.#continuation;
    if (!block || frame.streamId !== block.streamId) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without a header block to continue");
    }
    if (frame.payload.length > 0) block.fragments.push(frame.payload);
    block.wireBytes += FRAME_HEADER_BYTES + frame.payload.length;
    block.frames++;
    if (block.wireBytes > this.#limits.maxHeaderBlockBytes) this.#blockTooLong();
    if (block.frames > MAX_HEADER_BLOCK_FRAMES) {
      throw new ConnectionError(
        ErrorCode.ENHANCE_YOUR_CALM,
        `a header block in over ${MAX_HEADER_BLOCK_FRAMES} frames`,
      );
    }
    if (frame.flags & Flag.END_HEADERS) this.#headerBlockDone();
  }

  #blockTooLong(): never {
    throw new ConnectionError(
      ErrorCode.ENHANCE_YOUR_CALM,
      `a header block longer than ${this.#limits.maxHeaderBlockBytes} bytes on the wire`,
    );
  }

  #headerBlockDone(): void {
    const block = this.#continuation!;
    this.#continuation = undefined;
    const bytes = block.fragments.length === 1 ? block.fragments[0] : concatBytes(block.fragments);
    // Decoded whatever becomes of the stream: the HPACK table must stay in step with the peer's.
    const { headers, tooLarge } = this.#hpack.decode(bytes);
    const pending = this.#pendingError;
    this.#pendingError = undefined;
    const id = block.streamId;
    const existing = this.#streams.get(id);
    if (existing) {
      if (pending) throw pending;
      return this.#moreHeaders(existing, headers, block.end, tooLarge);
    }
    if (!this.#idle(id)) {
      // A stream that is closed now; the peer may have sent this before it learnt so (RFC 9113 §5.1).
      throw new StreamError(id, ErrorCode.STREAM_CLOSED, `HEADERS on stream ${id}, which is closed`);
    }
    if (this.#role === "client") {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `HEADERS opening stream ${id}, but servers open none`);
    }
    if (id % 2 === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `a client opened even stream ${id}`);
    this.#lastPeerStream = id;
    if (pending) throw pending;
    if (this.#goingAway) throw new StreamError(id, ErrorCode.REFUSED_STREAM, "the connection is going away");
    if (this.#busy.size >= this.#limits.maxConcurrentStreams) {
      if (++this.#refused > this.#limits.maxRefusedStreams) {
        throw new ConnectionError(ErrorCode.ENHANCE_YOUR_CALM, `${this.#refused} streams over the limit`);
      }
      throw new StreamError(id, ErrorCode.REFUSED_STREAM, "too many streams at once");
    }
    if (tooLarge) {
      const stream = this.#newStream(id);
      this.#sendHeaders(stream, [[":status", "431"]], true);
      if (block.end) this.#remoteEnd(stream);
      return;
    }
    const problem = requestProblem(headers);
    if (problem) throw new StreamError(id, ErrorCode.PROTOCOL_ERROR, `a malformed request: ${problem}`);
    const stream = this.#newStream(id);
    stream.openedAt = this.#lastHeardAt;
    this.#busy.add(stream);
    stream.receiveHeaders(headers, false);
    try {
      this.#hooks.stream?.(stream);
    } catch (error) {
      this.#resetStream(stream, ErrorCode.INTERNAL_ERROR, `failed: ${error instanceof Error ? error.message : error}`);
      return;
    }
    if (block.end) this.#remoteEnd(stream);
  }

  /** A second header block on an open stream: a response (client), or trailers. */
  #moreHeaders(stream: Http2Stream, headers: HeaderField[], end: boolean, tooLarge: boolean): void {
    if (stream.remoteEnded) {
      throw new StreamError(stream.id, ErrorCode.STREAM_CLOSED, "HEADERS after the peer ended the stream");
    }
    if (tooLarge) throw new StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "a header list over the limit");
    const first = stream.headers.length === 0;
    if (first && this.#role === "client") {
      const status = headers.find(([name]) => name === ":status")?.[1];
      if (!status || !/^\d{3}$/.test(status)) {
        throw new StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "a response without :status");
      }
      // Informational responses (1xx) come before the real one; gRPC has no use for them.
      if (status.startsWith("1")) return;
    } else if (!end) {
      throw new StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM");
    } else if (headers.some(([name]) => name.startsWith(":"))) {
      throw new StreamError(stream.id, ErrorCode.PROTOCOL_ERROR, "a pseudo-header in trailers");
    }
    stream.receiveHeaders(headers, false);
    if (end) this.#remoteEnd(stream);
  }

  #priority(frame: Frame): void {
    if (frame.streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
    if (frame.payload.length !== 5) {
      throw new StreamError(frame.streamId, ErrorCode.FRAME_SIZE_ERROR, "a PRIORITY frame not 5 bytes long");
    }
    if ((uint32(frame.payload) & 0x7fff_ffff) === frame.streamId) {
      throw new StreamError(frame.streamId, ErrorCode.PROTOCOL_ERROR, "a stream depends on itself");
    }
  }

  #rstStream(frame: Frame): void {
    if (frame.streamId === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (frame.payload.length !== 4) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a RST_STREAM frame not 4 bytes long");
    }
    if (this.#idle(frame.streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on stream ${frame.streamId}, never opened`);
    }
    const stream = this.#streams.get(frame.streamId);
    if (!stream) return;
    const code = uint32(frame.payload);
    if (this.#role === "client" && code === ErrorCode.NO_ERROR && stream.remoteEnded) {
      // RFC 9113 §8.1: the server's answer is complete and it wants no more of the request; the answer stands.
      stream.stopSending(new StreamResetError(code, `stream ${stream.id}: the peer needs no more of it`));
      this.#forget(stream);
      return;
    }
    // The application still owns a reset stream until it finishes with it (it stays "busy"), so a peer
    // that opens and resets streams in a loop cannot make it run unbounded work (CVE-2023-44487).
    this.#forget(stream, new StreamResetError(code, `stream ${stream.id} reset by the peer (${errorName(code)})`));
  }

  #settings(frame: Frame): void {
    if (frame.streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (frame.flags & Flag.ACK) {
      if (frame.payload.length !== 0) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS ACK with data");
      return;
    }
    if (frame.payload.length % 6 !== 0) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a SETTINGS frame not a multiple of 6 bytes");
    }
    for (const [id, value] of decodeSettings(frame.payload)) {
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (value > 1) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_ENABLE_PUSH ${value}`);
          if (value === 1 && this.#role === "client") {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a server may not enable push");
          }
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.#peerMaxStreams = value;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (value > MAX_WINDOW) {
            throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, `SETTINGS_INITIAL_WINDOW_SIZE ${value}`);
          }
          const delta = value - this.#peerInitialWindow;
          this.#peerInitialWindow = value;
          for (const stream of this.#streams.values()) {
            stream.sendWindow += delta;
            if (stream.sendWindow > MAX_WINDOW) {
              throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "a stream window above 2^31-1");
            }
            if (delta > 0 && stream.outbox.length > 0) this.#sendable.add(stream);
          }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (value < DEFAULT_MAX_FRAME_SIZE || value > 0xff_ffff) {
            throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `SETTINGS_MAX_FRAME_SIZE ${value}`);
          }
          this.#peerMaxFrame = value;
          break;
        default:
          // HEADER_TABLE_SIZE does not matter to an encoder that never indexes; others are ignored (§6.5.2).
          break;
      }
    }
    this.#settingsSeen = true;
    this.#emit(encodeFrame(FrameType.SETTINGS, Flag.ACK, 0));
    this.#flushStreams();
  }

  #ping(frame: Frame): void {
    if (frame.streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (frame.payload.length !== 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a PING not 8 bytes long");
    if (!(frame.flags & Flag.ACK)) this.#emit(encodePing(frame.payload, true));
  }

  #goAwayReceived(frame: Frame): void {
    if (frame.streamId !== 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (frame.payload.length < 8) throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a GOAWAY under 8 bytes");
    const last = uint32(frame.payload) & 0x7fff_ffff;
    const code = uint32(frame.payload, 4);
    const debug = new TextDecoder().decode(frame.payload.subarray(8, 8 + 256));
    this.#peerLastStream = last;
    if (code !== ErrorCode.NO_ERROR) {
      const reason = `the peer went away with ${errorName(code)}${debug ? `: ${debug}` : ""}`;
      return this.#end({ code, reason, byPeer: true });
    }
    // Streams this side opened above `last` were never seen by the peer: they may be tried elsewhere.
    for (const stream of [...this.#streams.values()]) {
      if (this.#role === "client" && stream.id > last) {
        this.#forget(stream, new StreamResetError(ErrorCode.REFUSED_STREAM, "the server went away before it"));
      }
    }
    this.#closeIfIdle(`the peer went away${debug ? `: ${debug}` : ""}`, true);
  }

  #windowUpdate(frame: Frame): void {
    if (frame.payload.length !== 4) {
      throw new ConnectionError(ErrorCode.FRAME_SIZE_ERROR, "a WINDOW_UPDATE not 4 bytes long");
    }
    const increment = uint32(frame.payload) & 0x7fff_ffff;
    if (frame.streamId === 0) {
      if (increment === 0) throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0");
      this.#sendWindow += increment;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new ConnectionError(ErrorCode.FLOW_CONTROL_ERROR, "the connection window above 2^31-1");
      }
      this.#flushStreams();
      return;
    }
    if (this.#idle(frame.streamId)) {
      throw new ConnectionError(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on stream ${frame.streamId}, never opened`);
    }
    const stream = this.#streams.get(frame.streamId);
    if (increment === 0) throw new StreamError(frame.streamId, ErrorCode.PROTOCOL_ERROR, "a WINDOW_UPDATE of 0");
    if (!stream) return;
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) {
      throw new StreamError(frame.streamId, ErrorCode.FLOW_CONTROL_ERROR, "a stream window above 2^31-1");
    }
    // Only this stream can have been waiting for this window: a peer's many small updates cost one stream each.
    this.#flushStream(stream);
    if (stream.outbox.length === 0) this.#sendable.delete(stream);
  }

  // Ending.

  #fail(code: number, reason: string): void {
    if (this.#ended) return;
    this.#emit(encodeGoAway(this.#lastPeerStream, code, reason.slice(0, 200)));
    this.#end({ code, reason, byPeer: false });
  }

  #end(how: Omit<ConnectionEnd, "handshaken">): void {
    if (this.#ended) return;
    const end = { ...how, handshaken: this.#settingsSeen };
    this.#ended = end;
    const failure = new StreamResetError(
      end.code === ErrorCode.NO_ERROR ? ErrorCode.CANCEL : end.code,
      `the connection ended: ${end.reason}`,
      end,
    );
    for (const stream of this.#streams.values()) stream.fail(failure);
    this.#streams.clear();
    this.#sendable.clear();
    this.#busy.clear();
    this.#hooks.closed(end);
  }

  #emit(bytes: Uint8Array): void {
    const first = this.#outputBytes === 0;
    this.#output.push(bytes);
    this.#outputBytes += bytes.length;
    if (this.#outputBytes > this.#limits.maxUnwrittenBytes && !this.#ended) {
      // The peer reads nothing: what waits for it is dropped with the connection, not kept.
      this.#output = [];
      this.#outputBytes = 0;
      this.#end({
        code: ErrorCode.ENHANCE_YOUR_CALM,
        reason: `more than ${this.#limits.maxUnwrittenBytes} bytes the peer does not read`,
        byPeer: false,
      });
      return;
    }
    if (first) this.#hooks.writable();
  }
}

/** What makes a request's header list malformed (RFC 9113 §8.2, §8.3.1), or `undefined`. */
function requestProblem(headers: readonly HeaderField[]): string | undefined {
  const pseudo = new Set<string>();
  let regular = false;
  for (const [name, value] of headers) {
    if (name === "" || /[A-Z]/.test(name)) return `header name ${JSON.stringify(name)} is not lower case`;
    if (name.startsWith(":")) {
      if (regular) return `pseudo-header ${name} after a regular one`;
      if (!REQUEST_PSEUDO.has(name)) return `unknown pseudo-header ${name}`;
      if (pseudo.has(name)) return `pseudo-header ${name} twice`;
      pseudo.add(name);
      if (name === ":path" && value === "") return "an empty :path";
    } else {
      regular = true;
      if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header ${name}`;
      if (name === "te" && value !== "trailers") return `te: ${value}`;
    }
  }
  for (const required of [":method", ":scheme", ":path"]) {
    if (!pseudo.has(required)) return `no ${required}`;
  }
  return undefined;
}
