/**
 * Decoding of HPACK's Huffman-coded strings (RFC 7541 §5.2), with the checks
 * the RFC asks of a decoder: padding of at most 7 bits, all ones, and no EOS.
 *
 * @module
 */
import { HUFFMAN_CODES, HUFFMAN_LENGTHS } from "./huffman_table.ts";

const EOS = 256;

/** A string that is not valid Huffman code. */
export class HuffmanError extends Error {
  override name = "HuffmanError";
}

// The code as a binary trie: node n's children are at 2n (bit 0) and 2n+1 (bit 1); a child above 0 is the
// next node, a child below 0 is the leaf of symbol -(child + 1), 0 is no code.
const trie = (() => {
  const children: number[] = [0, 0];
  let nodes = 1;
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const code = HUFFMAN_CODES[symbol];
    const length = HUFFMAN_LENGTHS[symbol];
    let node = 0;
    for (let bit = length - 1; bit > 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      if (children[slot] === 0) {
        children[slot] = nodes++;
        children.push(0, 0);
      }
      node = children[slot];
    }
    children[2 * node + (code & 1)] = -(symbol + 1);
  }
  return Int32Array.from(children);
})();

/**
 * The bytes that Huffman-coded `input` stands for.
 *
 * @example
 * ```ts
 * // RFC 7541 C.4.1: "www.example.com"
 * huffmanDecode(Uint8Array.from([0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff]));
 * ```
 */
export function huffmanDecode(input: Uint8Array): Uint8Array {
  // Every symbol is at least 5 bits long, so the output is at most 8/5 of the input.
  const output = new Uint8Array(Math.ceil((input.length * 8) / 5));
  let written = 0;
  let node = 0;
  let depth = 0;
  let allOnes = true;
  for (const byte of input) {
    for (let bit = 7; bit >= 0; bit--) {
      const one = (byte >>> bit) & 1;
      const child = trie[2 * node + one];
      depth++;
      allOnes &&= one === 1;
      if (child < 0) {
        const symbol = -child - 1;
        if (symbol === EOS) throw new HuffmanError("the EOS symbol inside a Huffman-coded string");
        output[written++] = symbol;
        node = 0;
        depth = 0;
        allOnes = true;
      } else if (child === 0) {
        throw new HuffmanError("bits that are no Huffman code");
      } else {
        node = child;
      }
    }
  }
  if (depth > 7) throw new HuffmanError("Huffman padding longer than 7 bits");
  if (!allOnes) throw new HuffmanError("Huffman padding that is not all ones");
  return output.subarray(0, written);
}
