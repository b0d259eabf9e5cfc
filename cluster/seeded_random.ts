/**
 * A seedable random source: simulations replay a failing seed, and
 * `usershard produce --seed` sends the same events every time.
 *
 * @module
 */

/**
 * mulberry32: small, fast and seedable; numbers in [0, 1).
 *
 * @example
 * ```ts
 * const random = seededRandom(7);
 * random() === seededRandom(7)(); // true
 * ```
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
