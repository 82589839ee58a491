/**
 * Backing edge cases found by the third audit: combinations of the page-release options with the
 * pool's limit, with device call refusals and with unusual layouts. Each test names the rule it holds.
 */
import { describe, expect, it } from 'vitest';
import { createPool, MiB, type PoolOptions, SimulatedDevice } from '../src/index.js';

describe('VmmBacking at limitBytes', () => {
  // An empty mapped hole of 12 MiB below a pinned page, and blocks that alternate between the hole
  // (12 MiB) and the space above the pin (14 MiB): at a 16 MiB limit each alternation must give back
  // the other side's empty pages. The swap budget and the slack decide when the high-water mark may
  // rise instead, but at the limit it cannot rise: what exceeds the limit is swapped out there and
  // then, not through out-of-memory recovery (which flushes caches, waits for every stream's frees
  // and unmaps every empty page).
  const cases: [string, Partial<PoolOptions>][] = [
    ['an exhausted swap budget (swapsPerRaise)', { swapsPerRaise: 2 }],
    ['swapsPerRaise 0', { swapsPerRaise: 0 }],
    ['highWaterSlack above the limit', { highWaterSlack: 1 }],
  ];
  for (const [what, options] of cases) {
    it(`swaps out what exceeds the limit instead of recovering from OOM: ${what}`, () => {
      const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
      const pool = createPool({
        device,
        limitBytes: 16 * MiB,
        policy: 'bestFit',
        detectLeaks: false,
        blockCacheBytes: 0,
        ...options,
      });
      const hole = pool.acquire(12 * MiB);
      const pin = pool.acquire(256);
      hole.release();
      for (let i = 0; i < 20; i++) {
        pool.acquire(14 * MiB).release();
        pool.acquire(12 * MiB).release();
        pool.checkInvariants();
      }
      const stats = pool.stats();
      expect(stats.fragmentationEvents).toBe(0);
      expect(stats.trims).toBe(0);
      expect(stats.outOfMemoryErrors).toBe(0);
      expect(stats.reservedBytes).toBe(device.usedBytes);
      expect(stats.peakReservedBytes).toBe(16 * MiB);
      pin.release();
      pool.destroy();
      expect(device.usedBytes).toBe(0);
    });
  }
});
