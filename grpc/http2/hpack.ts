/**
 * HPACK (RFC 7541), the header compression of HTTP/2. The decoder takes every
 * representation a peer may send, keeps the dynamic table the peer's encoder
 * mirrors, and bounds what a hostile block can cost; the encoder never adds
 * to the peer's table (static-table references and plain literals), so it
 * holds no state that could drift.
 *
 * Header names and values are byte strings: one character per byte (what
 * `Headers` calls a ByteString), so sizes are counted as the RFC counts them.
 *
 * @module
 */
import { huffmanDecode, HuffmanError } from "./huffman.ts";

/** One header field: name and value as byte strings. */
export type HeaderField = [name: string, value: string];

/** A header block that cannot be decoded: the connection must end with COMPRESSION_ERROR. */
export class HpackError extends Error {
  override name = "HpackError";
}

// RFC 7541 Appendix A.
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

/** What an entry costs in a dynamic table, and a header in a header list (RFC 7541 §4.1). */
export function fieldSize(name: string, value: string): number {
  return name.length + value.length + 32;
}

/** The result of decoding one header block. */
export interface DecodedBlock {
  readonly headers: HeaderField[];
  /**
   * The list went past the decoder's limit: `headers` stops short, but the
   * dynamic table was kept in step, so the connection can go on.
   */
  readonly tooLarge: boolean;
}

/**
 * Decodes header blocks of one connection, in the order they arrived.
 *
 * @example
 * ```ts
 * const decoder = new HpackDecoder(4096, 16_384);
 * // RFC 7541 C.3.1: GET http://www.example.com/
 * const block = Uint8Array.from([0x82, 0x86, 0x84, 0x41, 0x0f, ...new TextEncoder().encode("www.example.com")]);
 * decoder.decode(block).headers;
 * // [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]]
 * ```
 */
export class HpackDecoder {
  readonly #entries: HeaderField[] = [];
  #size = 0;
  #maxSize: number;
  readonly #limit: number;
  readonly #maxListSize: number;

  /**
   * @param tableLimit the SETTINGS_HEADER_TABLE_SIZE this endpoint announced: the encoder may not use more
   * @param maxListSize the longest header list (RFC 7541 §4.1 sizes) kept; longer ones are flagged `tooLarge`
   */
  constructor(tableLimit: number, maxListSize: number) {
    this.#limit = tableLimit;
    this.#maxSize = tableLimit;
    this.#maxListSize = maxListSize;
  }

  /** Decodes one complete header block; throws {@linkcode HpackError}. */
  decode(block: Uint8Array): DecodedBlock {
    const headers: HeaderField[] = [];
    let listSize = 0;
    let tooLarge = false;
    let at = 0;
    let fieldSeen = false;

    const integer = (prefixBits: number): number => {
      const max = (1 << prefixBits) - 1;
      let value = block[at++] & max;
      if (value < max) return value;
      for (let shift = 0;; shift += 7) {
        if (at >= block.length) throw new HpackError("a header block ends inside an integer");
        if (shift > 21) throw new HpackError("an integer of more than 28 bits in a header block");
        const byte = block[at++];
        value += (byte & 0x7f) * 2 ** shift;
        if ((byte & 0x80) === 0) return value;
      }
    };
    const string = (): string => {
      if (at >= block.length) throw new HpackError("a header block ends before a string");
      const huffman = (block[at] & 0x80) !== 0;
      const length = integer(7);
      if (length > block.length - at) throw new HpackError("a string runs past the end of its header block");
      const raw = block.subarray(at, at + length);
      at += length;
      try {
        return byteString(huffman ? huffmanDecode(raw) : raw);
      } catch (error) {
        if (error instanceof HuffmanError) throw new HpackError(error.message);
        throw error;
      }
    };
    const field = (index: number): HeaderField => {
      if (index === 0) throw new HpackError("header table index 0");
      if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1];
      const entry = this.#entries[index - STATIC_TABLE.length - 1];
      if (!entry) throw new HpackError(`header table index ${index} is not in the table`);
      return entry;
    };
    const emit = (name: string, value: string) => {
      fieldSeen = true;
      if (tooLarge) return;
      listSize += fieldSize(name, value);
      if (listSize > this.#maxListSize) {
        tooLarge = true;
        headers.length = 0;
        return;
      }
      headers.push([name, value]);
    };

    while (at < block.length) {
      const byte = block[at];
      if (byte & 0x80) {
        const [name, value] = field(integer(7));
        emit(name, value);
      } else if (byte & 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : field(index)[0];
        const value = string();
        this.#add(name, value);
        emit(name, value);
      } else if (byte & 0x20) {
        // RFC 7541 §4.2: a size update comes first in a block, and never above the announced limit.
        if (fieldSeen) throw new HpackError("a dynamic table size update after a header field");
        const size = integer(5);
        if (size > this.#limit) {
          throw new HpackError(`a dynamic table size of ${size}, over the ${this.#limit} announced`);
        }
        this.#maxSize = size;
        this.#evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001): the same to a decoder.
        const index = integer(4);
        const name = index === 0 ? string() : field(index)[0];
        emit(name, string());
      }
    }
    return { headers, tooLarge };
  }

  #add(name: string, value: string): void {
    const size = fieldSize(name, value);
    this.#evict(size);
    // An entry larger than the whole table empties it and is not added (RFC 7541 §4.4).
    if (size > this.#maxSize) return;
    this.#entries.unshift([name, value]);
    this.#size += size;
  }

  #evict(room: number): void {
    while (this.#entries.length > 0 && this.#size + room > this.#maxSize) {
      const [name, value] = this.#entries.pop()!;
      this.#size -= fieldSize(name, value);
    }
  }
}

const staticExact = new Map<string, number>();
const staticName = new Map<string, number>();
for (const [i, [name, value]] of STATIC_TABLE.entries()) {
  staticExact.set(`${name}\0${value}`, i + 1);
  if (!staticName.has(name)) staticName.set(name, i + 1);
}

/**
 * Encodes a header list without touching the peer's dynamic table: an exact
 * static-table match is one index, any other field a literal without indexing
 * (with the static name index where there is one).
 *
 * @example
 * ```ts
 * encodeHeaders([[":status", "200"]]); // Uint8Array [0x88]
 * ```
 */
export function encodeHeaders(headers: Iterable<HeaderField>): Uint8Array {
  const out: number[] = [];
  const integer = (value: number, prefixBits: number, first: number) => {
    const max = (1 << prefixBits) - 1;
    if (value < max) {
      out.push(first | value);
      return;
    }
    out.push(first | max);
    value -= max;
    while (value >= 0x80) {
      out.push((value & 0x7f) | 0x80);
      value = Math.floor(value / 128);
    }
    out.push(value);
  };
  const string = (text: string) => {
    integer(text.length, 7, 0);
    for (let i = 0; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (code > 0xff) throw new RangeError(`header text must be a byte string, got ${JSON.stringify(text)}`);
      out.push(code);
    }
  };
  for (const [name, value] of headers) {
    const exact = staticExact.get(`${name}\0${value}`);
    if (exact !== undefined) {
      integer(exact, 7, 0x80);
      continue;
    }
    const nameIndex = staticName.get(name);
    if (nameIndex !== undefined) {
      integer(nameIndex, 4, 0);
    } else {
      out.push(0);
      string(name);
    }
    string(value);
  }
  return Uint8Array.from(out);
}

/** Bytes as a byte string, one character each. */
function byteString(bytes: Uint8Array): string {
  let text = "";
  for (let at = 0; at < bytes.length; at += 4096) {
    text += String.fromCharCode(...bytes.subarray(at, at + 4096));
  }
  return text;
}
