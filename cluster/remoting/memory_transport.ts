/**
 * The in-memory twin of TCP remoting: a {@linkcode MemoryNetwork} that
 * carries envelopes between {@linkcode Transport}s on timers, so that the
 * simulations run the real parts (membership, the region, the coordinator
 * and its client) under a fake clock. Every envelope is encoded and decoded
 * as on the wire, and the network is as nasty as a seed makes it: it loses,
 * delays (and so reorders) and duplicates messages, cuts links one way,
 * holds a frozen node's messages until it thaws, and lets a node restart at
 * the same address as a new incarnation, to which what was meant for the old
 * one is refused as remoting refuses it.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Envelope, EnvelopeSchema } from "../../proto/gen/cluster_pb.ts";
import { seededRandom } from "../seeded_random.ts";
import { failureOf, Refusal, RemotingError } from "./errors.ts";
import { fromWire, replyOf, toWire } from "./body.ts";
import { type NodeId, nodeKey } from "./node.ts";
import type { Body, Inbound, InboundHandler, Target, Transport, TransportFactory } from "./transport.ts";

/** How the network misbehaves; every field may change while it runs. */
export interface NetworkConditions {
  /** Probability that a message is lost. */
  loss: number;
  /** Probability that a message arrives twice. */
  duplication: number;
  /** Each message takes a uniformly random delay in [`minDelayMs`, `maxDelayMs`]. */
  minDelayMs: number;
  maxDelayMs: number;
}

/** A simulated network between the transports it makes. */
export class MemoryNetwork {
  readonly random: () => number;
  readonly conditions: NetworkConditions;
  /** The transport of the running incarnation at each address. */
  readonly #nodes = new Map<string, MemoryTransport>();
  /** Directed links that drop everything: `from|to`. */
  readonly #cuts = new Set<string>();
  /** Addresses of frozen nodes, and what waits for them to thaw. */
  readonly #frozen = new Map<string, (() => void)[]>();
  /** Messages sent, delivered and dropped, for a simulation's report. */
  readonly counts = { sent: 0, delivered: 0, lost: 0, duplicated: 0 };

  constructor(seed: number, conditions: Partial<NetworkConditions> = {}) {
    this.random = seededRandom(seed);
    this.conditions = { loss: 0, duplication: 0, minDelayMs: 1, maxDelayMs: 5, ...conditions };
  }

  /** The transport of `self`, replacing (as a restart does) any earlier incarnation at its address. */
  transport(self: NodeId): TransportFactory {
    return (handler) => {
      this.#nodes.get(self.address)?.close();
      const transport = new MemoryTransport(this, self, handler);
      this.#nodes.set(self.address, transport);
      return transport;
    };
  }

  /** Drops everything `from` sends to `to` (one way) until {@linkcode heal}. */
  cut(from: string, to: string): void {
    this.#cuts.add(`${from}|${to}`);
  }

  /** Ends the cuts between `a` and `b`, both ways. */
  heal(a: string, b: string): void {
    this.#cuts.delete(`${a}|${b}`);
    this.#cuts.delete(`${b}|${a}`);
  }

  /** Ends every cut. */
  healAll(): void {
    this.#cuts.clear();
  }

  /** Holds what `address` sends and what is sent to it until {@linkcode thaw}, as a stopped process's sockets do. */
  freeze(address: string): void {
    if (!this.#frozen.has(address)) this.#frozen.set(address, []);
  }

  /** Whether the node at `address` is frozen. */
  isFrozen(address: string): boolean {
    return this.#frozen.has(address);
  }

  /** Lets a frozen node's held messages go, in the order they were held. */
  thaw(address: string): void {
    const held = this.#frozen.get(address) ?? [];
    this.#frozen.delete(address);
    for (const release of held) release();
  }

  /**
   * Carries `envelope` from `from` to the node at `to`, after a delay, or
   * drops it; `arrive` runs with the transport there if it gets through.
   */
  carry(
    from: NodeId,
    to: string,
    envelope: Envelope,
    arrive: (there: MemoryTransport, envelope: Envelope) => void,
  ): void {
    this.counts.sent++;
    const bytes = toBinary(EnvelopeSchema, envelope);
    const copies = this.random() < this.conditions.duplication ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    for (let copy = 0; copy < copies; copy++) {
      if (this.random() < this.conditions.loss) {
        this.counts.lost++;
        continue;
      }
      const { minDelayMs, maxDelayMs } = this.conditions;
      const delay = minDelayMs + this.random() * (maxDelayMs - minDelayMs);
      const send = () =>
        setTimeout(() => {
          const deliver = () => {
            if (this.#cuts.has(`${from.address}|${to}`)) return void this.counts.lost++;
            const there = this.#nodes.get(to);
            if (!there || there.closed) return void this.counts.lost++;
            this.counts.delivered++;
            arrive(there, fromBinary(EnvelopeSchema, bytes));
          };
          const held = this.#frozen.get(to);
          if (held) held.push(deliver);
          else deliver();
        }, delay);
      const heldAtSender = this.#frozen.get(from.address);
      if (heldAtSender) heldAtSender.push(send);
      else send();
    }
  }
}

interface Pending {
  readonly resolve: (inbound: Inbound) => void;
  readonly reject: (error: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

/** One node's end of a {@linkcode MemoryNetwork}. */
export class MemoryTransport implements Transport {
  readonly self: NodeId;
  readonly #network: MemoryNetwork;
  readonly #handler: InboundHandler;
  readonly #pending = new Map<number, Pending>();
  #nextCorrelation = 1;
  #closed = false;

  constructor(network: MemoryNetwork, self: NodeId, handler: InboundHandler) {
    this.#network = network;
    this.self = self;
    this.#handler = handler;
  }

  get pendingAsks(): number {
    return this.#pending.size;
  }

  /** Whether this incarnation has stopped (closed, or replaced by a restart). */
  get closed(): boolean {
    return this.#closed;
  }

  tell(target: Target, body: Body): void {
    if (this.#closed) return;
    const envelope = create(EnvelopeSchema, { correlationId: 0, toUid: uidOf(target), body: toWire(body) });
    this.#network.carry(this.self, addressOf(target), envelope, (there, arrived) => there.#receive(this.self, arrived));
  }

  ask(target: Target, body: Body, timeoutMs: number): Promise<Inbound> {
    if (this.#closed) return Promise.reject(new RemotingError("remoting is shut down"));
    if (addressOf(target) === this.self.address) return this.#askSelf(target, body);
    const id = this.#nextCorrelation++;
    const { promise, resolve, reject } = Promise.withResolvers<Inbound>();
    const timer = setTimeout(() => {
      this.#pending.delete(id);
      reject(new RemotingError(`${addressOf(target)} did not answer ${body.case} within ${timeoutMs} ms`));
    }, timeoutMs);
    this.#pending.set(id, { resolve, reject, timer });
    const envelope = create(EnvelopeSchema, { correlationId: id, toUid: uidOf(target), body: toWire(body) });
    this.#network.carry(this.self, addressOf(target), envelope, (there, arrived) => there.#receive(this.self, arrived));
    return promise;
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const pending of this.#pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new RemotingError("remoting is shut down"));
    }
    this.#pending.clear();
  }

  #receive(from: NodeId, envelope: Envelope): void {
    if (this.#closed) return;
    if (envelope.reply) return this.#replied(from, envelope);
    const isRequest = envelope.correlationId !== 0;
    const reply = (body: Envelope["body"]) => {
      if (!isRequest || this.#closed) return;
      const envelopeOut = create(EnvelopeSchema, { correlationId: envelope.correlationId, reply: true, body });
      this.#network.carry(this.self, from.address, envelopeOut, (there, arrived) => there.#receive(this.self, arrived));
    };
    const answer = (body: Body) => reply(toWire(body));
    const fail = (error: unknown) => reply({ case: "failure", value: failureOf(error) });
    if (envelope.toUid !== 0n && envelope.toUid !== BigInt(this.self.uid)) {
      return fail(
        new RemotingError(
          `${this.self.address} is incarnation ${this.self.uid}, not ${envelope.toUid}: ` +
            `${
              fromWire(envelope.body)?.case ?? envelope.body.case ?? "the message"
            } was meant for a previous life of this node`,
          Refusal.WRONG_INCARNATION,
        ),
      );
    }
    const body = fromWire(envelope.body);
    if (!body) return fail(new RemotingError(`${envelope.body.case ?? "an empty message"} is no layer's message`));
    try {
      Promise.resolve(this.#handler({ from, body }, isRequest)).then(
        (body) => body ? answer(body) : fail("no reply"),
        fail,
      );
    } catch (error) {
      fail(error);
    }
  }

  #replied(from: NodeId, envelope: Envelope): void {
    const pending = this.#pending.get(envelope.correlationId);
    if (!pending) return;
    this.#pending.delete(envelope.correlationId);
    clearTimeout(pending.timer);
    const reply = replyOf(from, envelope.body);
    if (reply instanceof RemotingError) pending.reject(reply);
    else pending.resolve(reply);
  }

  async #askSelf(target: Target, body: Body): Promise<Inbound> {
    if (typeof target !== "string" && target.uid !== this.self.uid) {
      throw new RemotingError(
        `${body.case} was meant for ${nodeKey(target)}, a previous life of this node`,
        Refusal.WRONG_INCARNATION,
      );
    }
    const reply = await this.#handler({ from: this.self, body }, true);
    if (!reply) throw new RemotingError(`no reply to ${body.case}`);
    return { from: this.self, body: reply };
  }
}

function addressOf(target: Target): string {
  return typeof target === "string" ? target : target.address;
}

function uidOf(target: Target): bigint {
  return typeof target === "string" ? 0n : BigInt(target.uid);
}
