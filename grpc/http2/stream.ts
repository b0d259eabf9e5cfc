/**
 * One HTTP/2 stream as the application sees it: the header blocks and data
 * that arrived, and the calls that send on it. The connection owns every
 * piece of protocol state; a stream only holds what its application reads and
 * what waits to be sent.
 *
 * Data costs the peer window twice over: the stream's window comes back as
 * the application reads (`body()`), the connection's only when the
 * application releases what it read (`release`), once it no longer holds it
 * (a whole message parsed). So the connection window bounds what one
 * connection can make the node hold, however many streams it opens.
 *
 * @module
 */
import type { ConnectionEnd } from "./connection.ts";
import type { HeaderField } from "./hpack.ts";

/** The stream was reset or its connection ended: nothing more will arrive or leave. */
export class StreamResetError extends Error {
  override name = "StreamResetError";
  /**
   * @param code the HTTP/2 error code (`ErrorCode`)
   * @param connectionEnd how the connection ended, when that is what ended the stream
   */
  constructor(readonly code: number, message: string, readonly connectionEnd?: ConnectionEnd) {
    super(message);
  }
}

/** What a stream needs from its connection. */
export interface StreamOwner {
  /** Queues a header block; `end` closes the sending side. */
  sendHeaders(stream: Http2Stream, headers: readonly HeaderField[], end: boolean): void;
  /** Queues data; resolves once flow control let all of it out. */
  sendData(stream: Http2Stream, data: Uint8Array, end: boolean): Promise<void>;
  /** Ends the stream with RST_STREAM `code`. */
  reset(stream: Http2Stream, code: number): void;
  /** The application read `bytes` of this stream's data: the stream may receive that much more. */
  consumed(stream: Http2Stream, bytes: number): void;
  /** The application no longer holds `bytes` it read: the connection may receive that much more. */
  released(stream: Http2Stream, bytes: number): void;
}

/** Queued outgoing frames of one stream, in order; the connection takes them as flow control allows. */
export type Outgoing =
  | { readonly kind: "headers"; readonly headers: readonly HeaderField[]; readonly end: boolean }
  | {
    readonly kind: "data";
    data: Uint8Array;
    readonly end: boolean;
    readonly sent: () => void;
    readonly failed: (error: Error) => void;
  };

/**
 * Received data is kept in one buffer per stream: a frame's own payload
 * while it is the only one unread, then a buffer grown as needed, so that a
 * peer's tiny DATA frames cost one copy each, not an object each.
 */
const INITIAL_BUFFER_BYTES = 1024;

const EMPTY = new Uint8Array(0);

/**
 * A stream: request and response on one id.
 *
 * The application reads `headers`, `trailers` and `body()`, and sends with
 * `respond`, `write`, `end` and `reset`; `signal` aborts when the stream is
 * reset by either side or its connection ends before it finished.
 */
export class Http2Stream {
  readonly id: number;
  readonly #owner: StreamOwner;
  readonly #abort = new AbortController();
  /** The first header block received (a request's, or a response's). */
  headers: readonly HeaderField[] = [];
  /** The header block that ended the peer's side, when there was one after the first. */
  trailers: readonly HeaderField[] = [];
  #data: Uint8Array = EMPTY;
  #dataLength = 0;
  #remoteEnded = false;
  #failure: StreamResetError | undefined;
  /** Readers waiting for headers, data or the end: woken, one and all, whenever any of these changes. */
  #waiters: (() => void)[] = [];

  // Protocol state, kept by the connection.
  /** Bytes the peer may still send before the stream window is replenished. */
  receiveWindow: number;
  /** Bytes this side may still send on the stream. */
  sendWindow: number;
  /** Bytes read by the application that have not been given back to the peer's stream window yet. */
  pendingCredit = 0;
  /** Bytes received that the application has not released yet: the connection window they hold. */
  unreleased = 0;
  /** Whether this side sent END_STREAM (or RST_STREAM). */
  localEnded = false;
  /** When the peer opened the stream (the connection's clock). */
  openedAt = 0;
  /**
   * Set by a server's application: the peer must have ended its side this
   * long after it opened the stream, or the stream is reset (CANCEL).
   */
  requestTimeoutMs: number | undefined;
  /** Frames waiting for flow control. */
  readonly outbox: Outgoing[] = [];

  constructor(id: number, owner: StreamOwner, receiveWindow: number, sendWindow: number) {
    this.id = id;
    this.#owner = owner;
    this.receiveWindow = receiveWindow;
    this.sendWindow = sendWindow;
  }

  /** Aborts when the stream is reset or its connection ends before both sides finished. */
  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** Whether the peer has finished sending (END_STREAM), or the stream failed. */
  get remoteEnded(): boolean {
    return this.#remoteEnded || this.#failure !== undefined;
  }

  /** Why the stream failed, if it did. */
  get failure(): StreamResetError | undefined {
    return this.#failure;
  }

  /**
   * Resolves when the first header block has arrived; rejects if the stream
   * fails, or the peer ends it, first.
   */
  async receivedHeaders(): Promise<readonly HeaderField[]> {
    while (this.headers.length === 0) {
      if (this.#failure) throw this.#failure;
      if (this.#remoteEnded) throw new StreamResetError(0x1, `stream ${this.id} ended without a header block`);
      await this.#next();
    }
    return this.headers;
  }

  /**
   * The data the peer sends, in chunks of what arrived since the last one,
   * until END_STREAM; throws {@linkcode StreamResetError}. Each chunk gives
   * the stream window back; the application gives the connection window
   * back with {@linkcode release}.
   */
  async *body(): AsyncGenerator<Uint8Array> {
    while (true) {
      if (this.#dataLength > 0) {
        const chunk = this.#dataLength === this.#data.length ? this.#data : this.#data.subarray(0, this.#dataLength);
        this.#data = EMPTY;
        this.#dataLength = 0;
        this.#owner.consumed(this, chunk.length);
        yield chunk;
        continue;
      }
      if (this.#failure) throw this.#failure;
      if (this.#remoteEnded) return;
      await this.#next();
    }
  }

  /** The application no longer holds `bytes` of what it read: the connection may receive that much more. */
  release(bytes: number): void {
    this.#owner.released(this, bytes);
  }

  /** Sends a header block (response headers, or trailers with `end`). */
  respond(headers: readonly HeaderField[], end = false): void {
    this.#owner.sendHeaders(this, headers, end);
  }

  /** Sends data; resolves once flow control let it out, rejects if the stream fails first. */
  write(data: Uint8Array, end = false): Promise<void> {
    return this.#owner.sendData(this, data, end);
  }

  /** Ends the sending side with trailers (or an empty DATA frame when there are none). */
  end(trailers?: readonly HeaderField[]): Promise<void> {
    if (trailers && trailers.length > 0) {
      this.respond(trailers, true);
      return Promise.resolve();
    }
    return this.write(new Uint8Array(0), true);
  }

  /** Resets the stream (CANCEL unless told otherwise). */
  reset(code = 0x8): void {
    this.#owner.reset(this, code);
  }

  // Called by the connection.

  /** A header block arrived for this stream. */
  receiveHeaders(headers: readonly HeaderField[], end: boolean): void {
    if (this.headers.length === 0) this.headers = headers;
    else this.trailers = headers;
    if (end) this.#remoteEnded = true;
    this.#wake();
  }

  /** Data arrived for this stream. */
  receiveData(data: Uint8Array): void {
    if (data.length === 0) return;
    this.unreleased += data.length;
    if (this.#dataLength === 0) {
      this.#data = data;
      this.#dataLength = data.length;
      this.#wake();
      return;
    }
    if (this.#dataLength + data.length > this.#data.length) {
      const grown = new Uint8Array(Math.max(INITIAL_BUFFER_BYTES, 2 * (this.#dataLength + data.length)));
      grown.set(this.#data.subarray(0, this.#dataLength));
      this.#data = grown;
    }
    this.#data.set(data, this.#dataLength);
    this.#dataLength += data.length;
    this.#wake();
  }

  /** The peer ended its side. */
  receiveEnd(): void {
    this.#remoteEnded = true;
    this.#wake();
  }

  /** The peer needs nothing more from this side (RST_STREAM NO_ERROR after its complete answer). */
  stopSending(error: StreamResetError): void {
    this.localEnded = true;
    for (const item of this.outbox.splice(0)) if (item.kind === "data") item.failed(error);
  }

  /** The stream failed: reset by the peer or by this side, or its connection ended. */
  fail(error: StreamResetError): void {
    if (this.#failure) return;
    this.#failure = error;
    this.localEnded = true;
    for (const item of this.outbox.splice(0)) if (item.kind === "data") item.failed(error);
    this.#wake();
    this.#abort.abort(error);
  }

  /** Drops what was received but not read (nobody will read it), returning its size. */
  discardUnread(): number {
    const bytes = this.#dataLength;
    this.#dataLength = 0;
    this.#data = EMPTY;
    this.#wake();
    return bytes;
  }

  #next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    for (const wake of this.#waiters.splice(0)) wake();
  }
}
