/**
 * Bisection for the smallest x at which a monotone-ish predicate holds (e.g. "the replay completes
 * on a device of x × peak live bytes"). Pure and synchronous, so it is tested with plain functions.
 *
 * The predicate is assumed false at and below `low` and true at `high`; `high` is doubled (from
 * `low`) until the predicate holds or `highMax` is passed. The answer is the smallest x found to
 * hold, within `tolerance` of the largest x found to fail.
 */

export interface BisectResult {
  /** Smallest x seen to hold; Infinity if none up to highMax. */
  value: number;
  /** Largest x seen to fail (the bracket's other side). */
  failedBelow: number;
  evaluations: number;
}

export function bisectSmallest(
  holds: (x: number) => boolean,
  low: number,
  high: number,
  tolerance: number,
  highMax = 64 * high,
): BisectResult {
  if (!(low < high) || !(tolerance > 0))
    throw new RangeError('bisectSmallest needs low < high and tolerance > 0');
  let evaluations = 0;
  const test = (x: number): boolean => {
    evaluations++;
    return holds(x);
  };
  if (test(low)) return { value: low, failedBelow: Number.NaN, evaluations };
  let lo = low;
  let hi = high;
  while (!test(hi)) {
    lo = hi;
    if (hi >= highMax) return { value: Number.POSITIVE_INFINITY, failedBelow: lo, evaluations };
    hi = Math.min(highMax, low + 2 * (hi - low));
  }
  while (hi - lo > tolerance) {
    const mid = (lo + hi) / 2;
    if (test(mid)) hi = mid;
    else lo = mid;
  }
  return { value: hi, failedBelow: lo, evaluations };
}
