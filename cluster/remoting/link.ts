/**
 * One TCP connection of remoting, below the handshake and the peers: frames
 * (`frame.ts`) of protobuf envelopes, written in order with backpressure, read
 * until the connection ends, and authenticated frame by frame once the
 * handshake has agreed a seal (`handshake.ts`). A peer that breaks the framing,
 * sends garbage or fails a tag loses its connection, with a log line.
 *
 * @module
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { type Envelope, EnvelopeSchema } from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";
import { RemotingError } from "./errors.ts";
import { encodeFrame, FrameDecoder, FrameError, MAX_FRAME_BYTES } from "./frame.ts";
import type { FrameSeal } from "./handshake.ts";

const log = getLogger(["usershard", "remoting"]);

/** A handshake is a few hundred bytes; an unauthenticated peer may not make a node buffer more. */
const MAX_HANDSHAKE_BYTES = 64 * 1024;

/** Most bytes queued for a peer that does not read before its connection is closed as overloaded. */
export const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
const WRITE_CHUNK_BYTES = 256 * 1024;
/** The length prefix of a frame (`frame.ts`), which the decoder strips. */
const FRAME_HEADER_BYTES = 4;

/**
 * One TCP connection carrying envelopes: a write queue that respects
 * backpressure, and a read loop. Once {@linkcode Link.authenticate} has been
 * given the connection's seal, every frame is tagged on the way out and
 * checked on the way in.
 */
export class Link {
  readonly #conn: Deno.TcpConn;
  // Before the peer has proved who it is, it gets no more memory than a handshake needs.
  #decoder = new FrameDecoder(MAX_HANDSHAKE_BYTES);
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #seal: FrameSeal | undefined;
  #meter: ((direction: "in" | "out", bytes: number) => void) | undefined;
  /** Resolves when the connection has closed, for whatever reason. */
  readonly closed: Promise<void>;
  readonly #markClosed: () => void;
  /** "to host:port" or "from host:port", for logs. */
  readonly description: string;

  readonly #maxQueued: number;

  constructor(conn: Deno.TcpConn, description: string, maxQueuedBytes: number = MAX_QUEUED_BYTES) {
    this.#conn = conn;
    this.description = description;
    this.#maxQueued = maxQueuedBytes;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.closed = promise;
    this.#markClosed = resolve;
    try {
      conn.setNoDelay(true);
    } catch {
      // Not every platform lets us; latency suffers a little, nothing breaks.
    }
  }

  /** Whether the connection has closed. */
  get isClosed(): boolean {
    return this.#closed;
  }

  /** From now on, frames both ways carry tags made and checked by `seal` (after the handshake). */
  authenticate(seal: FrameSeal): void {
    this.#seal = seal;
  }

  /** From now on, tells `meter` the size on the wire of every frame sent or read (for metrics). */
  meter(meter: (direction: "in" | "out", bytes: number) => void): void {
    this.#meter = meter;
  }

  /** Queues an envelope; throws {@linkcode RemotingError} when closed or when the peer does not read. */
  send(envelope: Envelope): void {
    if (this.#closed) throw new RemotingError(`connection ${this.description} is closed`);
    const payload = toBinary(EnvelopeSchema, envelope);
    const frame = encodeFrame(this.#seal ? this.#seal.seal(payload) : payload);
    if (this.#queuedBytes + frame.length > this.#maxQueued) {
      this.close(`more than ${this.#maxQueued} bytes queued: the peer does not read`);
      throw new RemotingError(`connection ${this.description} is overloaded`);
    }
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
    this.#meter?.("out", frame.length);
    this.#flushing ??= this.#flush();
  }

  /** Resolves when everything queued so far has been written. */
  async drain(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0 && !this.#closed) {
        const chunk = this.#takeChunk();
        for (let written = 0; written < chunk.length;) {
          written += await this.#conn.write(chunk.subarray(written));
        }
      }
    } catch (error) {
      this.close(`write failed: ${errorText(error)}`);
    } finally {
      this.#flushing = undefined;
    }
  }

  #takeChunk(): Uint8Array {
    if (this.#queue.length === 1 || this.#queue[0].length >= WRITE_CHUNK_BYTES) {
      const frame = this.#queue.shift()!;
      this.#queuedBytes -= frame.length;
      return frame;
    }
    let size = 0;
    let count = 0;
    while (count < this.#queue.length && size + this.#queue[count].length <= WRITE_CHUNK_BYTES) {
      size += this.#queue[count++].length;
    }
    const chunk = new Uint8Array(size);
    let at = 0;
    for (const frame of this.#queue.splice(0, count)) {
      chunk.set(frame, at);
      at += frame.length;
    }
    this.#queuedBytes -= size;
    return chunk;
  }

  /**
   * Reads envelopes until the connection ends (called once the handshake is
   * done). A framing or decoding error closes the connection with a log line;
   * it never throws.
   */
  async readEnvelopes(onEnvelope: (envelope: Envelope) => void): Promise<void> {
    // The handshake left nothing buffered (readOne makes sure), so the full frame limit starts clean.
    this.#decoder = new FrameDecoder(MAX_FRAME_BYTES);
    const buffer = new Uint8Array(64 * 1024);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buffer);
        if (n === null) break;
        for (const frame of this.#decoder.push(buffer.subarray(0, n))) {
          const payload = this.#seal ? this.#seal.open(frame) : frame;
          if (!payload) throw new FrameError("a frame failed authentication (altered, replayed or out of order)");
          this.#meter?.("in", FRAME_HEADER_BYTES + frame.length);
          onEnvelope(fromBinary(EnvelopeSchema, payload));
          if (this.#closed) return;
        }
      }
      this.close();
    } catch (error) {
      if (this.#closed) return;
      const what = error instanceof FrameError
        ? "bad frame"
        : isDecodeError(error)
        ? "malformed envelope"
        : "read failed";
      this.close(`${what}: ${errorText(error)}`);
    }
  }

  /** Reads exactly one envelope (the handshake), or fails after `timeoutMs`. */
  async readOne(timeoutMs: number): Promise<Envelope> {
    const buffer = new Uint8Array(4096);
    const timer = setTimeout(() => this.close(`no handshake within ${timeoutMs} ms`), timeoutMs);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(buffer);
        if (n === null) throw new RemotingError("closed during the handshake");
        const frames = this.#decoder.push(buffer.subarray(0, n));
        if (frames.length > 0) {
          if (frames.length > 1 || this.#decoder.buffered > 0) {
            throw new RemotingError("sent more than the handshake before the handshake was answered");
          }
          return fromBinary(EnvelopeSchema, frames[0]);
        }
      }
      throw new RemotingError(`no handshake within ${timeoutMs} ms`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Closes the connection, logging `reason` when given. */
  close(reason?: string): void {
    if (this.#closed) return;
    this.#closed = true;
    if (reason) log.warn("closing connection {link}: {reason}", { link: this.description, reason });
    try {
      this.#conn.close();
    } catch {
      // Already closed by the other side.
    }
    this.#markClosed();
  }
}

function isDecodeError(error: unknown): boolean {
  return error instanceof Error && /premature|invalid|cannot|wire type|decode|illegal/i.test(error.message);
}
