/**
 * What the parts built on remoting (membership, the shard region, the
 * coordinator and its client) need of it: tell, ask, and an inbound handler.
 * `remoting.ts` is the transport over TCP; `memory_transport.ts` its twin
 * over a simulated network, on which the simulations run the real parts.
 *
 * @module
 */
import type { Body } from "./body.ts";
import type { NodeId } from "./node.ts";

export type { Body };

/** A message that arrived, with the verified identity of its sender. */
export interface Inbound {
  readonly from: NodeId;
  readonly body: Body;
}

/**
 * Handles an inbound message. For a request, the returned body is the reply
 * (a thrown error becomes a `failure` reply, with its refusal code when it
 * is a `RemotingError`); for a tell it is ignored.
 */
export type InboundHandler = (message: Inbound, isRequest: boolean) => Body | undefined | Promise<Body | undefined>;

/**
 * Whom a message is for: an incarnation ({@linkcode NodeId}), which must be
 * the one listening there, or a bare `host:port` when any will do (membership
 * messages, which check incarnations themselves).
 */
export type Target = NodeId | string;

/** One node's end of the cluster's messaging. */
export interface Transport {
  /** This node's id. */
  readonly self: NodeId;
  /** Asks sent and not yet answered, failed or timed out. */
  readonly pendingAsks: number;
  /** Sends without waiting for anything; a message that cannot go is dropped. */
  tell(target: Target, body: Body): void;
  /** Sends a request and resolves with the reply; rejects with `RemotingError` (a refusal carries its code). */
  ask(target: Target, body: Body, timeoutMs: number): Promise<Inbound>;
  /** Resolves once what is queued has gone out (before exiting). */
  flush(): Promise<void>;
  /** Stops: nothing more is sent or received. */
  close(): void;
}

/** Makes a node's transport, given what handles its inbound messages. */
export type TransportFactory = (handler: InboundHandler) => Transport;
