/**
 * Node-to-node messaging over TCP: one listener per node, one outbound
 * connection per peer (reused, re-opened with backoff), length-prefixed
 * protobuf envelopes (`frame.ts`, `proto/cluster.proto`), fire-and-forget
 * `tell` and request/response `ask` with correlation ids and timeouts.
 *
 * Every connection starts with a handshake: the accepting side sends a
 * challenge, the connecting side answers with its cluster name, protocol
 * version, address and uid (and, with a shared secret, an HMAC proof), and the
 * accepting side says yes or no with a reason. A peer that breaks the framing
 * or sends garbage loses its connection, with a log line; the node carries on.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { type Envelope, EnvelopeSchema, FailureSchema } from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";
import { encodeFrame, FrameDecoder, FrameError, MAX_FRAME_BYTES } from "./frame.ts";
import { nodeFromProto, type NodeId, nodeToProto, splitAddress } from "./node.ts";

const log = getLogger(["usershard", "remoting"]);

/** A handshake is a few hundred bytes; an unauthenticated peer may not make a node buffer more. */
const MAX_HANDSHAKE_BYTES = 64 * 1024;

/** Bumped whenever the envelope changes incompatibly; peers must agree. */
export const PROTOCOL_VERSION = 1;

/** The message part of an envelope (everything but the handshake). */
export type Body = Envelope["body"];

/** A message that arrived, with the verified identity of its sender. */
export interface Inbound {
  readonly from: NodeId;
  readonly body: Body;
}

/**
 * Handles an inbound message. For a request, the returned body is the reply
 * (a thrown error becomes a `failure` reply); for a tell it is ignored.
 */
export type InboundHandler = (message: Inbound, isRequest: boolean) => Body | undefined | Promise<Body | undefined>;

/** How this node's remoting is set up. */
export interface RemotingConfig {
  readonly self: NodeId;
  /** Address to bind; `self.address` is what peers are told. */
  readonly bindHost: string;
  readonly bindPort: number;
  readonly clusterName: string;
  /** When set, peers must prove they know it. */
  readonly secret?: string;
  readonly connectTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** Longest wait between reconnection attempts to a peer that keeps failing. */
  readonly maxBackoffMs?: number;
}

/** An ask that failed: no connection, timed out, or the peer answered with a failure. */
export class RemotingError extends Error {
  override name = "RemotingError";
}

/**
 * `promise`, or a {@linkcode RemotingError} saying `what` took too long once
 * `ms` have passed, whichever comes first. For one caller's deadline on work
 * that others may share.
 */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new RemotingError(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** The listening port is taken, or the address cannot be bound. */
export class BindError extends Error {
  override name = "BindError";
}

const MAX_QUEUED_BYTES = 64 * 1024 * 1024;
const WRITE_CHUNK_BYTES = 256 * 1024;
const encoder = new TextEncoder();

/** One TCP connection carrying frames: a write queue that respects backpressure, and a read loop. */
class Link {
  readonly #conn: Deno.TcpConn;
  // Before the peer has proved who it is, it gets no more memory than a handshake needs.
  #decoder = new FrameDecoder(MAX_HANDSHAKE_BYTES);
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #flushing: Promise<void> | undefined;
  #closed = false;
  readonly closed: Promise<void>;
  readonly #markClosed: () => void;
  readonly description: string;

  constructor(conn: Deno.TcpConn, description: string) {
    this.#conn = conn;
    this.description = description;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.closed = promise;
    this.#markClosed = resolve;
    try {
      conn.setNoDelay(true);
    } catch {
      // Not every platform lets us; latency suffers a little, nothing breaks.
    }
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  send(envelope: Envelope): void {
    if (this.#closed) throw new RemotingError(`connection to ${this.description} is closed`);
    const frame = encodeFrame(toBinary(EnvelopeSchema, envelope));
    if (this.#queuedBytes + frame.length > MAX_QUEUED_BYTES) {
      this.close(`more than ${MAX_QUEUED_BYTES} bytes queued: the peer does not read`);
      throw new RemotingError(`connection to ${this.description} is overloaded`);
    }
    this.#queue.push(frame);
    this.#queuedBytes += frame.length;
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
          onEnvelope(fromBinary(EnvelopeSchema, frame));
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

interface Pending {
  readonly resolve: (inbound: Inbound) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  readonly address: string;
}

interface Peer {
  link?: Link;
  connecting?: Promise<Link>;
  node?: NodeId;
  failures: number;
  retryAt: number;
}

/** This node's end of the cluster's TCP mesh. */
export class Remoting {
  readonly #config: Required<Omit<RemotingConfig, "secret">> & { secret?: string };
  readonly #listener: Deno.TcpListener;
  readonly #handler: InboundHandler;
  readonly #peers = new Map<string, Peer>();
  readonly #inbound = new Set<Link>();
  readonly #pending = new Map<number, Pending>();
  #nextCorrelation = 1;
  #key: Promise<CryptoKey> | undefined;
  #closed = false;

  private constructor(config: RemotingConfig, listener: Deno.TcpListener, handler: InboundHandler) {
    this.#config = {
      connectTimeoutMs: 3000,
      handshakeTimeoutMs: 3000,
      maxBackoffMs: 5000,
      ...config,
    };
    this.#listener = listener;
    this.#handler = handler;
    if (config.secret) {
      this.#key = crypto.subtle.importKey(
        "raw",
        encoder.encode(config.secret),
        { name: "HMAC", hash: "SHA-256" },
        false,
        ["sign", "verify"],
      );
    }
    this.#acceptLoop();
  }

  /** Binds the listener and starts accepting peers. */
  static start(config: RemotingConfig, handler: InboundHandler): Remoting {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: config.bindHost, port: config.bindPort });
    } catch (error) {
      const where = `${config.bindHost}:${config.bindPort}`;
      if (error instanceof Deno.errors.AddrInUse) throw new BindError(`remoting port ${where} is already in use`);
      throw new BindError(`cannot listen for remoting on ${where}: ${errorText(error)}`);
    }
    return new Remoting(config, listener, handler);
  }

  /** This node's id. */
  get self(): NodeId {
    return this.#config.self;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const remote = conn.remoteAddr as Deno.NetAddr;
        this.#serve(new Link(conn, `from ${remote.hostname}:${remote.port}`));
      }
    } catch (error) {
      if (!this.#closed) log.error("remoting listener failed: {error}", { error: errorText(error) });
    }
  }

  async #serve(link: Link): Promise<void> {
    this.#inbound.add(link);
    link.closed.then(() => this.#inbound.delete(link));
    let peer: NodeId;
    try {
      const nonce = crypto.getRandomValues(new Uint8Array(16));
      link.send(create(EnvelopeSchema, { body: { case: "challenge", value: { nonce } } }));
      const first = await link.readOne(this.#config.handshakeTimeoutMs);
      if (first.body.case !== "handshake") {
        throw new RemotingError(`expected a handshake, got ${first.body.case ?? "an empty envelope"}`);
      }
      const hello = first.body.value;
      const from = hello.from;
      const claimed = from ? `${from.address}` : "no address";
      const refusal = await this.#refusal(hello.clusterName, hello.protocolVersion, nonce, hello.proof, from);
      if (refusal) {
        link.send(
          create(EnvelopeSchema, { body: { case: "handshakeAck", value: { accepted: false, reason: refusal } } }),
        );
        await link.drain();
        link.close(`refused ${claimed}: ${refusal}`);
        return;
      }
      peer = nodeFromProto(from);
      const proof = await this.#prove(hello.nonce, this.#config.self);
      link.send(create(EnvelopeSchema, {
        body: { case: "handshakeAck", value: { accepted: true, from: nodeToProto(this.#config.self), proof } },
      }));
    } catch (error) {
      link.close(`handshake failed: ${errorText(error)}`);
      return;
    }
    await link.readEnvelopes((envelope) => this.#dispatch(link, peer, envelope));
  }

  async #refusal(
    clusterName: string,
    version: number,
    nonce: Uint8Array,
    proof: Uint8Array,
    from: { address: string; uid: bigint } | undefined,
  ): Promise<string | undefined> {
    if (clusterName !== this.#config.clusterName) {
      return `cluster name '${clusterName}' differs from '${this.#config.clusterName}'`;
    }
    if (version !== PROTOCOL_VERSION) return `protocol version ${version} differs from ${PROTOCOL_VERSION}`;
    if (!from || !/^.+:\d+$/.test(from.address)) return "no valid sender address";
    if (this.#key) {
      const expected = await this.#prove(nonce, { address: from.address, uid: Number(from.uid) });
      if (!equalBytes(expected, proof)) return "the shared secret does not match";
    }
    return undefined;
  }

  async #prove(nonce: Uint8Array, node: NodeId): Promise<Uint8Array> {
    if (!this.#key) return new Uint8Array();
    const text = encoder.encode(`${this.#config.clusterName}\n${node.address}\n${node.uid}`);
    const data = new Uint8Array(nonce.length + text.length);
    data.set(nonce);
    data.set(text, nonce.length);
    return new Uint8Array(await crypto.subtle.sign("HMAC", await this.#key, data));
  }

  #dispatch(link: Link, from: NodeId, envelope: Envelope): void {
    if (envelope.reply) {
      const pending = this.#pending.get(envelope.correlationId);
      if (!pending) return; // the asker gave up already
      this.#pending.delete(envelope.correlationId);
      clearTimeout(pending.timer);
      if (envelope.body.case === "failure") pending.reject(new RemotingError(envelope.body.value.message));
      else pending.resolve({ from, body: envelope.body });
      return;
    }
    const isRequest = envelope.correlationId !== 0;
    const answer = (body: Body) => {
      if (!isRequest || link.isClosed) return;
      link.send(create(EnvelopeSchema, { correlationId: envelope.correlationId, reply: true, body }));
    };
    const fail = (error: unknown) =>
      answer({ case: "failure", value: create(FailureSchema, { message: errorText(error) }) });
    try {
      const result = this.#handler({ from, body: envelope.body }, isRequest);
      if (result instanceof Promise) {
        result.then((body) => body ? answer(body) : fail("no reply"), fail).catch((error) =>
          log.warn("could not answer {kind} from {from}: {error}", {
            kind: envelope.body.case,
            from: from.address,
            error: errorText(error),
          })
        );
      } else if (isRequest) {
        result ? answer(result) : fail("no reply");
      }
    } catch (error) {
      if (isRequest) fail(error);
      else {log.warn("handling {kind} from {from} failed: {error}", {
          kind: envelope.body.case,
          from: from.address,
          error: errorText(error),
        });}
    }
  }

  #peer(address: string): Peer {
    let peer = this.#peers.get(address);
    if (!peer) {
      peer = { failures: 0, retryAt: 0 };
      this.#peers.set(address, peer);
    }
    return peer;
  }

  #link(address: string): Promise<Link> {
    if (this.#closed) return Promise.reject(new RemotingError("remoting is shut down"));
    const peer = this.#peer(address);
    if (peer.link && !peer.link.isClosed) return Promise.resolve(peer.link);
    if (peer.connecting) return peer.connecting;
    const wait = peer.retryAt - Date.now();
    if (wait > 0) return Promise.reject(new RemotingError(`${address} is unreachable (next attempt in ${wait} ms)`));
    peer.connecting = this.#connect(address).then(
      (link) => {
        peer.link = link;
        peer.failures = 0;
        peer.connecting = undefined;
        link.closed.then(() => this.#lost(address, link));
        return link;
      },
      (error) => {
        peer.connecting = undefined;
        peer.failures++;
        peer.retryAt = Date.now() + Math.min(this.#config.maxBackoffMs, 100 * 2 ** Math.min(peer.failures, 10));
        log.debug("cannot connect to {address}: {error}", { address, error: errorText(error) });
        throw error instanceof RemotingError
          ? error
          : new RemotingError(`cannot connect to ${address}: ${errorText(error)}`);
      },
    );
    return peer.connecting;
  }

  async #connect(address: string): Promise<Link> {
    const { host, port } = splitAddress(address);
    const timeout = this.#config.connectTimeoutMs;
    const connecting = Deno.connect({ hostname: host, port });
    const conn = await within(connecting, timeout, `connecting to ${address}`).catch((error) => {
      // A connection that opens after we gave up must not linger.
      connecting.then((late) => late.close(), () => {});
      throw error;
    });
    const link = new Link(conn, `to ${address}`);
    try {
      const challenge = await link.readOne(this.#config.handshakeTimeoutMs);
      if (challenge.body.case !== "challenge") throw new RemotingError(`${address} did not send a challenge`);
      const nonce = crypto.getRandomValues(new Uint8Array(16));
      link.send(create(EnvelopeSchema, {
        body: {
          case: "handshake",
          value: {
            clusterName: this.#config.clusterName,
            protocolVersion: PROTOCOL_VERSION,
            from: nodeToProto(this.#config.self),
            proof: await this.#prove(challenge.body.value.nonce, this.#config.self),
            nonce,
          },
        },
      }));
      const ack = await link.readOne(this.#config.handshakeTimeoutMs);
      if (ack.body.case !== "handshakeAck") throw new RemotingError(`${address} did not answer the handshake`);
      if (!ack.body.value.accepted) {
        log.warn("{address} refused this node: {reason}", { address, reason: ack.body.value.reason });
        throw new RemotingError(`${address} refused the connection: ${ack.body.value.reason}`);
      }
      const server = ack.body.value.from;
      if (!server) throw new RemotingError(`${address} did not say who it is`);
      const node = nodeFromProto(server);
      if (this.#key && !equalBytes(await this.#prove(nonce, node), ack.body.value.proof)) {
        throw new RemotingError(`${address} could not prove it knows the shared secret`);
      }
      this.#peer(address).node = node;
      link.readEnvelopes((envelope) => this.#dispatch(link, node, envelope));
      return link;
    } catch (error) {
      link.close();
      throw error;
    }
  }

  #lost(address: string, link: Link): void {
    const peer = this.#peers.get(address);
    if (peer?.link === link) peer.link = undefined;
    for (const [id, pending] of this.#pending) {
      if (pending.address !== address) continue;
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new RemotingError(`connection to ${address} was lost`));
    }
  }

  /** Sends `body` to the node at `address` without waiting for an answer; dropped if it cannot be sent. */
  tell(address: string, body: Body): void {
    if (address === this.#config.self.address) {
      this.#toSelf(body, false).catch(() => {});
      return;
    }
    this.#link(address).then(
      (link) => {
        try {
          link.send(create(EnvelopeSchema, { body }));
        } catch (error) {
          log.debug("dropped {kind} to {address}: {error}", { kind: body.case, address, error: errorText(error) });
        }
      },
      () => {},
    );
  }

  /** Sends a request and resolves with the reply; rejects with {@linkcode RemotingError}. */
  async ask(address: string, body: Body, timeoutMs: number): Promise<Inbound> {
    if (address === this.#config.self.address) {
      const reply = await this.#toSelf(body, true);
      if (!reply) throw new RemotingError(`no reply to ${body.case}`);
      if (reply.case === "failure") throw new RemotingError(reply.value.message);
      return { from: this.#config.self, body: reply };
    }
    const deadline = Date.now() + timeoutMs;
    // Connecting and the handshake count against the asker's time too.
    const link = await within(this.#link(address), timeoutMs, `connecting to ${address}`);
    const id = this.#nextCorrelation;
    this.#nextCorrelation = this.#nextCorrelation >= 0xffffffff ? 1 : this.#nextCorrelation + 1;
    const { promise, resolve, reject } = Promise.withResolvers<Inbound>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      reject(new RemotingError(`${address} did not answer ${body.case} within ${timeoutMs} ms`));
    }, Math.max(1, deadline - Date.now()));
    this.#pending.set(id, { resolve, reject, timer, address });
    try {
      link.send(create(EnvelopeSchema, { correlationId: id, body }));
    } catch (error) {
      this.#pending.delete(id);
      clearTimeout(timer);
      throw error;
    }
    return promise;
  }

  // A message to this node itself skips the network (and the encoding).
  async #toSelf(body: Body, isRequest: boolean): Promise<Body | undefined> {
    try {
      return await this.#handler({ from: this.#config.self, body }, isRequest);
    } catch (error) {
      if (!isRequest) throw error;
      return { case: "failure", value: create(FailureSchema, { message: errorText(error) }) };
    }
  }

  /**
   * Waits until everything queued has been written (before exiting), on
   * outbound connections and on inbound ones, where replies travel.
   */
  async flush(): Promise<void> {
    await Promise.all([...[...this.#peers.values()].map((p) => p.link), ...this.#inbound].map((link) => link?.drain()));
  }

  /** Stops listening and closes every connection. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#listener.close();
    } catch {
      // Already closed.
    }
    for (const peer of this.#peers.values()) peer.link?.close();
    for (const link of this.#inbound) link.close();
  }
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
