/**
 * The TCP framing of remoting: a 4-byte big-endian length, then that many
 * bytes. Pure: the decoder takes chunks as they arrive and hands back whole
 * frames, or throws {@linkcode FrameError} for a stream that cannot be framed.
 *
 * @module
 */

/** Largest frame accepted or sent, in bytes (16 MiB). */
export const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** A byte stream that breaks the framing rules; the connection must be closed. */
export class FrameError extends Error {
  override name = "FrameError";
}

/**
 * Prefixes `payload` with its length.
 *
 * @example
 * ```ts
 * encodeFrame(new Uint8Array([7])); // Uint8Array [0, 0, 0, 1, 7]
 * ```
 */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_BYTES) {
    throw new FrameError(`frame of ${payload.length} bytes exceeds the ${MAX_FRAME_BYTES}-byte limit`);
  }
  const frame = new Uint8Array(4 + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, 4);
  return frame;
}

/**
 * Reassembles frames from chunks of a byte stream.
 *
 * @example
 * ```ts
 * const decoder = new FrameDecoder();
 * decoder.push(new Uint8Array([0, 0, 0, 2, 1])); // []
 * decoder.push(new Uint8Array([2]));             // [Uint8Array [1, 2]]
 * ```
 */
export class FrameDecoder {
  #buffer = new Uint8Array(64 * 1024);
  #start = 0;
  #end = 0;
  readonly #maxFrame: number;

  constructor(maxFrameBytes: number = MAX_FRAME_BYTES) {
    this.#maxFrame = maxFrameBytes;
  }

  /** Bytes received that do not yet make a whole frame. */
  get buffered(): number {
    return this.#end - this.#start;
  }

  /** Adds a chunk; returns the frames it completed, in order. */
  push(chunk: Uint8Array): Uint8Array[] {
    this.#append(chunk);
    const frames: Uint8Array[] = [];
    while (this.#end - this.#start >= 4) {
      const view = new DataView(this.#buffer.buffer, this.#start, 4);
      const length = view.getUint32(0);
      if (length > this.#maxFrame) {
        throw new FrameError(`frame length ${length} exceeds the ${this.#maxFrame}-byte limit`);
      }
      if (this.#end - this.#start < 4 + length) break;
      frames.push(this.#buffer.slice(this.#start + 4, this.#start + 4 + length));
      this.#start += 4 + length;
    }
    if (this.#start === this.#end) this.#start = this.#end = 0;
    return frames;
  }

  #append(chunk: Uint8Array): void {
    if (this.#end + chunk.length > this.#buffer.length) {
      const held = this.#end - this.#start;
      if (held + chunk.length > this.#buffer.length) {
        const grown = new Uint8Array(Math.max(held + chunk.length, this.#buffer.length * 2));
        grown.set(this.#buffer.subarray(this.#start, this.#end));
        this.#buffer = grown;
      } else {
        this.#buffer.copyWithin(0, this.#start, this.#end);
      }
      this.#start = 0;
      this.#end = held;
    }
    this.#buffer.set(chunk, this.#end);
    this.#end += chunk.length;
  }
}
