/**
 * Fault injection: the SimulatedDevice fails its k-th memory-obtaining call (reserve, map,
 * allocateSegment), for every k a scripted workload reaches, in vmm and segment mode, for every
 * policy. Whatever fails, the pool stays consistent (checkInvariants, books equal to the blocks
 * held), every error is typed, the pool stays usable, and destroy() returns every byte.
 */
import { describe, expect, it } from 'vitest';
import {
  type Block,
  createPool,
  type FaultPredicate,
  failCalls,
  failFrom,
  MiB,
  type Pool,
  policyNames,
  SimulatedDevice,
} from '../src/index.js';

const PAGE_BYTES = 2 * MiB;
const SIZES = [300, 70_000, PAGE_BYTES + 5, 5 * PAGE_BYTES, 1000, 3 * MiB, 256 * 1024, 12 * MiB, 40];
const EXPECTED_CODES = new Set(['ERR_GPUPOOL_OUT_OF_MEMORY']);

interface Outcome {
  failures: number;
  deviceCalls: number;
}

/** A fixed workload of acquires, releases and trims; checks the pool after every failure. */
function workload(pool: Pool, rounds: number): Outcome {
  const held: Block[] = [];
  let failures = 0;
  const check = () => {
    pool.checkInvariants();
    const stats = pool.stats();
    expect(stats.liveBlocks).toBe(held.length);
    expect(stats.liveBytes).toBe(held.reduce((s, b) => s + b.bytes, 0));
  };
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < SIZES.length; i++) {
      const size = SIZES[(i + round) % SIZES.length]!;
      try {
        held.push(
          i % 3 === 0
            ? pool.acquire({ shape: [size], dtype: 'uint8' })
            : pool.acquire(size, i % 4 === 0 ? { alignmentBytes: 65536 } : undefined),
        );
      } catch (error) {
        const code = (error as { code?: string }).code ?? String(error);
        expect(EXPECTED_CODES.has(code), `unexpected error ${code}: ${(error as Error).message}`).toBe(true);
        failures++;
        check();
      }
      if (i % 2 === 1 && held.length > 0) held.splice((i * 7) % held.length, 1)[0]!.release();
    }
    if (round % 2 === 1) pool.trim();
    check();
  }
  for (const b of held) b.release();
  held.length = 0;
  check();
  return { failures, deviceCalls: pool.stats().allocations };
}

function runWith(policy: string, mode: 'vmm' | 'segments', failOn: FaultPredicate | undefined): Outcome {
  const device = new SimulatedDevice({ capacityBytes: 256 * MiB, pageBytes: PAGE_BYTES, failOn });
  let pool: Pool;
  try {
    pool = createPool({ device, policy, mode, limitBytes: 160 * MiB, detectLeaks: false });
  } catch (error) {
    // Only reserving the arena can fail here; a failed constructor holds nothing.
    expect((error as { code?: string }).code).toBe('ERR_GPUPOOL_INJECTED_FAULT');
    expect(device.usedBytes).toBe(0);
    expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
    return { failures: 1, deviceCalls: 0 };
  }
  const outcome = workload(pool, 4);
  pool.destroy();
  expect(device.usedBytes).toBe(0);
  expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
  return outcome;
}

describe.each(policyNames())('policy %s under injected device faults', (policy) => {
  describe.each(['vmm', 'segments'] as const)('%s mode', (mode) => {
    const clean = () => runWith(policy, mode, undefined);

    it('the workload runs clean without faults (the baseline the faults are placed in)', () => {
      const outcome = clean();
      expect(outcome.failures).toBe(0);
      expect(outcome.deviceCalls).toBeGreaterThan(3);
    });

    it('one failed call, at every position k: recovered or a typed OutOfMemoryError, never corrupt', () => {
      const calls = clean().deviceCalls + 2; // + reserve calls in vmm mode
      for (let k = 1; k <= calls + 1; k++) runWith(policy, mode, failCalls(k));
    });

    it('two failed calls in a row, at every position k (recovery itself is refused)', () => {
      const calls = clean().deviceCalls + 2;
      let failures = 0;
      for (let k = 1; k <= calls; k++) failures += runWith(policy, mode, failCalls(k, k + 1)).failures;
      expect(failures).toBeGreaterThan(0);
    });

    it('a device that runs dry from call k on: typed OutOfMemoryErrors, books intact, every byte back', () => {
      // Call numbers count reserve calls too, so k ≤ the clean run's memory calls always bites.
      const calls = clean().deviceCalls;
      for (let k = 1; k <= calls; k += Math.max(1, Math.floor(calls / 12))) {
        const outcome = runWith(policy, mode, failFrom(k));
        expect(outcome.failures).toBeGreaterThan(0);
      }
    });
  });
});
