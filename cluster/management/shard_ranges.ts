/**
 * Shard ids written short, as the CLI, the demo and the live page show them.
 * The function has no dependencies, so the page runs its very source.
 *
 * @module
 */

/**
 * Shard ids as short ranges.
 *
 * @example
 * ```ts
 * compactRanges([0, 1, 2, 5, 7, 8]); // "0-2,5,7-8"
 * ```
 */
export function compactRanges(ids: readonly number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? String(sorted[i]) : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(",");
}
