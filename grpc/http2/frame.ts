/**
 * HTTP/2 frames (RFC 9113 §4 and §6): the constants, a decoder that cuts a
 * byte stream into frames, and the encoders of every frame this server and
 * client send. Pure: no sockets, no timers.
 *
 * @module
 */

/** Frame types (RFC 9113 §6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags; which ones a type uses is in RFC 9113 §6. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes of RST_STREAM and GOAWAY (RFC 9113 §7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** The name of an error code, for logs: `PROTOCOL_ERROR`, or `0x2a` for one RFC 9113 does not define. */
export function errorName(code: number): string {
  const entry = Object.entries(ErrorCode).find(([, value]) => value === code);
  return entry ? entry[0] : `0x${code.toString(16)}`;
}

/** SETTINGS parameters (RFC 9113 §6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The client connection preface (RFC 9113 §3.4). */
export const PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** The frame payload size every endpoint must accept, and the smallest it may announce. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;

/** The largest flow-control window (2^31 - 1). */
export const MAX_WINDOW = 0x7fff_ffff;

/** Every frame starts with this many bytes: length (24 bits), type, flags, stream id (31 bits). */
export const FRAME_HEADER_BYTES = 9;

/** One frame as received. */
export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  /** A copy: it stays valid whatever arrives next. */
  readonly payload: Uint8Array;
}

/** A frame longer than the receiver's SETTINGS_MAX_FRAME_SIZE: the connection must end with FRAME_SIZE_ERROR. */
export class FrameSizeError extends Error {
  override name = "FrameSizeError";
}

/**
 * Cuts a byte stream into frames.
 *
 * @example
 * ```ts
 * const decoder = new FrameDecoder(16_384);
 * decoder.push(encodePing(new Uint8Array(8), false));
 * decoder.next()?.type; // FrameType.PING
 * ```
 */
export class FrameDecoder {
  #buffer = new Uint8Array(32 * 1024);
  #start = 0;
  #end = 0;
  readonly #maxPayload: number;

  constructor(maxPayload: number) {
    this.#maxPayload = maxPayload;
  }

  /** Bytes received that do not make a whole frame yet. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Adds bytes as they came off the wire. */
  push(bytes: Uint8Array): void {
    if (this.#end + bytes.length > this.#buffer.length) {
      const pending = this.#end - this.#start;
      const size = Math.max(this.#buffer.length, pending + bytes.length);
      if (size > this.#buffer.length) {
        const next = new Uint8Array(size);
        next.set(this.#buffer.subarray(this.#start, this.#end), 0);
        this.#buffer = next;
      } else {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = pending;
    }
    this.#buffer.set(bytes, this.#end);
    this.#end += bytes.length;
  }

  /** Removes and returns `count` raw bytes (the connection preface), or `undefined` until that many arrived. */
  take(count: number): Uint8Array | undefined {
    if (this.#end - this.#start < count) return undefined;
    const bytes = this.#buffer.slice(this.#start, this.#start + count);
    this.#start += count;
    return bytes;
  }

  /** Bytes received so far without removing them (up to `count`), to recognise what a peer speaks. */
  peek(count: number): Uint8Array {
    return this.#buffer.slice(this.#start, Math.min(this.#end, this.#start + count));
  }

  /** The next whole frame, or `undefined`; throws {@linkcode FrameSizeError} for one that is too long. */
  next(): Frame | undefined {
    const available = this.#end - this.#start;
    if (available < FRAME_HEADER_BYTES) return undefined;
    const b = this.#buffer;
    const s = this.#start;
    const length = (b[s] << 16) | (b[s + 1] << 8) | b[s + 2];
    if (length > this.#maxPayload) {
      throw new FrameSizeError(`a frame of ${length} bytes, over the ${this.#maxPayload} this endpoint accepts`);
    }
    if (available < FRAME_HEADER_BYTES + length) return undefined;
    const streamId = ((b[s + 5] & 0x7f) << 24 | (b[s + 6] << 16) | (b[s + 7] << 8) | b[s + 8]) >>> 0;
    const frame = {
      type: b[s + 3],
      flags: b[s + 4],
      streamId,
      payload: b.slice(s + FRAME_HEADER_BYTES, s + FRAME_HEADER_BYTES + length),
    };
    this.#start += FRAME_HEADER_BYTES + length;
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return frame;
  }
}

/**
 * One frame's bytes.
 *
 * @example
 * ```ts
 * encodeFrame(FrameType.SETTINGS, Flag.ACK, 0); // Uint8Array [0, 0, 0, 4, 1, 0, 0, 0, 0]
 * ```
 */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const frame = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  frame[0] = payload.length >>> 16;
  frame[1] = payload.length >>> 8;
  frame[2] = payload.length;
  frame[3] = type;
  frame[4] = flags;
  new DataView(frame.buffer).setUint32(5, streamId & 0x7fff_ffff);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** A SETTINGS frame carrying `settings` (id → value). */
export function encodeSettings(settings: ReadonlyMap<number, number>): Uint8Array {
  const payload = new Uint8Array(6 * settings.size);
  const view = new DataView(payload.buffer);
  let at = 0;
  for (const [id, value] of settings) {
    view.setUint16(at, id);
    view.setUint32(at + 2, value);
    at += 6;
  }
  return encodeFrame(FrameType.SETTINGS, 0, 0, payload);
}

/** The (id, value) pairs of a SETTINGS payload whose length is a multiple of 6. */
export function decodeSettings(payload: Uint8Array): [number, number][] {
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const settings: [number, number][] = [];
  for (let at = 0; at + 6 <= payload.length; at += 6) settings.push([view.getUint16(at), view.getUint32(at + 2)]);
  return settings;
}

/** A PING (or its acknowledgement) with 8 bytes of opaque data. */
export function encodePing(data: Uint8Array, ack: boolean): Uint8Array {
  return encodeFrame(FrameType.PING, ack ? Flag.ACK : 0, 0, data);
}

/** A GOAWAY naming the last stream the sender will process, with a code and a debug text for the peer's logs. */
export function encodeGoAway(lastStreamId: number, code: number, debug = ""): Uint8Array {
  const text = new TextEncoder().encode(debug);
  const payload = new Uint8Array(8 + text.length);
  const view = new DataView(payload.buffer);
  view.setUint32(0, lastStreamId & 0x7fff_ffff);
  view.setUint32(4, code);
  payload.set(text, 8);
  return encodeFrame(FrameType.GOAWAY, 0, 0, payload);
}

/** A RST_STREAM ending `streamId` with `code`. */
export function encodeRstStream(streamId: number, code: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, code);
  return encodeFrame(FrameType.RST_STREAM, 0, streamId, payload);
}

/** A WINDOW_UPDATE granting `increment` more bytes on `streamId` (0: the connection). */
export function encodeWindowUpdate(streamId: number, increment: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, increment & 0x7fff_ffff);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

/** The 32-bit big-endian number at `at` of `bytes`. */
export function uint32(bytes: Uint8Array, at = 0): number {
  return ((bytes[at] << 24) | (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3]) >>> 0;
}

/**
 * `chunks` as one buffer (`length` bytes, when the caller knows).
 *
 * @example
 * ```ts
 * concatBytes([Uint8Array.of(1), Uint8Array.of(2, 3)]); // Uint8Array [1, 2, 3]
 * ```
 */
export function concatBytes(
  chunks: readonly Uint8Array[],
  length: number = chunks.reduce((n, chunk) => n + chunk.length, 0),
): Uint8Array {
  const bytes = new Uint8Array(length);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.length;
  }
  return bytes;
}
