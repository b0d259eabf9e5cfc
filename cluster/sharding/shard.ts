/**
 * A shard: the entities (users) of one shard id, and the last Kafka offset it
 * applied. Since shard id == partition, that one number makes redelivery
 * harmless: an event at or below it was counted already and is skipped.
 * The whole state fits in a {@linkcode ShardSnapshot}, which is what moves on
 * handoff.
 *
 * @module
 */
import { applyPurchase, NO_PURCHASES, type PurchaseEvent, type UserTotals } from "./entity.ts";

/** A shard's whole state, as it moves between nodes. */
export interface ShardSnapshot {
  readonly shard: number;
  /** Last Kafka offset applied; -1 when none. */
  readonly lastOffset: number;
  readonly entities: readonly (readonly [userId: string, totals: UserTotals])[];
}

/** What applying a batch did. */
export interface ApplyResult {
  /** Events counted now. */
  readonly applied: number;
  /** Events at or below the last applied offset, acknowledged without counting. */
  readonly skipped: number;
  readonly lastOffset: number;
}

/** Slots a shard starts with; the columns double as users arrive. */
const INITIAL_SLOTS = 64;

/**
 * The entities of one shard and its progress through its partition. A
 * million users must fit in little memory, so a user's totals are not an
 * object each: a map from user id to a slot, and two columns of numbers
 * (exact up to 2^53, which `applyPurchase` guards).
 */
export class Shard {
  readonly id: number;
  #lastOffset: number;
  readonly #slots = new Map<string, number>();
  #purchases = new Float64Array(INITIAL_SLOTS);
  #amounts = new Float64Array(INITIAL_SLOTS);

  constructor(id: number, snapshot?: ShardSnapshot) {
    if (snapshot && snapshot.shard !== id) throw new Error(`snapshot of shard ${snapshot.shard} given to shard ${id}`);
    this.id = id;
    this.#lastOffset = snapshot?.lastOffset ?? -1;
    for (const [userId, totals] of snapshot?.entities ?? []) this.#set(this.#slotFor(userId), totals);
  }

  /** The last Kafka offset applied, -1 when none. */
  get lastOffset(): number {
    return this.#lastOffset;
  }

  /** How many users have totals here. */
  get numEntities(): number {
    return this.#slots.size;
  }

  /**
   * Applies events in offset order; events at or below the last applied
   * offset are skipped (they were counted before a redelivery). The users
   * whose totals moved are added to `changed`, when given, each with the
   * totals it had before this batch (`undefined`: none): the users are what a
   * durable store must write, and the totals before are what queries see
   * until it has.
   *
   * @example
   * ```ts
   * const shard = new Shard(3);
   * const e = { offset: 10, userId: "7", quantity: 1, price: 5 };
   * shard.apply([e]);        // { applied: 1, skipped: 0, lastOffset: 10 }
   * shard.apply([e]);        // { applied: 0, skipped: 1, lastOffset: 10 }
   * ```
   */
  apply(events: readonly PurchaseEvent[], changed?: Map<string, UserTotals | undefined>): ApplyResult {
    let applied = 0;
    for (const event of events) {
      if (event.offset <= this.#lastOffset) continue;
      const known = this.#slots.get(event.userId);
      const before = known === undefined ? undefined : this.#totalsAt(known);
      this.#set(known ?? this.#slotFor(event.userId), applyPurchase(before ?? NO_PURCHASES, event));
      this.#lastOffset = event.offset;
      if (changed && !changed.has(event.userId)) changed.set(event.userId, before);
      applied++;
    }
    return { applied, skipped: events.length - applied, lastOffset: this.#lastOffset };
  }

  /** A user's totals, `undefined` if the user has no purchases here. */
  get(userId: string): UserTotals | undefined {
    const slot = this.#slots.get(userId);
    return slot === undefined ? undefined : this.#totalsAt(slot);
  }

  /** The shard's whole state. */
  snapshot(): ShardSnapshot {
    const entities: [string, UserTotals][] = [];
    for (const [userId, slot] of this.#slots) entities.push([userId, this.#totalsAt(slot)]);
    return { shard: this.id, lastOffset: this.#lastOffset, entities };
  }

  #totalsAt(slot: number): UserTotals {
    return { totalPurchases: this.#purchases[slot], amountSpent: this.#amounts[slot] };
  }

  #set(slot: number, totals: UserTotals): void {
    this.#purchases[slot] = totals.totalPurchases;
    this.#amounts[slot] = totals.amountSpent;
  }

  /** The slot of `userId`, a new one when it has none. */
  #slotFor(userId: string): number {
    const known = this.#slots.get(userId);
    if (known !== undefined) return known;
    const slot = this.#slots.size;
    if (slot === this.#purchases.length) {
      const purchases = new Float64Array(slot * 2);
      const amounts = new Float64Array(slot * 2);
      purchases.set(this.#purchases);
      amounts.set(this.#amounts);
      this.#purchases = purchases;
      this.#amounts = amounts;
    }
    this.#slots.set(userId, slot);
    return slot;
  }
}
