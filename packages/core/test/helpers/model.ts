/**
 * What the property suites share: plain comparisons against the model (vitest's expect costs
 * microseconds per call, too much inside op-by-op loops), the live-block list, and running a
 * fast-check property with a failure report that names the seed and shows the counterexample.
 * Used by core's property suites and, by path, by the workers' slice suite.
 */
import fc from 'fast-check';

/** Throws unless the pool's figure equals the model's. */
export function same(what: string, actual: number, expected: number): void {
  if (actual !== expected) throw new Error(`${what}: pool says ${actual}, the model ${expected}`);
}

/** A live block in a model: [start, end) in device addresses (a block of 0 bytes spans 1). */
export interface LiveSpan {
  readonly block: { readonly id: number };
  readonly start: number;
  readonly end: number;
}

/** Throws if [start, end) overlaps any live block. */
export function assertApart(live: readonly LiveSpan[], id: number, start: number, end: number): void {
  for (const other of live) {
    if (start < other.end && other.start < end) {
      throw new Error(`block #${id} [${start}, ${end}) overlaps #${other.block.id}`);
    }
  }
}

/** Removes and returns the entry at `pick` modulo the length (order is not kept); the list must not be empty. */
export function takeAt<T>(live: T[], pick: number): T {
  const index = pick % live.length;
  const entry = live[index]!;
  live[index] = live[live.length - 1]!;
  live.pop();
  return entry;
}

/**
 * Runs the property and returns how many runs it made; on failure throws with the seed, the shrink
 * path, the cause and the counterexample.
 */
export function checkProperty<Ts extends unknown[]>(property: fc.IProperty<Ts>, numRuns: number): number {
  const details = fc.check(property, { numRuns });
  if (!details.failed) return details.numRuns;
  const shown = (details.counterexample ?? []).map((value) =>
    Array.isArray(value) && value.length > 40
      ? `${value.length} items (re-run with the seed)`
      : JSON.stringify(value),
  );
  const cause =
    details.errorInstance instanceof Error
      ? (details.errorInstance.stack ?? details.errorInstance.message)
      : String(details.errorInstance);
  throw new Error(
    `property failed (seed ${details.seed}, path "${details.counterexamplePath}"): ${cause}\n${shown.join('\n')}`,
  );
}
