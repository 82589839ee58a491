/**
 * Time-based release (pool.releaseIdle() and the releaseAfterMs timer): pages that stayed empty
 * for a whole period are unmapped; pages reused in between, live pages and the retained floor stay.
 */
import { describe, expect, it } from 'vitest';
import {
  ArgumentRangeError,
  createPool,
  GiB,
  InvalidArgumentError,
  MiB,
  SimulatedDevice,
} from '../src/index.js';

const PAGE = 2 * MiB;

function setup(options: Parameters<typeof createPool>[0] extends infer O ? Partial<O> : never = {}) {
  const device = new SimulatedDevice({ capacityBytes: GiB });
  const pool = createPool({ device, retainMinBytes: 0, blockCacheBytes: 0, ...options });
  return { device, pool };
}

describe('releaseIdle', () => {
  it('unmaps pages empty since before the previous call, and only those', () => {
    const { device, pool } = setup();
    pool.acquire(4 * PAGE).release();
    expect(pool.stats().reservedBytes).toBe(4 * PAGE);
    expect(pool.releaseIdle()).toBe(0); // emptied in this period: kept
    expect(pool.stats().reservedBytes).toBe(4 * PAGE);
    expect(pool.releaseIdle()).toBe(4 * PAGE); // empty for a whole period: released
    expect(pool.stats().reservedBytes).toBe(0);
    expect(device.usedBytes).toBe(0);
    pool.checkInvariants();
    pool.destroy();
  });

  it('dates every page of a block freed once ages are tracked, the inside as well as the ends', () => {
    const { pool } = setup();
    expect(pool.releaseIdle()).toBe(0); // ages are tracked from here on
    pool.acquire(4 * PAGE - 4096).release(); // pages 0–3: two ends and an inside of two
    expect(pool.releaseIdle()).toBe(0); // all four emptied in this period
    expect(pool.releaseIdle()).toBe(4 * PAGE); // all four empty for a whole period
    pool.checkInvariants();
    pool.destroy();
  });

  it('keeps live pages and pages reused in between', () => {
    const { pool } = setup();
    const held = pool.acquire(PAGE);
    pool.acquire(2 * PAGE).release();
    pool.releaseIdle();
    const mapsBefore = pool.stats().allocations;
    const again = pool.acquire(2 * PAGE); // back on the same (still mapped) pages
    expect(pool.stats().allocations).toBe(mapsBefore);
    pool.releaseIdle();
    expect(pool.stats().reservedBytes).toBeGreaterThanOrEqual(held.bytes + again.bytes);
    again.release();
    held.release();
    pool.checkInvariants();
    pool.destroy();
  });

  it('keeps retainMinBytes (and prewarmed memory) mapped', () => {
    const { pool } = setup({ retainMinBytes: 2 * PAGE });
    pool.acquire(6 * PAGE).release();
    pool.releaseIdle();
    pool.releaseIdle();
    expect(pool.stats().reservedBytes).toBe(2 * PAGE);
    pool.destroy();
  });

  it('keeps the lowest empty pages, where placement looks first: prewarmed shapes need no device call after', () => {
    for (const allocationBytes of [PAGE, 4 * PAGE]) {
      const device = new SimulatedDevice({ capacityBytes: GiB, allocationBytes });
      const pool = createPool({ device, policy: 'bestFit', retainMinBytes: 0, blockCacheBytes: 0 });
      const shape = { shape: [4 * MiB], dtype: 'uint8' as const };
      pool.prewarm([{ ...shape, count: 4 }]); // pages 0–7, the floor
      const held = [0, 1, 2, 3].map(() => pool.acquire(shape));
      pool.acquire(16 * MiB).release(); // pages 8–15, above them
      for (const b of held) b.release();
      pool.releaseIdle();
      expect(pool.releaseIdle()).toBe(16 * MiB);
      expect(pool.stats().reservedBytes).toBe(16 * MiB);
      const calls = pool.stats().allocations;
      const again = [0, 1, 2, 3].map(() => pool.acquire(shape));
      expect(pool.stats().allocations, `allocationBytes ${allocationBytes}`).toBe(calls);
      for (const b of again) b.release();
      pool.checkInvariants();
      pool.destroy();
      expect(device.usedBytes).toBe(0);
    }
  });

  it('prewarm keeps its memory mapped under retainFraction, until trim()', () => {
    for (const retainFraction of [0, 0.5]) {
      const device = new SimulatedDevice({ capacityBytes: GiB });
      const pool = createPool({ device, retainFraction, retainMinBytes: 0, blockCacheBytes: 0 });
      const shape = { shape: [4 * MiB], dtype: 'uint8' as const };
      pool.prewarm([{ ...shape, count: 4 }]);
      // Releasing the prewarmed blocks unmapped them at once: the floor was set only afterwards.
      expect(pool.stats().reservedBytes, `retainFraction ${retainFraction}`).toBe(16 * MiB);
      const calls = pool.stats().allocations;
      const blocks = [0, 1, 2, 3].map(() => pool.acquire(shape));
      expect(pool.stats().allocations).toBe(calls);
      for (const b of blocks) b.release();
      expect(pool.stats().reservedBytes).toBe(16 * MiB);
      pool.checkInvariants();
      expect(pool.trim()).toBe(16 * MiB);
      pool.destroy();
      expect(device.usedBytes).toBe(0);
    }
  });

  it('is 0 for segment pools and after destroy', () => {
    const device = new SimulatedDevice({ capacityBytes: GiB, vmm: false });
    const pool = createPool({ device });
    pool.acquire(PAGE).release();
    expect(pool.releaseIdle()).toBe(0);
    pool.destroy();
    expect(pool.releaseIdle()).toBe(0);
  });

  it('runs on a timer with releaseAfterMs', async () => {
    const { pool } = setup({ releaseAfterMs: 20 });
    pool.acquire(3 * PAGE).release();
    expect(pool.stats().reservedBytes).toBe(3 * PAGE);
    for (let waited = 0; waited < 5000 && pool.stats().reservedBytes > 0; waited += 20) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(pool.stats().reservedBytes).toBe(0);
    pool.destroy();
  });

  it('rejects bad page-release options with a typed error, reserving nothing', () => {
    const device = new SimulatedDevice({ capacityBytes: GiB });
    expect(() => createPool({ device, releaseAfterMs: -5 })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, releaseAfterMs: 'soon' as never })).toThrow(InvalidArgumentError);
    // Past Node's longest timer (2^31 - 1 ms) an interval runs every millisecond instead: refused.
    expect(() => createPool({ device, releaseAfterMs: 2 ** 31 })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, releaseAfterMs: 30 * 24 * 3600 * 1000 })).toThrow(
      expect.objectContaining({ code: 'ERR_GPUPOOL_RANGE', argument: 'releaseAfterMs' }),
    );
    expect(() => createPool({ device, highWaterSlack: -0.1 })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, swapsPerRaise: Number.NaN })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, mappedFitFactor: 0.5 })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, mappedFitFactor: '8' as never })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, mapAheadFraction: 1.5 })).toThrow(ArgumentRangeError);
    expect(() => createPool({ device, detectLeaks: 'maybe' as never })).toThrow(InvalidArgumentError);
    expect(() => createPool({ device, blockCacheBytes: -1 })).toThrow(ArgumentRangeError);
    expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
  });
});
