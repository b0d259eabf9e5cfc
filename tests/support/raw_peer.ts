/**
 * A hand-driven remoting peer for tests: raw TCP, frames and envelopes
 * written and read one by one, so tests can send what no node would.
 *
 * @module
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "../../proto/gen/cluster_pb.ts";
import { encodeFrame, FrameDecoder } from "../../cluster/remoting/frame.ts";
import type { FrameSeal } from "../../cluster/remoting/handshake.ts";

/** Opens a raw TCP connection to a node's remoting port and speaks frames by hand. */
export class RawPeer {
  readonly #decoder = new FrameDecoder();
  #frames: Uint8Array[] = [];
  private constructor(readonly conn: Deno.TcpConn) {}

  /** A peer on a connection accepted by a test's own listener. */
  static of(conn: Deno.TcpConn): RawPeer {
    return new RawPeer(conn);
  }

  static async connect(port: number): Promise<RawPeer> {
    return new RawPeer(await Deno.connect({ hostname: "127.0.0.1", port }));
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length;) at += await this.conn.write(bytes.subarray(at));
  }

  /** Sends an envelope; `seal` tags it as an authenticated connection must. */
  async send(envelope: Envelope, seal?: FrameSeal): Promise<void> {
    const payload = toBinary(EnvelopeSchema, envelope);
    await this.write(encodeFrame(seal ? seal.seal(payload) : payload));
  }

  /** The next frame as it came, or `undefined` when the node closes the connection. */
  async nextFrame(): Promise<Uint8Array | undefined> {
    const buffer = new Uint8Array(4096);
    while (this.#frames.length === 0) {
      const n = await this.conn.read(buffer).catch(() => null);
      if (n === null) return undefined;
      this.#frames.push(...this.#decoder.push(buffer.subarray(0, n)));
    }
    return this.#frames.shift()!;
  }

  /** The next envelope, or `undefined` when the node closes the connection. */
  async next(seal?: FrameSeal): Promise<Envelope | undefined> {
    const frame = await this.nextFrame();
    if (!frame) return undefined;
    const payload = seal ? seal.open(frame) : frame;
    if (!payload) throw new Error("a frame from the node failed its tag");
    return fromBinary(EnvelopeSchema, payload);
  }

  /** Resolves `true` when the node closed the connection. */
  async closedByNode(): Promise<boolean> {
    const buffer = new Uint8Array(1024);
    while (true) {
      const n = await this.conn.read(buffer).catch(() => null);
      if (n === null) return true;
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch {
      // already closed
    }
  }
}
