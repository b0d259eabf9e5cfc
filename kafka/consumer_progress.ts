/**
 * Where a processor node stands in each partition it consumes, as a state
 * machine apart from Kafka and from time: inputs say what happened (an
 * assignment, a fetch's answer, a delivery's end, a commit's end), and
 * {@linkcode ConsumerProgress.ready} says what to do next (read a
 * partition's start, fetch, deliver a batch, commit). `kafka/consumer.ts`
 * carries those actions out and feeds their results back; the transcripts
 * in `kafka/testdata/consumer_progress/` pin every behaviour.
 *
 * A partition's records go through fetched → delivered (the shard applied
 * and stored them) → acknowledged → committed, in offset order. One batch is
 * delivered at a time per partition; what is fetched meanwhile is held
 * until its turn and then delivered as one batch, so a busy shard gets
 * fewer, larger batches, and a slow shard holds up its own partition only. Nothing is committed past what the sink acknowledged
 * (invariant 2 of ARCHITECTURE.md).
 *
 * Every answer names the partition's run: a refusal, a revocation or a new
 * assignment starts a new run, and answers of an older one are stale and
 * change nothing (as the cluster's messages carry their incarnation).
 *
 * @module
 */

/** How long a partition waits after a refused delivery or a failed fetch before it is fetched again. */
export const RETRY_AFTER_MS = 1000;

/** A partition to fetch, from `offset`, in run `run`. */
export interface FetchAt {
  readonly partition: number;
  readonly run: number;
  readonly offset: number;
}

/** A fetched batch to hand to the sink: the records of `partition` from `from` up to, not including, `next`. */
export interface Delivery {
  readonly partition: number;
  readonly run: number;
  readonly from: number;
  readonly next: number;
}

/** A partition whose first offset to read must be found (its committed offset, or the log start). */
export interface Locate {
  readonly partition: number;
  readonly run: number;
}

/** An offset to commit: every record of `partition` before `offset` has been acknowledged. */
export interface CommitAt {
  readonly partition: number;
  readonly offset: number;
}

/** What to do now; each action is handed out once. */
export interface Ready {
  readonly locate: readonly Locate[];
  readonly fetch: readonly FetchAt[];
  readonly deliver: readonly Delivery[];
  readonly commit: readonly CommitAt[];
}

/**
 * Records held for a partition whose batch is at the sink, beyond which it
 * is not fetched further: what arrives meanwhile goes to the sink as one
 * batch (one changelog transaction), up to about this many.
 */
export const MAX_HELD_RECORDS = 20_000;

/** A range of fetched offsets, `from` up to, not including, `next`, and how many records it holds. */
interface Batch {
  readonly from: number;
  readonly next: number;
  readonly records: number;
}

interface PartitionState {
  run: number;
  /** The next offset to fetch; `undefined` until located. */
  position: number | undefined;
  locating: boolean;
  fetching: boolean;
  delivering: Batch | undefined;
  /** Fetched while the batch before it was being delivered, every fetch's records in one range; delivered next. */
  held: Batch | undefined;
  retryAt: number | undefined;
  /** Every record before this offset was acknowledged by the sink (or skipped). */
  acknowledged: number;
  /** The offset Kafka has committed for the group, as far as this node knows. */
  committed: number;
}

/** The consumer's progress through its partitions. */
export class ConsumerProgress {
  readonly #partitions = new Map<number, PartitionState>();
  #nextRun = 1;
  #fetchInFlight = false;
  #commitInFlight = false;
  #commitRetryAt = 0;
  #stopping = false;
  readonly #deliveries: Delivery[] = [];

  /** The partitions assigned, in order. */
  get assigned(): number[] {
    return [...this.#partitions.keys()].sort((a, b) => a - b);
  }

  /** Whether some partition has a batch at the sink. */
  get delivering(): boolean {
    for (const state of this.#partitions.values()) if (state.delivering) return true;
    return false;
  }

  /** Whether some partition has acknowledged offsets not yet committed. */
  get uncommitted(): boolean {
    for (const state of this.#partitions.values()) if (state.acknowledged > state.committed) return true;
    return false;
  }

  /**
   * The node is stopping: nothing more is located, fetched or delivered;
   * deliveries in hand end, and what they acknowledged is still committed.
   */
  stopFetching(): void {
    this.#stopping = true;
    for (const state of this.#partitions.values()) state.held = undefined;
  }

  /**
   * This node's partitions after a rebalance: kept ones go on where they
   * were, new ones are located first, and revoked ones are forgotten
   * (their deliveries in hand end as stale, never committed).
   */
  assign(partitions: readonly number[]): void {
    const now = new Set(partitions);
    for (const partition of this.#partitions.keys()) {
      if (!now.has(partition)) this.#partitions.delete(partition);
    }
    for (const partition of partitions) {
      if (this.#partitions.has(partition)) continue;
      this.#partitions.set(partition, {
        run: this.#nextRun++,
        position: undefined,
        locating: false,
        fetching: false,
        delivering: undefined,
        held: undefined,
        retryAt: undefined,
        acknowledged: -1,
        committed: -1,
      });
    }
  }

  /**
   * `partition`'s first offset to read: where the group's committed offset (or
   * the log start) says. False when the answer is for a run that is over.
   */
  located(partition: number, run: number, offset: number): boolean {
    const state = this.#current(partition, run);
    if (!state || !state.locating) return false;
    state.locating = false;
    state.position = offset;
    state.acknowledged = offset;
    state.committed = offset;
    return true;
  }

  /** Kafka could not say where `partition` starts; ask again later. */
  locateFailed(partition: number, run: number, now: number): void {
    const state = this.#current(partition, run);
    if (!state || !state.locating) return;
    state.locating = false;
    state.retryAt = now + RETRY_AFTER_MS;
  }

  /**
   * A fetch answered for `partition`: it read `records` records from `from`
   * up to `next` (`next === from` when nothing was there yet).
   */
  fetched(partition: number, run: number, from: number, next: number, records: number): void {
    const state = this.#current(partition, run);
    if (!state || !state.fetching || state.position !== from) return;
    state.fetching = false;
    if (next <= from) return;
    state.position = next;
    if (this.#stopping) return;
    const batch = { from, next, records };
    if (state.delivering) {
      state.held = state.held ? { from: state.held.from, next, records: state.held.records + records } : batch;
    } else {
      state.delivering = batch;
      this.#deliveries.push({ partition, run, ...batch });
    }
  }

  /** The fetch of `partition` failed; it is fetched again later from the same offset. */
  fetchFailed(partition: number, run: number, now: number): void {
    const state = this.#current(partition, run);
    if (!state || !state.fetching) return;
    state.fetching = false;
    state.retryAt = now + RETRY_AFTER_MS;
  }

  /**
   * The fetch in flight has ended: the next may go. A partition it gave no
   * answer for is fetched again from the same offset.
   */
  fetchDone(): void {
    this.#fetchInFlight = false;
    for (const state of this.#partitions.values()) state.fetching = false;
  }

  /** The sink acknowledged the batch of `partition` that starts at `from`. */
  delivered(partition: number, run: number, from: number): void {
    const state = this.#current(partition, run);
    if (!state || state.delivering?.from !== from) return;
    state.acknowledged = state.delivering.next;
    state.delivering = this.#stopping ? undefined : state.held;
    state.held = undefined;
    if (state.delivering) this.#deliveries.push({ partition, run, ...state.delivering });
  }

  /**
   * The sink refused the batch of `partition` that starts at `from` (or it
   * cannot be delivered yet): the partition starts a new run, fetched
   * again after {@linkcode RETRY_AFTER_MS} from what was acknowledged.
   */
  refused(partition: number, run: number, from: number, now: number): void {
    const state = this.#current(partition, run);
    if (!state || state.delivering?.from !== from) return;
    this.#restart(partition, state, now);
  }

  /** Offsets Kafka committed (an answer to a commit from {@linkcode ready}). */
  committed(offsets: readonly CommitAt[]): void {
    this.#commitInFlight = false;
    this.#commitRetryAt = 0;
    for (const { partition, offset } of offsets) {
      const state = this.#partitions.get(partition);
      if (state) state.committed = Math.max(state.committed, offset);
    }
  }

  /** The commit failed; the offsets are committed again later. */
  commitFailed(now: number): void {
    this.#commitInFlight = false;
    this.#commitRetryAt = now + RETRY_AFTER_MS;
  }

  /**
   * What to do now. Each action is handed out once, and the fetch and the
   * commit at most one at a time: the next waits for {@linkcode fetchDone}
   * or for the commit's answer.
   */
  ready(now: number): Ready {
    const locate: Locate[] = [];
    const fetch: FetchAt[] = [];
    const commit: CommitAt[] = [];
    for (const [partition, state] of this.#stopping ? [] : this.#partitions) {
      if (state.retryAt !== undefined && state.retryAt > now) continue;
      state.retryAt = undefined;
      if (state.position === undefined) {
        if (!state.locating) {
          state.locating = true;
          locate.push({ partition, run: state.run });
        }
        continue;
      }
      if (!this.#fetchInFlight && !state.fetching && (state.held?.records ?? 0) < MAX_HELD_RECORDS) {
        state.fetching = true;
        fetch.push({ partition, run: state.run, offset: state.position });
      }
    }
    if (fetch.length > 0) this.#fetchInFlight = true;
    if (!this.#commitInFlight && this.#commitRetryAt <= now) {
      for (const [partition, state] of this.#partitions) {
        if (state.acknowledged > state.committed) commit.push({ partition, offset: state.acknowledged });
      }
      if (commit.length > 0) this.#commitInFlight = true;
    }
    const deliver = this.#deliveries.splice(0).map(({ partition, run, from, next }) => ({
      partition,
      run,
      from,
      next,
    }));
    return { locate, fetch, deliver, commit };
  }

  /** The earliest time a waiting partition or commit becomes ready, for the adapter's timer. */
  nextWake(): number | undefined {
    let wake: number | undefined;
    for (const state of this.#partitions.values()) {
      if (state.retryAt !== undefined) wake = Math.min(wake ?? Infinity, state.retryAt);
    }
    if (this.#commitRetryAt > 0 && !this.#commitInFlight) wake = Math.min(wake ?? Infinity, this.#commitRetryAt);
    return wake;
  }

  /** Per partition: the next offset to fetch and the offset acknowledged, for stats and logs. */
  positions(): Map<number, { position: number | undefined; acknowledged: number; committed: number }> {
    return new Map(
      [...this.#partitions].map(([p, s]) => [p, {
        position: s.position,
        acknowledged: s.acknowledged,
        committed: s.committed,
      }]),
    );
  }

  #restart(partition: number, state: PartitionState, now: number): void {
    const restarted: PartitionState = {
      ...state,
      run: this.#nextRun++,
      position: state.acknowledged,
      fetching: false,
      delivering: undefined,
      held: undefined,
      retryAt: now + RETRY_AFTER_MS,
    };
    this.#partitions.set(partition, restarted);
  }

  #current(partition: number, run: number): PartitionState | undefined {
    const state = this.#partitions.get(partition);
    return state?.run === run ? state : undefined;
  }
}
