/**
 * One HTTP/2 stream as the application sees it: the header blocks and data
 * that arrived (data as an async iterable that gives flow-control credit back
 * as it is read), and the calls that send on it. The connection owns every
 * piece of protocol state; a stream only holds what its application reads and
 * what waits to be sent.
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
  /** The application read `bytes` of this stream's data: the peer may send that much more. */
  consumed(stream: Http2Stream, bytes: number): void;
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
  #chunks: Uint8Array[] = [];
  #remoteEnded = false;
  #failure: StreamResetError | undefined;
  #wake: (() => void) | undefined;
  #headersWaiters: (() => void)[] = [];

  // Protocol state, kept by the connection.
  /** Bytes the peer may still send before the stream window is replenished. */
  receiveWindow: number;
  /** Bytes this side may still send on the stream. */
  sendWindow: number;
  /** Bytes read by the application that have not been given back to the peer yet. */
  pendingCredit = 0;
  /** Whether this side sent END_STREAM (or RST_STREAM). */
  localEnded = false;
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

  /** Resolves when the first header block has arrived; rejects if the stream fails first. */
  receivedHeaders(): Promise<readonly HeaderField[]> {
    if (this.headers.length > 0) return Promise.resolve(this.headers);
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) =>
      this.#headersWaiters.push(() => this.#failure ? reject(this.#failure) : resolve(this.headers))
    );
  }

  /** The data the peer sends, chunk by chunk, until END_STREAM; throws {@linkcode StreamResetError}. */
  async *body(): AsyncGenerator<Uint8Array> {
    while (true) {
      // All that is queued, taken at once: a peer sending thousands of tiny DATA frames costs each one once.
      const chunks = this.#chunks;
      this.#chunks = [];
      for (const chunk of chunks) {
        this.#owner.consumed(this, chunk.length);
        yield chunk;
      }
      if (chunks.length > 0) continue;
      if (this.#failure) throw this.#failure;
      if (this.#remoteEnded) return;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
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
    if (this.headers.length === 0) {
      this.headers = headers;
      for (const wake of this.#headersWaiters.splice(0)) wake();
    } else {
      this.trailers = headers;
    }
    if (end) this.receiveEnd();
  }

  /** Data arrived for this stream. */
  receiveData(data: Uint8Array): void {
    if (data.length > 0) this.#chunks.push(data);
    this.#wakeReader();
  }

  /** The peer ended its side. */
  receiveEnd(): void {
    this.#remoteEnded = true;
    this.#wakeReader();
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
    for (const wake of this.#headersWaiters.splice(0)) wake();
    this.#wakeReader();
    this.#abort.abort(error);
  }

  /** Bytes received but not read yet. */
  get unread(): number {
    return this.#chunks.reduce((n, c) => n + c.length, 0);
  }

  /** Drops what was received but not read, returning its size (for the connection's window). */
  discardUnread(): number {
    const bytes = this.unread;
    this.#chunks = [];
    return bytes;
  }

  #wakeReader(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}
