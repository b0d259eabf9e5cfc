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

/** One purchase as an entity applies it, with the Kafka offset it came from. */
export interface PurchaseEvent {
  readonly offset: number;
  readonly userId: string;
  readonly product: string;
  readonly quantity: number;
  readonly price: number;
}

/**
 * Adds a purchase to a user's totals.
 *
 * @example
 * ```ts
 * applyPurchase(NO_PURCHASES, { offset: 0, userId: "7", product: "rope", quantity: 2, price: 1548 });
 * // { totalPurchases: 1, amountSpent: 3096 }
 * ```
 */
export function applyPurchase(totals: UserTotals, event: PurchaseEvent): UserTotals {
  log.debug("user {userId} purchase {product}, quantity {quantity}, price {price}", { ...event });
  return {
    totalPurchases: totals.totalPurchases + 1,
    amountSpent: totals.amountSpent + event.quantity * event.price,
  };
}
