/**
 * What the property suites share: plain comparisons against the model (vitest's expect costs
 * microseconds per call, too much inside op-by-op loops), the live-block list, and running a
 * fast-check property with a failure report that names the seed and shows the counterexample.
 * Used by core's property suites and, by path, by the workers' slice suite.
 */
import fc from 'fast-check';
// Types only: the workers' suite loads this file by path, with core's built package, not its source.
import type { Block, Pool, PoolStats, SimulatedDevice } from '../../src/index.js';

/** Block sizes in three equally likely tiers: the block cache's, the policy's small, and large ones. */
export function blockBytesArb(largeMaxBytes: number): fc.Arbitrary<number> {
  return fc.oneof(
    fc.integer({ min: 0, max: 8192 }),
    fc.integer({ min: 8193, max: 512 * 1024 }),
    fc.integer({ min: 512 * 1024, max: largeMaxBytes }),
  );
}

/**
 * The end of a property run: every live block released, the device's work done, trim() gives back
 * every byte, and destroy() leaves the device with nothing allocated.
 */
export function expectAllBack(pool: Pool, device: SimulatedDevice, live: readonly { block: Block }[]): void {
  for (const entry of live) entry.block.release();
  device.completeAllWork();
  pool.trim();
  pool.checkInvariants();
  same('reserved after releasing everything and trim()', pool.stats().reservedBytes, 0);
  pool.destroy();
  same('device bytes after destroy()', device.usedBytes, 0);
  const open = device.openAllocations;
  if (open.ranges !== 0 || open.segments !== 0)
    throw new Error(`open after destroy(): ${open.ranges} ranges, ${open.segments} segments`);
}

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

/**
 * A block the pool just handed out: checks its alignment and that it overlaps no live block, then
 * adds it to `live`. Returns the entry.
 */
export function addLive(live: (LiveSpan & { block: Block })[], block: Block, alignmentBytes: number) {
  if (block.ptr % BigInt(alignmentBytes) !== 0n) throw new Error(`block #${block.id} misaligned`);
  const start = Number(block.ptr);
  const end = start + Math.max(block.bytes, 1);
  assertApart(live, block.id, start, end);
  const entry = { block, start, end };
  live.push(entry);
  return entry;
}

/**
 * The per-operation books: live figures as the model has them, reserved memory as the device
 * counts it (never above the limit), and the pool's allocations as the device's memory-obtaining
 * calls (`memoryObtainingCalls(device.calls)`).
 */
export function sameBooks(
  stats: PoolStats,
  model: { liveBytes: number; liveBlocks: number; limitBytes: number },
  device: { usedBytes: number; obtainingCalls: number },
): void {
  same('liveBytes', stats.liveBytes, model.liveBytes);
  same('liveBlocks', stats.liveBlocks, model.liveBlocks);
  same('reservedBytes (device)', stats.reservedBytes, device.usedBytes);
  same('allocations (device calls)', stats.allocations, device.obtainingCalls);
  if (stats.reservedBytes > model.limitBytes)
    throw new Error(`reservedBytes ${stats.reservedBytes} > limit ${model.limitBytes}`);
}

/** Options a generated configuration sets: those it leaves undefined take the pool's defaults. */
export function definedOnly<T extends object>(options: T): Partial<T> {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as Partial<T>;
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
