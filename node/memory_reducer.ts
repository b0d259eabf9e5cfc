/**
 * Gives memory back once a node goes quiet after a burst of events. A drain
 * leaves most of what it allocated (fetched batches, decoded events,
 * changelog records) as garbage in V8's old space, and under Deno nothing
 * was seen to collect it while the node idled: one node that drained 1.5
 * million events stayed at 640 MB resident for the minute it was watched,
 * and went to 273 MB after one full collection (forced through the
 * inspector). So when the events have stopped for a while after a burst and
 * the heap has grown well past its lowest since the last collection, the
 * node runs one full collection itself.
 *
 * {@linkcode MemoryReducer} decides (time and counts are inputs),
 * {@linkcode fullCollection} is the one call into the runtime, and
 * {@linkcode reduceMemoryWhenQuiet} runs the two on a timer.
 *
 * @module
 */
import v8 from "node:v8";
import vm from "node:vm";
import { getLogger } from "@logtape/logtape";

const log = getLogger(["usershard", "memory"]);

/** How often the reducer looks. */
const CHECK_EVERY_MS = 1000;

/** When a quiet node collects. */
export interface MemoryReducerOptions {
  /** How long no event may have arrived before a collection. */
  readonly quietMs: number;
  /** How far the heap must have grown since the last collection for one to be worth its pause. */
  readonly minGrowthBytes: number;
}

/** Defaults: 5 s without events, 64 MiB grown. */
export const DEFAULT_MEMORY_REDUCER: MemoryReducerOptions = { quietMs: 5000, minGrowthBytes: 64 << 20 };

/**
 * Decides when to collect: after {@linkcode MemoryReducerOptions.quietMs}
 * without new events, once per burst, and only when the heap grew by
 * {@linkcode MemoryReducerOptions.minGrowthBytes} over the lowest it has
 * been since the last collection. A node under steady load never collects
 * here (V8 does, as it allocates); an idle one collects once, not every
 * tick; and heap that grows while no event arrives (a restore, which is
 * live data) is no reason to collect.
 *
 * @example
 * ```ts
 * const reducer = new MemoryReducer({ quietMs: 5000, minGrowthBytes: 64 << 20 });
 * reducer.step(0, 0, 50 << 20);          // false: nothing has happened
 * reducer.step(1000, 900_000, 400 << 20); // false: events still arrive
 * reducer.step(6000, 900_000, 400 << 20); // true: quiet for 5 s after a burst, 350 MiB grown
 * reducer.collected(90 << 20);
 * reducer.step(7000, 900_000, 90 << 20);  // false: collected already
 * ```
 */
export class MemoryReducer {
  readonly #options: MemoryReducerOptions;
  #events = -1;
  #lastEventAt = 0;
  #baseline = Infinity;
  /** Whether events arrived since the last collection. */
  #burst = false;

  constructor(options: MemoryReducerOptions = DEFAULT_MEMORY_REDUCER) {
    this.#options = options;
  }

  /** At `now` (ms, any one clock) the node has applied `events` in all and uses `heapUsed` bytes: collect? */
  step(now: number, events: number, heapUsed: number): boolean {
    // V8's own collections lower the heap too: growth counts from the lowest seen.
    this.#baseline = Math.min(this.#baseline, heapUsed);
    if (events !== this.#events) {
      if (this.#events >= 0) this.#burst = true;
      this.#events = events;
      this.#lastEventAt = now;
      return false;
    }
    return this.#burst && now - this.#lastEventAt >= this.#options.quietMs &&
      heapUsed - this.#baseline >= this.#options.minGrowthBytes;
  }

  /** A collection ran and left `heapUsed` bytes in use: growth counts from there, and the next burst is awaited. */
  collected(heapUsed: number): void {
    this.#baseline = heapUsed;
    this.#burst = false;
  }
}

/**
 * A full garbage collection, or `undefined` where the runtime offers none.
 * `--expose-gc` set at run time puts `gc` into contexts made afterwards, so
 * the function comes from a fresh one; nothing else sees it.
 */
export function fullCollection(): (() => void) | undefined {
  try {
    v8.setFlagsFromString("--expose-gc");
    const gc: unknown = vm.runInNewContext("typeof gc === 'function' ? gc : undefined");
    return typeof gc === "function" ? () => gc() : undefined;
  } catch {
    return undefined;
  }
}

/** Hears of each collection the reducer ran (the node's metrics). */
export interface MemoryObserver {
  idleCollection(freedBytes: number, seconds: number): void;
}

/**
 * Looks every second whether the node went quiet after a burst (`events`
 * is the count of events it applied so far) and collects when
 * {@linkcode MemoryReducer} says so; `stop` ends it.
 */
export function reduceMemoryWhenQuiet(
  events: () => number,
  observer?: MemoryObserver,
  options: MemoryReducerOptions = DEFAULT_MEMORY_REDUCER,
): { stop(): void } {
  const collect = fullCollection();
  if (!collect) {
    log.debug("this runtime offers no full collection: memory is given back when V8 decides");
    return { stop() {} };
  }
  const reducer = new MemoryReducer(options);
  const timer = setInterval(() => {
    const before = Deno.memoryUsage().heapUsed;
    if (!reducer.step(performance.now(), events(), before)) return;
    const started = performance.now();
    collect();
    const seconds = (performance.now() - started) / 1000;
    const { heapUsed, rss } = Deno.memoryUsage();
    reducer.collected(heapUsed);
    observer?.idleCollection(Math.max(0, before - heapUsed), seconds);
    log.info(
      "no events for {quiet} s: a full garbage collection took the heap from {before} to {after} MiB in {ms} ms " +
        "({rss} MiB resident)",
      {
        quiet: options.quietMs / 1000,
        before: Math.round(before / 2 ** 20),
        after: Math.round(heapUsed / 2 ** 20),
        ms: Math.round(seconds * 1000),
        rss: Math.round(rss / 2 ** 20),
      },
    );
  }, CHECK_EVERY_MS);
  return { stop: () => clearInterval(timer) };
}
