/**
 * The sharded entity: one user's running totals.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const log = getLogger(["usershard", "entity"]);

/** A user's running totals. `amountSpent` is the sum of quantity × price, in pence. */
export interface UserTotals {
  readonly totalPurchases: number;
  readonly amountSpent: number;
}

/** Totals of a user who has not bought anything. */
export const NO_PURCHASES: UserTotals = { totalPurchases: 0, amountSpent: 0 };

/**
 * One purchase as an entity applies it, with the Kafka offset it came from.
 * The product is not part of it: the totals do not depend on it, and the
 * consumer logs it as it reads the record.
 */
export interface PurchaseEvent {
  readonly offset: number;
  readonly userId: string;
  readonly quantity: number;
  readonly price: number;
}

/**
 * Adds a purchase to a user's totals.
 *
 * @example
 * ```ts
 * applyPurchase(NO_PURCHASES, { offset: 0, userId: "7", quantity: 2, price: 1548 });
 * // { totalPurchases: 1, amountSpent: 3096 }
 * ```
 */
export function applyPurchase(totals: UserTotals, event: PurchaseEvent): UserTotals {
  // Lazy properties: at info level nothing is built for the hot path.
  log.debug("user {userId} purchase at offset {offset}, quantity {quantity}, price {price}", () => ({ ...event }));
  const amountSpent = totals.amountSpent + event.quantity * event.price;
  if (amountSpent > Number.MAX_SAFE_INTEGER) {
    // Past 2^53 the sum is no longer exact; a total that is silently wrong is worse than a refused event.
    log.error("user {userId}'s amount spent would pass {max}p; purchase at offset {offset} not counted", {
      userId: event.userId,
      max: Number.MAX_SAFE_INTEGER,
      offset: event.offset,
    });
    return totals;
  }
  return { totalPurchases: totals.totalPurchases + 1, amountSpent };
}

/** Longest user id a query accepts, in characters. */
export const MAX_USER_ID_LENGTH = 256;

/**
 * Why a user id is not acceptable in a query, or `undefined` when it is.
 *
 * @example
 * ```ts
 * userIdProblem("7"); // undefined
 * userIdProblem(" "); // "the user id is empty"
 * ```
 */
export function userIdProblem(id: string): string | undefined {
  if (id.trim() === "") return "the user id is empty";
  if (id.length > MAX_USER_ID_LENGTH) return `the user id is longer than ${MAX_USER_ID_LENGTH} characters`;
  // deno-lint-ignore no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(id)) return "the user id contains control characters";
  return undefined;
}
