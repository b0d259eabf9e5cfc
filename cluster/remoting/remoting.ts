/**
 * Node-to-node messaging over TCP: one listener per node, one outbound
 * connection per peer (reused, re-opened with backoff), protobuf envelopes
 * over `link.ts`, fire-and-forget `tell` and request/response `ask` with
 * correlation ids and timeouts.
 *
 * Every connection starts with a handshake: the accepting side sends a
 * challenge, the connecting side answers with its cluster name, protocol
 * version, address, uid and the address it dialled (and, with a shared
 * secret, a proof of it, `handshake.ts`), and the accepting side says yes or
 * no with a reason. With a secret, every later frame is authenticated too.
 *
 * Work is addressed to an incarnation, not just an address: an envelope sent
 * to a {@linkcode NodeId} carries its uid, and a node refuses one meant for
 * another incarnation (a node restarted at the same port must not take work
 * meant for its previous life). A reply counts only on the connection its
 * request went out on.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { getLogger } from "@logtape/logtape";
import { type Envelope, EnvelopeSchema, type Failure } from "../../proto/gen/cluster_pb.ts";
import { errorText } from "../error_text.ts";
import { BindError, failureError, failureOf, Refusal, RemotingError, within } from "./errors.ts";
import { FrameSeal, helloProof, NONCE_BYTES, sameBytes, welcomeProof } from "./handshake.ts";
import { Link, MAX_QUEUED_BYTES } from "./link.ts";
import { nodeFromProto, type NodeId, nodeKey, nodeToProto, splitAddress } from "./node.ts";
import type { Body, Inbound, InboundHandler, Target, Transport } from "./transport.ts";
import { fromWire, replyOf, toWire } from "./body.ts";

const log = getLogger(["usershard", "remoting"]);

/** Bumped whenever the envelope changes incompatibly; peers must agree. */
export const PROTOCOL_VERSION = 3;

/** Hears of every frame after a handshake (the node's metrics). */
export interface RemotingObserver {
  /** A frame of `bytes` (on the wire) to or from the peer at `peer` (`host:port`). */
  frame(peer: string, direction: "in" | "out", bytes: number): void;
}

/** How this node's remoting is set up. */
export interface RemotingConfig {
  readonly self: NodeId;
  /** Address to bind; `self.address` is what peers are told. */
  readonly bindHost: string;
  readonly bindPort: number;
  readonly clusterName: string;
  /** When set, peers must prove they know it, and every frame is authenticated. */
  readonly secret?: string;
  readonly connectTimeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** Longest wait between reconnection attempts to a peer that keeps failing. */
  readonly maxBackoffMs?: number;
  /** Bytes queued for a peer that does not read before its connection is closed. */
  readonly maxQueuedBytes?: number;
  readonly observer?: RemotingObserver;
}

interface Pending {
  readonly resolve: (inbound: Inbound) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
  readonly link: Link;
}

interface Peer {
  link?: Link;
  connecting?: Promise<Link>;
  /** The incarnation at the other end of `link`, as its handshake proved. */
  node?: NodeId;
  failures: number;
  retryAt: number;
}

/** This node's end of the cluster's TCP mesh. */
export class Remoting implements Transport {
  readonly #config: Required<Omit<RemotingConfig, "secret" | "observer">> & Pick<RemotingConfig, "secret" | "observer">;
  readonly #listener: Deno.TcpListener;
  readonly #handler: InboundHandler;
  readonly #peers = new Map<string, Peer>();
  readonly #inbound = new Set<Link>();
  readonly #pending = new Map<number, Pending>();
  #nextCorrelation = 1;
  #closed = false;

  private constructor(config: RemotingConfig, listener: Deno.TcpListener, handler: InboundHandler) {
    this.#config = {
      connectTimeoutMs: 3000,
      handshakeTimeoutMs: 3000,
      maxBackoffMs: 5000,
      maxQueuedBytes: MAX_QUEUED_BYTES,
      ...config,
      secret: config.secret || undefined,
    };
    this.#listener = listener;
    this.#handler = handler;
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

  /** Asks sent to other nodes and not yet answered, failed or timed out. */
  get pendingAsks(): number {
    return this.#pending.size;
  }

  async #acceptLoop(): Promise<void> {
    try {
      for await (const conn of this.#listener) {
        const remote = conn.remoteAddr as Deno.NetAddr;
        this.#serve(new Link(conn, `from ${remote.hostname}:${remote.port}`, this.#config.maxQueuedBytes));
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
      const challenge = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      link.send(create(EnvelopeSchema, { body: { case: "challenge", value: { nonce: challenge } } }));
      const first = await link.readOne(this.#config.handshakeTimeoutMs);
      if (first.body.case !== "handshake") {
        throw new RemotingError(`expected a handshake, got ${first.body.case ?? "an empty envelope"}`);
      }
      const hello = first.body.value;
      const refusal = this.#refusal(hello, challenge);
      if (refusal) {
        link.send(
          create(EnvelopeSchema, { body: { case: "handshakeAck", value: { accepted: false, reason: refusal } } }),
        );
        await link.drain();
        link.close(`refused ${hello.from?.address || "a peer with no address"}: ${refusal}`);
        return;
      }
      peer = nodeFromProto(hello.from);
      const { secret, clusterName, self } = this.#config;
      link.send(create(EnvelopeSchema, {
        body: {
          case: "handshakeAck",
          value: {
            accepted: true,
            from: nodeToProto(self),
            proof: secret ? welcomeProof(secret, hello.nonce, clusterName, self, peer) : new Uint8Array(),
          },
        },
      }));
      if (secret) {
        link.authenticate(
          new FrameSeal({ secret, challenge, nonce: hello.nonce, client: peer, server: self, end: "accepting" }),
        );
      }
    } catch (error) {
      link.close(`handshake failed: ${errorText(error)}`);
      return;
    }
    this.#meter(link, peer.address);
    this.#connectedFrom(peer.address);
    await link.readEnvelopes((envelope) => this.#dispatch(link, peer, envelope));
  }

  #refusal(
    hello: Extract<Envelope["body"], { case: "handshake" }>["value"],
    challenge: Uint8Array,
  ): string | undefined {
    const { clusterName, self, secret } = this.#config;
    if (hello.clusterName !== clusterName) {
      return `cluster name '${hello.clusterName}' differs from '${clusterName}'`;
    }
    if (hello.protocolVersion !== PROTOCOL_VERSION) {
      return `protocol version ${hello.protocolVersion} differs from ${PROTOCOL_VERSION}`;
    }
    const from = hello.from;
    if (!from || !/^.+:\d+$/.test(from.address)) return "no valid sender address";
    if (secret) {
      const claimed = { address: from.address, uid: Number(from.uid) };
      const expected = helloProof(secret, challenge, clusterName, claimed, hello.toAddress);
      if (!sameBytes(expected, hello.proof)) return "the shared secret does not match";
      // The proof names the node the peer meant to reach: a handshake relayed here from another node fails.
      if (hello.toAddress !== self.address) return `the handshake was meant for ${hello.toAddress}, not this node`;
    }
    return undefined;
  }

  #dispatch(link: Link, from: NodeId, envelope: Envelope): void {
    if (envelope.reply) {
      const pending = this.#pending.get(envelope.correlationId);
      // Gone (the asker gave up), or a reply on another connection than the request went out on.
      if (!pending || pending.link !== link) return;
      this.#pending.delete(envelope.correlationId);
      clearTimeout(pending.timer);
      const reply = replyOf(from, envelope.body);
      if (reply instanceof RemotingError) pending.reject(reply);
      else pending.resolve(reply);
      return;
    }
    const isRequest = envelope.correlationId !== 0;
    const reply = (body: Envelope["body"]) => {
      if (!isRequest || link.isClosed) return;
      link.send(create(EnvelopeSchema, { correlationId: envelope.correlationId, reply: true, body }));
    };
    const answer = (body: Body) => reply(toWire(body));
    const fail = (error: unknown) => reply({ case: "failure", value: failureOf(error) });
    const self = this.#config.self;
    const body = fromWire(envelope.body);
    // Named by its own kind, not by its layer's set.
    const kind = body?.case ?? envelope.body.case ?? "an empty message";
    if (envelope.toUid !== 0n && envelope.toUid !== BigInt(self.uid)) {
      const refusal = `${self.address} is incarnation ${self.uid}, not ${envelope.toUid}: ` +
        `${kind} was meant for a previous life of this node`;
      log.debug("refused {kind} from {from}: {refusal}", { kind, from: from.address, refusal });
      fail(new RemotingError(refusal, Refusal.WRONG_INCARNATION));
      return;
    }
    if (!body) {
      fail(new RemotingError(`${envelope.body.case ?? "an empty message"} is no message of a layer this node knows`));
      return;
    }
    try {
      const result = this.#handler({ from, body }, isRequest);
      if (result instanceof Promise) {
        result.then((body) => body ? answer(body) : fail("no reply"), fail).catch((error) =>
          log.warn("could not answer {kind} from {from}: {error}", {
            kind,
            from: from.address,
            error: errorText(error),
          })
        );
      } else if (isRequest) {
        result ? answer(result) : fail("no reply");
      }
    } catch (error) {
      if (isRequest) fail(error);
      else {
        log.warn("handling {kind} from {from} failed: {error}", {
          kind,
          from: from.address,
          error: errorText(error),
        });
      }
    }
  }

  /**
   * A peer at `address` has just connected here, so it is up: what is sent to
   * it goes out now, not after the backoff that its previous life (killed,
   * restarted at the same address) earned. Else a restarted seed's "are you
   * in a cluster?" is answered only once that backoff ends, after it has
   * formed a cluster of its own.
   */
  #connectedFrom(address: string): void {
    const peer = this.#peers.get(address);
    if (!peer || peer.connecting || (peer.link && !peer.link.isClosed)) return;
    peer.failures = 0;
    peer.retryAt = 0;
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
      ({ link, node }) => {
        if (this.#closed) {
          // Shut down while the handshake ran: nothing may go out on it any more.
          link.close();
          throw new RemotingError("remoting is shut down");
        }
        peer.link = link;
        peer.node = node;
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

  async #connect(address: string): Promise<{ link: Link; node: NodeId }> {
    const { host, port } = splitAddress(address);
    const { connectTimeoutMs, handshakeTimeoutMs, clusterName, secret, self } = this.#config;
    const connecting = Deno.connect({ hostname: host, port });
    const conn = await within(connecting, connectTimeoutMs, `connecting to ${address}`).catch((error) => {
      // A connection that opens after we gave up must not linger.
      connecting.then((late) => late.close(), () => {});
      throw error;
    });
    const link = new Link(conn, `to ${address}`, this.#config.maxQueuedBytes);
    try {
      const challenge = await link.readOne(handshakeTimeoutMs);
      if (challenge.body.case !== "challenge") throw new RemotingError(`${address} did not send a challenge`);
      const theirs = challenge.body.value.nonce;
      const nonce = crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
      link.send(create(EnvelopeSchema, {
        body: {
          case: "handshake",
          value: {
            clusterName,
            protocolVersion: PROTOCOL_VERSION,
            from: nodeToProto(self),
            proof: secret ? helloProof(secret, theirs, clusterName, self, address) : new Uint8Array(),
            nonce,
            toAddress: address,
          },
        },
      }));
      const ack = await link.readOne(handshakeTimeoutMs);
      if (ack.body.case !== "handshakeAck") throw new RemotingError(`${address} did not answer the handshake`);
      if (!ack.body.value.accepted) {
        log.warn("{address} refused this node: {reason}", { address, reason: ack.body.value.reason });
        throw new RemotingError(`${address} refused the connection: ${ack.body.value.reason}`);
      }
      const server = ack.body.value.from;
      if (!server) throw new RemotingError(`${address} did not say who it is`);
      const node = nodeFromProto(server);
      if (secret) {
        if (!sameBytes(welcomeProof(secret, nonce, clusterName, node, self), ack.body.value.proof)) {
          throw new RemotingError(`${address} could not prove it knows the shared secret`);
        }
        link.authenticate(
          new FrameSeal({ secret, challenge: theirs, nonce, client: self, server: node, end: "connecting" }),
        );
      }
      this.#meter(link, address);
      link.readEnvelopes((envelope) => this.#dispatch(link, node, envelope));
      return { link, node };
    } catch (error) {
      link.close();
      throw error;
    }
  }

  #meter(link: Link, peer: string): void {
    const observer = this.#config.observer;
    if (observer) link.meter((direction, bytes) => observer.frame(peer, direction, bytes));
  }

  #lost(address: string, link: Link): void {
    const peer = this.#peers.get(address);
    if (peer?.link === link) {
      peer.link = undefined;
      peer.node = undefined;
    }
    for (const [id, pending] of this.#pending) {
      if (pending.link !== link) continue;
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new RemotingError(`connection to ${address} was lost`));
    }
  }

  /** A connection to `target`, refused when another incarnation than the one meant answers there. */
  async #linkTo(target: Target): Promise<Link> {
    const address = typeof target === "string" ? target : target.address;
    let link = await this.#link(address);
    let node = this.#peers.get(address)?.node;
    if (typeof target !== "string" && node && node.uid < target.uid) {
      // A newer incarnation is meant: this connection is to one that died without closing it (no FIN
      // from a crashed host), which TCP could take minutes to notice.
      link.close(`${address} restarted as incarnation ${target.uid}; reconnecting`);
      link = await this.#link(address);
      node = this.#peers.get(address)?.node;
    }
    if (typeof target !== "string" && node && node.uid !== target.uid) {
      throw new RemotingError(`${address} is now incarnation ${node.uid}, not ${target.uid}`);
    }
    return link;
  }

  /** Sends `body` to `target` without waiting for an answer; dropped if it cannot be sent. */
  tell(target: Target, body: Body): void {
    if (this.#isSelf(target)) {
      this.#toSelf(target, body, false).catch(() => {});
      return;
    }
    this.#linkTo(target).then(
      (link) => {
        try {
          link.send(create(EnvelopeSchema, { toUid: uidOf(target), body: toWire(body) }));
        } catch (error) {
          log.debug("dropped {kind} to {target}: {error}", {
            kind: body.case,
            target: describe(target),
            error: errorText(error),
          });
        }
      },
      () => {},
    );
  }

  /** Sends a request and resolves with the reply; rejects with {@linkcode RemotingError}. */
  async ask(target: Target, body: Body, timeoutMs: number): Promise<Inbound> {
    if (this.#isSelf(target)) {
      const reply = await this.#toSelf(target, body, true);
      if (!reply) throw new RemotingError(`no reply to ${body.case}`);
      if ("failure" in reply) throw failureError(reply.failure);
      return { from: this.#config.self, body: reply };
    }
    const deadline = Date.now() + timeoutMs;
    const address = describe(target);
    // Connecting and the handshake count against the asker's time too.
    const link = await within(this.#linkTo(target), timeoutMs, `connecting to ${address}`);
    const id = this.#nextCorrelation;
    this.#nextCorrelation = this.#nextCorrelation >= 0xffffffff ? 1 : this.#nextCorrelation + 1;
    const { promise, resolve, reject } = Promise.withResolvers<Inbound>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      reject(new RemotingError(`${address} did not answer ${body.case} within ${timeoutMs} ms`));
    }, Math.max(1, deadline - Date.now()));
    this.#pending.set(id, { resolve, reject, timer, link });
    try {
      link.send(create(EnvelopeSchema, { correlationId: id, toUid: uidOf(target), body: toWire(body) }));
    } catch (error) {
      this.#pending.delete(id);
      clearTimeout(timer);
      throw error;
    }
    return promise;
  }

  #isSelf(target: Target): boolean {
    return (typeof target === "string" ? target : target.address) === this.#config.self.address;
  }

  // A message to this node itself skips the network (and the encoding), not the incarnation check.
  async #toSelf(target: Target, body: Body, isRequest: boolean): Promise<Body | { failure: Failure } | undefined> {
    try {
      if (typeof target !== "string" && target.uid !== this.#config.self.uid) {
        throw new RemotingError(
          `${body.case} was meant for ${nodeKey(target)}, a previous life of this node`,
          Refusal.WRONG_INCARNATION,
        );
      }
      return await this.#handler({ from: this.#config.self, body }, isRequest);
    } catch (error) {
      if (!isRequest) throw error;
      return { failure: failureOf(error) };
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

function uidOf(target: Target): bigint {
  return typeof target === "string" ? 0n : BigInt(target.uid);
}

function describe(target: Target): string {
  return typeof target === "string" ? target : target.address;
}
