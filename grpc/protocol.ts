/**
 * The gRPC-over-HTTP/2 wire format (grpc/doc/PROTOCOL-HTTP2.md) apart from
 * any I/O: length-prefixed messages, `grpc-timeout`, and the percent-encoding
 * of `grpc-message`. Pure functions and one reassembler.
 *
 * @module
 */
import { GrpcError, Status } from "./status.ts";

/** Largest message taken or sent (gRPC's usual 4 MiB). */
export const MAX_MESSAGE_BYTES = 4 << 20;

/** The longest a timer can wait (2^31-1 ms, 24 days): a deadline further off is as good as none. */
export const MAX_TIMER_MS = 0x7fff_ffff;

/** Bytes before each message: a compressed flag, then the length (big-endian uint32). */
const PREFIX_BYTES = 5;

/**
 * One message as it goes on the wire: uncompressed flag, length, bytes.
 *
 * @example
 * ```ts
 * encodeMessage(Uint8Array.of(0x0a, 0x01, 0x37)); // Uint8Array [0, 0, 0, 0, 3, 10, 1, 55]
 * ```
 */
export function encodeMessage(message: Uint8Array): Uint8Array {
  const framed = new Uint8Array(PREFIX_BYTES + message.length);
  framed[1] = message.length >>> 24;
  framed[2] = message.length >>> 16;
  framed[3] = message.length >>> 8;
  framed[4] = message.length;
  framed.set(message, PREFIX_BYTES);
  return framed;
}

/**
 * Reassembles messages from a stream's DATA, however they were cut.
 *
 * @example
 * ```ts
 * const reader = new MessageReader();
 * reader.push(Uint8Array.of(0, 0, 0, 0, 1)); // []
 * reader.push(Uint8Array.of(7));             // [Uint8Array [7]]
 * ```
 */
export class MessageReader {
  readonly #maxBytes: number;
  // Chunks as they came, from #head on: a message cut into many small DATA frames is copied once, when whole.
  #chunks: Uint8Array[] = [];
  #head = 0;
  #length = 0;

  /** @param maxBytes the largest message taken */
  constructor(maxBytes: number = MAX_MESSAGE_BYTES) {
    this.#maxBytes = maxBytes;
  }

  /** Bytes of a message that has not been completed. */
  get pending(): number {
    return this.#length;
  }

  /**
   * Adds bytes; returns the messages they completed. Throws
   * {@linkcode GrpcError}: INTERNAL for a compressed message (no compression
   * was offered), RESOURCE_EXHAUSTED past the largest message taken.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#length += chunk.length;
    }
    const messages: Uint8Array[] = [];
    while (this.#length >= PREFIX_BYTES) {
      const prefix = this.#peekPrefix();
      if (prefix[0] !== 0) throw new GrpcError(Status.INTERNAL, "a compressed message, but no compression was agreed");
      const length = ((prefix[1] << 24) | (prefix[2] << 16) | (prefix[3] << 8) | prefix[4]) >>> 0;
      if (length > this.#maxBytes) {
        throw new GrpcError(
          Status.RESOURCE_EXHAUSTED,
          `a message of ${length} bytes, over the ${this.#maxBytes} allowed`,
        );
      }
      if (this.#length < PREFIX_BYTES + length) break;
      messages.push(this.#take(PREFIX_BYTES + length).subarray(PREFIX_BYTES));
    }
    if (this.#head > 0 && this.#head * 2 >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#head);
      this.#head = 0;
    }
    return messages;
  }

  /** The first chunk, made at least as long as a prefix. */
  #peekPrefix(): Uint8Array {
    if (this.#chunks[this.#head].length < PREFIX_BYTES) {
      const bytes = this.#take(PREFIX_BYTES);
      this.#chunks[--this.#head] = bytes;
      this.#length += PREFIX_BYTES;
    }
    return this.#chunks[this.#head];
  }

  /** Removes and returns the first `count` bytes. */
  #take(count: number): Uint8Array {
    this.#length -= count;
    const first = this.#chunks[this.#head];
    if (first.length >= count) {
      if (first.length === count) this.#head++;
      else this.#chunks[this.#head] = first.subarray(count);
      return first.subarray(0, count);
    }
    const bytes = new Uint8Array(count);
    for (let at = 0; at < count;) {
      const chunk = this.#chunks[this.#head];
      const part = Math.min(chunk.length, count - at);
      bytes.set(chunk.subarray(0, part), at);
      at += part;
      if (part === chunk.length) this.#head++;
      else this.#chunks[this.#head] = chunk.subarray(part);
    }
    return bytes;
  }
}

const TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/**
 * The milliseconds a `grpc-timeout` value stands for (`"1500m"` → 1500), or
 * `undefined` for a value that is not one.
 *
 * @example
 * ```ts
 * parseTimeout("15S"); // 15000
 * ```
 */
export function parseTimeout(value: string): number | undefined {
  const match = /^(\d{1,8})([HMSmun])$/.exec(value);
  return match ? Number(match[1]) * TIMEOUT_UNITS[match[2]] : undefined;
}

/**
 * A `grpc-timeout` value for `ms` milliseconds (at most 8 digits, as the
 * protocol allows).
 *
 * @example
 * ```ts
 * formatTimeout(15_000); // "15000m"
 * ```
 */
export function formatTimeout(ms: number): string {
  const whole = Math.max(1, Math.ceil(ms));
  return whole < 1e8 ? `${whole}m` : `${Math.min(99_999_999, Math.ceil(whole / 1000))}S`;
}

/**
 * `grpc-message` as the protocol carries it: UTF-8, with every byte outside
 * printable ASCII, and `%` itself, percent-encoded.
 *
 * @example
 * ```ts
 * encodeStatusMessage("café 100%"); // "caf%C3%A9 100%25"
 * ```
 */
export function encodeStatusMessage(text: string): string {
  let out = "";
  for (const byte of new TextEncoder().encode(text)) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25
      ? String.fromCharCode(byte)
      : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * The text of a `grpc-message` value; malformed escapes are kept as they are,
 * as the protocol asks.
 *
 * @example
 * ```ts
 * decodeStatusMessage("caf%C3%A9 100%25"); // "café 100%"
 * ```
 */
export function decodeStatusMessage(value: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const hex = value[i] === "%" ? value.slice(i + 1, i + 3) : "";
    if (/^[0-9A-Fa-f]{2}$/.test(hex)) {
      bytes.push(parseInt(hex, 16));
      i += 2;
    } else {
      bytes.push(value.charCodeAt(i) & 0xff);
    }
  }
  return new TextDecoder().decode(Uint8Array.from(bytes));
}
