/**
 * Test support: an in-memory network of {@linkcode Membership} state machines
 * on a simulated clock. Every message is an event with its own delivery time,
 * so a seeded network can lose, delay and reorder messages, cut a link one way
 * or both, and kill or restart a node at the same address (with a new, higher
 * uid). With no loss and no delay it behaves like a perfect LAN: whatever is
 * sent during a tick arrives in that same instant.
 *
 * @module
 */
import { type ClusterTimings, DEFAULT_TIMINGS } from "../timings.ts";
import { type GossipState, liveMembers } from "./gossip.ts";
import {
  Membership,
  type MembershipAction,
  type MembershipEvent,
  type MembershipInput,
  type MembershipMessage,
} from "./membership.ts";
import type { NodeId } from "../remoting/node.ts";
import { seededRandom } from "../seeded_random.ts";

/** The seed list most tests use. */
export const SEEDS: readonly string[] = ["127.0.0.1:2551", "127.0.0.1:2552"];

/** How often each node ticks, as `ClusterNode` does. */
export const TICK_MS = 100;

/** How the simulated network behaves. */
export interface NetworkOptions {
  /** Seeds the network's PRNG (loss, delays, tick phases). */
  readonly seed?: number;
  /** The timings every node runs with; `DEFAULT_TIMINGS` unless given. */
  readonly timings?: ClusterTimings;
  /** Probability that any one message is lost. */
  readonly loss?: number;
  /** Each message takes a uniformly random delay in [`minDelayMs`, `maxDelayMs`]. */
  readonly minDelayMs?: number;
  /** See `minDelayMs`; the same as it unless given. */
  readonly maxDelayMs?: number;
  /** Whether each node ticks at its own random phase rather than all at once. */
  readonly jitterTicks?: boolean;
}

/** Called with every step a node takes, what it answered, and its view before the step. */
export type StepObserver = (
  node: Membership,
  input: MembershipInput,
  actions: readonly MembershipAction[],
  before: GossipState,
) => void;

type SimBody =
  | { readonly kind: "tick"; readonly node: Membership }
  | { readonly kind: "deliver"; readonly from: NodeId; readonly to: string; readonly message: MembershipMessage };

interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly body: SimBody;
}

// A zero-delay exchange that never ends would otherwise hang the test.
const MAX_EVENTS_PER_INSTANT = 20_000;

/** An in-memory network of Membership state machines with a manual clock. */
export class SimCluster {
  /** The simulated clock, in ms. */
  now = 1_000_000;
  /** The running process at each address. */
  readonly nodes = new Map<string, Membership>();
  /** Events of the current process at each address. */
  readonly events = new Map<string, MembershipEvent[]>();
  /** Directed links that drop everything: `from|to`. */
  readonly cut = new Set<string>();
  readonly timings: ClusterTimings;
  /** The network's PRNG; scenarios may draw from it too. */
  readonly random: () => number;
  /** Probability that any one message is lost; may change while running. */
  loss: number;
  /** Sees every step, for property checks. */
  observer: StepObserver | undefined;
  readonly #minDelay: number;
  readonly #maxDelay: number;
  readonly #jitter: boolean;
  #queue: SimEvent[] = [];
  #seq = 0;
  #uid = 0;

  constructor(options: NetworkOptions = {}) {
    this.random = seededRandom(options.seed ?? 1);
    this.timings = options.timings ?? DEFAULT_TIMINGS;
    this.loss = options.loss ?? 0;
    this.#minDelay = options.minDelayMs ?? 0;
    this.#maxDelay = options.maxDelayMs ?? this.#minDelay;
    this.#jitter = options.jitterTicks ?? false;
  }

  /** Starts a process at `address` with a uid higher than any before. */
  start(address: string, seeds: readonly string[] = SEEDS): Membership {
    const node = new Membership({ self: { address, uid: ++this.#uid }, seeds, timings: this.timings }, this.now);
    this.nodes.set(address, node);
    this.events.set(address, []);
    const phase = this.#jitter ? 1 + Math.floor(this.random() * TICK_MS) : TICK_MS;
    this.#schedule(this.now + phase, { kind: "tick", node });
    return node;
  }

  /** Stops the process at `address` at once; messages it already sent are still delivered. */
  kill(address: string): void {
    this.nodes.delete(address);
  }

  /** Kills the process at `address` and starts a new incarnation there. */
  restart(address: string, seeds: readonly string[] = SEEDS): Membership {
    this.kill(address);
    return this.start(address, seeds);
  }

  /** Drops every message from `from` to `to` (not the other way). */
  cutOneWay(from: string, to: string): void {
    this.cut.add(`${from}|${to}`);
  }

  /** Stops traffic between two addresses, both ways. */
  partition(a: string, b: string): void {
    this.cut.add(`${a}|${b}`).add(`${b}|${a}`);
  }

  /** Whether messages from `from` to `to` are dropped. */
  isCut(from: string, to: string): boolean {
    return this.cut.has(`${from}|${to}`);
  }

  /** Feeds a leave or exit request to the process at `address`. */
  input(address: string, type: "leave" | "exit"): void {
    this.#step(this.nodes.get(address)!, { type, now: this.now });
  }

  /** Hands `message` to the process at `to` now, as if `from` had just sent it. */
  deliver(from: NodeId, to: string, message: MembershipMessage): void {
    this.#step(this.nodes.get(to)!, { type: "message", from, message, now: this.now });
  }

  #schedule(at: number, body: SimBody): void {
    const full: SimEvent = { at, seq: this.#seq++, body };
    const queue = this.#queue;
    let lo = 0;
    let hi = queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (queue[mid].at <= full.at) lo = mid + 1;
      else hi = mid;
    }
    queue.splice(lo, 0, full);
  }

  #step(node: Membership, input: MembershipInput): void {
    const before = node.state;
    const actions = node.step(input);
    this.observer?.(node, input, actions, before);
    for (const action of actions) {
      if (action.type === "event") {
        if (this.nodes.get(node.self.address) === node) this.events.get(node.self.address)!.push(action.event);
        continue;
      }
      if (this.random() < this.loss) continue;
      const delay = this.#minDelay + Math.floor(this.random() * (this.#maxDelay - this.#minDelay + 1));
      this.#schedule(this.now + delay, { kind: "deliver", from: node.self, to: action.to, message: action.message });
    }
  }

  /** Runs every tick and delivery due in the next `ms` milliseconds. */
  advance(ms: number): void {
    const until = this.now + ms;
    let instant = this.now;
    let atInstant = 0;
    while (this.#queue.length > 0 && this.#queue[0].at <= until) {
      const event = this.#queue.shift()!;
      this.now = event.at;
      atInstant = event.at === instant ? atInstant + 1 : 0;
      instant = event.at;
      if (atInstant > MAX_EVENTS_PER_INSTANT) throw new Error(`message storm at ${event.at}`);
      const body = event.body;
      if (body.kind === "tick") {
        if (this.nodes.get(body.node.self.address) !== body.node) continue;
        this.#schedule(event.at + TICK_MS, body);
        this.#step(body.node, { type: "tick", now: event.at });
      } else {
        const target = this.nodes.get(body.to);
        if (!target || this.isCut(body.from.address, body.to)) continue;
        this.#step(target, { type: "message", from: body.from, message: body.message, now: event.at });
      }
    }
    this.now = until;
  }

  /** Advances in ticks until `condition` holds; throws after `limitMs` of simulated time. */
  advanceUntil(condition: () => boolean, limitMs: number, what: string): number {
    const start = this.now;
    while (!condition()) {
      if (this.now - start > limitMs) throw new Error(`${what} did not happen within ${limitMs} ms (simulated)`);
      this.advance(TICK_MS);
    }
    return this.now - start;
  }

  /** The statuses of the non-Removed members in the view of the process at `address`. */
  statuses(address: string): Record<string, string> {
    const node = this.nodes.get(address)!;
    return Object.fromEntries(liveMembers(node.state).map((m) => [m.node.address, m.status]));
  }

  /** Whether every running process sees exactly `expected`. */
  allSee(expected: Record<string, string>): boolean {
    return [...this.nodes.keys()].every((a) => JSON.stringify(this.statuses(a)) === JSON.stringify(expected));
  }
}
