import assert from "node:assert/strict";
import { applyPurchase, NO_PURCHASES } from "./entity.ts";

const purchase = (quantity: number, price: number) => ({ offset: 9, userId: "7", product: "rope", quantity, price });

Deno.test("applyPurchase() adds one purchase and quantity × price", () => {
  const once = applyPurchase(NO_PURCHASES, purchase(2, 1548));
  assert.deepEqual(once, { totalPurchases: 1, amountSpent: 3096 });
  assert.deepEqual(applyPurchase(once, purchase(1, 4)), { totalPurchases: 2, amountSpent: 3100 });
});

Deno.test("applyPurchase() refuses a purchase that would take the total past exact numbers", () => {
  const near = { totalPurchases: 5, amountSpent: Number.MAX_SAFE_INTEGER - 10 };
  assert.deepEqual(applyPurchase(near, purchase(1, 10)), { totalPurchases: 6, amountSpent: Number.MAX_SAFE_INTEGER });
  assert.deepEqual(applyPurchase(near, purchase(1, 11)), near);
});
