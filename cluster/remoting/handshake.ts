/**
 * The cryptography of a remoting connection with a shared secret, pure and
 * synchronous: the proofs each side gives in the handshake, and the per-frame
 * tags that authenticate everything after it.
 *
 * - The connecting side proves it knows the secret for the accepting side's
 *   fresh nonce and for the address it dialled, so a recorded handshake
 *   cannot be replayed and a relayed one fails at any other node.
 * - The accepting side proves the same for the connecting side's nonce.
 * - Both derive a session key from the secret, both nonces and both node ids.
 *   Every later frame carries HMAC-SHA256(session key, direction, sequence,
 *   envelope): a frame altered, replayed, reordered, or moved to another
 *   connection fails its tag, and the connection is closed.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from "node:crypto";
import { type NodeId, nodeKey } from "./node.ts";

/** Bytes of the tag at the end of each authenticated frame. */
export const TAG_BYTES = 32;

/** Bytes of each side's handshake nonce. */
export const NONCE_BYTES = 16;

function hmac(key: string | Uint8Array, ...parts: (string | Uint8Array)[]): Uint8Array {
  const mac = createHmac("sha256", key);
  for (const part of parts) {
    // Each part is length-prefixed, so no two different lists hash the same.
    const bytes = typeof part === "string" ? new TextEncoder().encode(part) : part;
    const length = new Uint8Array(4);
    new DataView(length.buffer).setUint32(0, bytes.length);
    mac.update(length);
    mac.update(bytes);
  }
  return new Uint8Array(mac.digest());
}

/** Whether two byte strings are equal, in time that does not depend on where they differ. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The connecting side's proof: it knows `secret`, for this challenge, and meant to reach `dialled`. */
export function helloProof(
  secret: string,
  challenge: Uint8Array,
  clusterName: string,
  from: NodeId,
  dialled: string,
): Uint8Array {
  return hmac(secret, "usershard hello", challenge, clusterName, nodeKey(from), dialled);
}

/** The accepting side's proof, for the connecting side's nonce and identity. */
export function welcomeProof(
  secret: string,
  nonce: Uint8Array,
  clusterName: string,
  from: NodeId,
  client: NodeId,
): Uint8Array {
  return hmac(secret, "usershard welcome", nonce, clusterName, nodeKey(from), nodeKey(client));
}

/** Which end of the connection a {@linkcode FrameSeal} is. */
export type End = "connecting" | "accepting";

/**
 * Tags outgoing frames and checks incoming ones for one connection, keeping
 * a sequence number per direction.
 *
 * @example
 * ```ts
 * const client = { address: "127.0.0.1:2552", uid: 2 };
 * const server = { address: "127.0.0.1:2551", uid: 1 };
 * const keys = { secret: "s", challenge: new Uint8Array(16), nonce: new Uint8Array(16), client, server };
 * const a = new FrameSeal({ ...keys, end: "connecting" });
 * const b = new FrameSeal({ ...keys, end: "accepting" });
 * b.open(a.seal(new Uint8Array([1, 2]))); // Uint8Array [1, 2]
 * ```
 */
export class FrameSeal {
  readonly #key: Uint8Array;
  readonly #out: string;
  readonly #in: string;
  #sent = 0n;
  #received = 0n;

  constructor(o: {
    readonly secret: string;
    /** The accepting side's nonce. */
    readonly challenge: Uint8Array;
    /** The connecting side's nonce. */
    readonly nonce: Uint8Array;
    readonly client: NodeId;
    readonly server: NodeId;
    readonly end: End;
  }) {
    this.#key = hmac(o.secret, "usershard session", o.challenge, o.nonce, nodeKey(o.client), nodeKey(o.server));
    this.#out = o.end === "connecting" ? "to server" : "to client";
    this.#in = o.end === "connecting" ? "to client" : "to server";
  }

  /** `payload` with its tag appended. */
  seal(payload: Uint8Array): Uint8Array {
    const tag = hmac(this.#key, this.#out, sequence(this.#sent++), payload);
    const frame = new Uint8Array(payload.length + TAG_BYTES);
    frame.set(payload);
    frame.set(tag, payload.length);
    return frame;
  }

  /** The payload of a frame whose tag checks out; `undefined` for one that was altered, replayed or reordered. */
  open(frame: Uint8Array): Uint8Array | undefined {
    if (frame.length < TAG_BYTES) return undefined;
    const payload = frame.subarray(0, frame.length - TAG_BYTES);
    const expected = hmac(this.#key, this.#in, sequence(this.#received), payload);
    if (!sameBytes(expected, frame.subarray(frame.length - TAG_BYTES))) return undefined;
    this.#received++;
    return payload;
  }
}

function sequence(n: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, n);
  return bytes;
}
