/**
 * Backing edge cases found by the third audit: combinations of the page-release options with the
 * pool's limit, with device call refusals and with unusual layouts. Each test names the rule it holds.
 */
import { describe, expect, it } from 'vitest';
import {
  type Backing,
  createPolicy,
  createPool,
  type Device,
  DeviceError,
  failCalls,
  MiB,
  type Policy,
  type Pool,
  type PoolOptions,
  SegmentBacking,
  SimulatedDevice,
} from '../src/index.js';

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

/** A few idle periods pass (releaseIdle as its timer would call it): every byte goes back. */
function expectIdleGivesAllBack(pool: Pool, device: SimulatedDevice): void {
  for (let period = 0; period < 3; period++) pool.releaseIdle();
  expect(pool.stats().reservedBytes).toBe(0);
  expect(device.usedBytes).toBe(0);
  pool.checkInvariants();
  pool.destroy();
}

describe('releaseIdle with blocks released but not yet back in free space', () => {
  // releaseIdle() gives back memory that has held no live block for a whole period. A block released
  // into the block cache, or on another stream whose work has since finished, is no live block: its
  // pages must not stay mapped for ever because nothing acquires again (a grouped device would keep
  // a whole allocation for one cached 256-byte block).
  for (const allocationPages of [1, 4]) {
    it(`gives back pages held only by cached blocks (allocation of ${allocationPages} page(s))`, () => {
      const device = new SimulatedDevice({
        capacityBytes: 256 * MiB,
        allocationBytes: allocationPages * 2 * MiB,
      });
      const pool = createPool({ device, retainMinBytes: 0, detectLeaks: false, policy: 'bestFit' });
      const small = pool.acquire(256);
      pool.acquire(8 * MiB).release();
      small.release(); // into the block cache
      expect(pool.stats().cachedBytes).toBe(256);
      expectIdleGivesAllBack(pool, device);
    });
  }

  it('gives back pages held only by frees on another stream whose work has finished', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, retainMinBytes: 0, detectLeaks: false, blockCacheBytes: 0 });
    const stream = device.streams.createStream();
    pool.acquire(8 * MiB, { stream }).release(); // pending until the stream's work is done
    device.completeAllWork();
    expectIdleGivesAllBack(pool, device);
  });

  it('never waits for a stream: frees whose work is still queued stay pending', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, retainMinBytes: 0, detectLeaks: false, blockCacheBytes: 0 });
    const stream = device.streams.createStream();
    pool.acquire(8 * MiB, { stream }).release();
    pool.releaseIdle();
    pool.releaseIdle();
    expect(pool.stats().reservedBytes).toBe(8 * MiB);
    expect(pool.stats().crossStreamWaits).toBe(0);
    pool.checkInvariants();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });
});

describe('the retain floor of prewarm()', () => {
  // prewarm() keeps mapped the memory its shapes need. Prewarming the same shapes again needs the
  // same memory, so the floor must not grow with each call: ten calls for 16 MiB of blocks used to
  // make a 160 MiB floor, and neither releaseIdle() nor retainFraction gave anything back after.
  const shape = { shape: [4 * MiB], dtype: 'uint8' as const };
  it('does not grow when the same shapes are prewarmed again (releaseIdle)', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, policy: 'bestFit', retainMinBytes: 0, blockCacheBytes: 0 });
    for (let i = 0; i < 10; i++) pool.prewarm([{ ...shape, count: 4 }]); // pages 0–7
    pool.acquire(32 * MiB).release(); // pages 0–15
    pool.releaseIdle();
    expect(pool.releaseIdle()).toBe(16 * MiB);
    expect(pool.stats().reservedBytes).toBe(16 * MiB); // what the prewarmed shapes need
    pool.checkInvariants();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('does not grow when the same shapes are prewarmed again (retainFraction)', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, retainFraction: 0, retainMinBytes: 0, blockCacheBytes: 0 });
    for (let i = 0; i < 10; i++) pool.prewarm([{ ...shape, count: 4 }]);
    pool.acquire(32 * MiB).release();
    expect(pool.stats().reservedBytes).toBe(16 * MiB);
    pool.destroy();
  });

  it('adds up different shapes, and the same shape in one call', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, retainFraction: 0, retainMinBytes: 0, blockCacheBytes: 0 });
    pool.prewarm([{ ...shape, count: 2 }]);
    pool.prewarm([{ shape: [2 * MiB], dtype: 'int16', count: 1 }]); // another 4 MiB: 12 MiB
    pool.prewarm([
      { ...shape, count: 1 },
      { ...shape, count: 2 },
    ]); // three 4 MiB blocks at once: 16 MiB
    pool.acquire(32 * MiB).release();
    expect(pool.stats().reservedBytes).toBe(16 * MiB);
    expect(pool.trim()).toBe(16 * MiB);
    pool.destroy();
  });
});

describe('the pages a floor keeps where groups span several pages', () => {
  // Groups (allocations of 4 pages): [0–1] holds a live block, [2–3] and [4–7] are empty; the floor
  // is 3 pages. Unmapping [4–7] would leave 2 empty pages, under the floor, so it stays; the lower
  // group [2–3], where the next block lands, must stay too — releasing it kept the floor's count
  // with pages placement does not look at first, and the next block paid a map call.
  const setup = (options: Partial<PoolOptions>) => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB, allocationBytes: 8 * MiB });
    const pool = createPool({
      device,
      policy: 'bestFit',
      mappedFitFactor: 0,
      blockCacheBytes: 0,
      detectLeaks: false,
      retainMinBytes: 6 * MiB,
      ...options,
    });
    const held = pool.acquire(4 * MiB); // pages 0–1: a group of its own
    const mapsBefore = pool.stats().allocations;
    pool.acquire(12 * MiB).release(); // pages 2–7: groups [2–3] and [4–7]
    expect(pool.stats().allocations).toBe(mapsBefore + 1);
    expect(pool.snapshot().arenas[0]!.mappedRuns).toEqual([
      [0, 2],
      [2, 2],
      [4, 4],
    ]);
    return { device, pool, held };
  };
  const expectLowPagesKept = (pool: ReturnType<typeof createPool>) => {
    const calls = pool.stats().allocations;
    pool.acquire(4 * MiB).release(); // lands on pages 2–3
    expect(pool.stats().allocations).toBe(calls);
    pool.checkInvariants();
  };

  it('releaseIdle() keeps the lowest empty groups', () => {
    const { pool } = setup({});
    pool.releaseIdle();
    pool.releaseIdle();
    expect(pool.stats().reservedBytes).toBe(16 * MiB);
    expectLowPagesKept(pool);
    pool.destroy();
  });

  it('retainFraction keeps the lowest empty groups', () => {
    const { pool, held } = setup({ retainFraction: 0 });
    expect(pool.stats().reservedBytes).toBe(16 * MiB);
    expectLowPagesKept(pool);
    held.release();
    pool.destroy();
  });
});

describe('custom backings and policies', () => {
  // Bad input is refused by a typed error naming the argument, before anything is reserved. A
  // backing or policy missing a method the pool calls used to pass createPool() and fail later,
  // with a TypeError from inside acquire(), release() or destroy().
  const backing = (): Record<string, unknown> => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB, vmm: false });
    return new SegmentBacking({ device, limitBytes: 64 * MiB }) as unknown as Record<string, unknown>;
  };
  const methods = ['attach', 'grow', 'occupy', 'vacate', 'trim', 'arenaOf', 'snapshot', 'destroy'];
  for (const missing of methods) {
    it(`refuses a backing without ${missing}()`, () => {
      const device = new SimulatedDevice({ capacityBytes: 64 * MiB });
      const custom = backing();
      const partial = Object.create(custom, { [missing]: { value: undefined } }) as Backing;
      expect(() => createPool({ device, backing: partial })).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'backing' }),
      );
      expect(device.calls.reserve).toBe(0);
    });
  }
  it('refuses a backing without a page size', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB });
    const partial = Object.create(backing(), { pageBytes: { value: undefined } }) as Backing;
    expect(() => createPool({ device, backing: partial })).toThrow(
      expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'backing' }),
    );
  });

  const policyMethods = [
    'addRange',
    'removeRange',
    'allocate',
    'addressOf',
    'sizeOf',
    'free',
    'flush',
    'freeBytes',
    'largestFreeBytes',
    'forEachFree',
  ];
  for (const missing of policyMethods) {
    it(`refuses a policy without ${missing}()`, () => {
      const device = new SimulatedDevice({ capacityBytes: 64 * MiB });
      const policy = Object.create(createPolicy('bestFit'), { [missing]: { value: undefined } }) as Policy;
      expect(() => createPool({ device, policy })).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'policy' }),
      );
      expect(() => createPool({ device, policy: () => policy })).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'policy' }),
      );
      expect(device.calls.reserve).toBe(0);
    });
  }
});

describe('a stream call that fails in the middle of finishing frees', () => {
  // trim(), OOM recovery and acquire finish pending frees (and unsettled early frees) one by one. A
  // device call that throws half-way (synchronizeEvent, eventDone, destroyEvent) used to leave the
  // frees finished before it in the list: the next pass asked the device about events destroyed
  // already, so every later trim() or acquire on another stream threw, and a device that answered
  // would have freed those blocks twice.
  function failingStreams(inner: SimulatedDevice) {
    let failAt = -1;
    let calls = 0;
    const wrap =
      <A extends unknown[], R>(name: string, fn: (...args: A) => R) =>
      (...args: A): R => {
        if (++calls === failAt) throw new DeviceError(name, 'refused by the test');
        return fn(...args);
      };
    const s = inner.streams;
    const streams = {
      ...s,
      eventDone: wrap('eventDone', s.eventDone),
      synchronizeEvent: wrap('synchronizeEvent', s.synchronizeEvent),
      destroyEvent: wrap('destroyEvent', s.destroyEvent),
    };
    const device = Object.create(inner, { streams: { value: streams } }) as Device;
    return { device, failAfter: (n: number) => (failAt = calls + n) };
  }

  for (const failing of [1, 2, 3, 4, 5, 6]) {
    it(`pending frees on another stream: call ${failing} of trim() fails, the next trim() finishes`, () => {
      const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
      const { device, failAfter } = failingStreams(inner);
      const pool = createPool({ device, detectLeaks: false, blockCacheBytes: 0, retainMinBytes: 0 });
      const stream = inner.streams.createStream();
      for (let i = 0; i < 3; i++) pool.acquire(4 * MiB, { stream }).release(); // three pending frees
      failAfter(failing);
      try {
        pool.trim();
      } catch (error) {
        expect(error).toMatchObject({ code: 'ERR_GPUPOOL_DEVICE' });
      }
      pool.checkInvariants();
      pool.trim();
      pool.checkInvariants();
      expect(pool.stats().reservedBytes).toBe(0);
      const block = pool.acquire(4 * MiB, { stream });
      pool.checkInvariants();
      block.release();
      pool.destroy();
      expect(inner.usedBytes).toBe(0);
    });
  }

  for (const failing of [1, 2, 3, 4]) {
    it(`frees finished early for their own stream: call ${failing} of trim() fails, the next trim() finishes`, () => {
      const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
      const { device, failAfter } = failingStreams(inner);
      const pool = createPool({ device, detectLeaks: false, blockCacheBytes: 0, retainMinBytes: 0 });
      const stream = inner.streams.createStream();
      const held = [0, 1, 2].map(() => pool.acquire(4 * MiB, { stream }));
      for (const b of held) b.release();
      const again = pool.acquire(MiB, { stream }); // finishes the three early: their events stay unsettled
      again.release();
      failAfter(failing);
      try {
        pool.trim();
      } catch (error) {
        expect(error).toMatchObject({ code: 'ERR_GPUPOOL_DEVICE' });
      }
      pool.checkInvariants();
      pool.trim();
      pool.checkInvariants();
      expect(pool.stats().reservedBytes).toBe(0);
      pool.acquire(4 * MiB).release(); // stream 0: waits for nothing left
      pool.destroy();
      expect(inner.usedBytes).toBe(0);
    });
  }
});

/** `inner` as a device whose next synchronizeEvent (a wait for another stream's work) is refused. */
function refusingWaits(inner: SimulatedDevice): { device: Device; refuseNextWait: () => void } {
  let refuseNext = false;
  const s = inner.streams;
  const streams = {
    ...s,
    synchronizeEvent: (event: number) => {
      if (refuseNext) {
        refuseNext = false;
        throw new DeviceError('synchronizeEvent', 'refused by the test');
      }
      s.synchronizeEvent(event);
    },
  };
  const device = Object.create(inner, { streams: { value: streams } }) as Device;
  return { device, refuseNextWait: () => (refuseNext = true) };
}

describe('a release that finishes the pending list on the way', () => {
  it('completes, counting the block once, when a stream call fails there', () => {
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const { device, refuseNextWait } = refusingWaits(inner);
    const s = inner.streams;
    const pool = createPool({ device, detectLeaks: false, blockCacheBytes: 0 });
    const stream = s.createStream();
    const blocks = Array.from({ length: 4097 }, () => pool.acquire(256, { stream }));
    for (const b of blocks.slice(0, 4096)) b.release();
    const last = blocks[4096]!;
    refuseNextWait(); // the 4097th pending free makes the release wait for the others: refused
    last.release();
    expect(last.released).toBe(true);
    expect(pool.stats().liveBlocks).toBe(0);
    pool.checkInvariants();
    expect(() => last.release()).toThrow(expect.objectContaining({ code: 'ERR_GPUPOOL_DOUBLE_RELEASE' }));
    expect(pool.stats().liveBlocks).toBe(0);
    pool.trim();
    pool.checkInvariants();
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
  });
});

describe('an acquire that waits for another stream', () => {
  it('gives its block back when the wait is refused, leaving the books as they were', () => {
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const { device, refuseNextWait } = refusingWaits(inner);
    const s = inner.streams;
    const pool = createPool({ device, detectLeaks: false, blockCacheBytes: 0, retainMinBytes: 0 });
    const stream = s.createStream();
    pool.acquire(4 * MiB, { stream }).release();
    pool.acquire(MiB, { stream }).release(); // finishes the first free early: its event stays unsettled
    const before = pool.stats();
    refuseNextWait();
    // Stream 0 is given the same bytes, so it must wait for stream 1's work there: refused.
    expect(() => pool.acquire(4 * MiB)).toThrow(expect.objectContaining({ code: 'ERR_GPUPOOL_DEVICE' }));
    const after = pool.stats();
    expect(after.liveBlocks).toBe(before.liveBlocks);
    expect(after.reuses).toBe(before.reuses);
    expect(after.acquires).toBe(before.acquires);
    pool.checkInvariants();
    inner.completeAllWork();
    expect(pool.trim()).toBe(after.reservedBytes);
    expect(pool.stats().reservedBytes).toBe(0);
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
  });
});

describe('stand-in devices', () => {
  it('setFaults refuses a predicate that is no function, keeping the one it had', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB, failOn: failCalls(2) });
    expect(() => device.setFaults(42 as never)).toThrow(
      expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'failOn' }),
    );
    const range = device.reserve(32 * MiB); // call 1
    expect(() => device.map(range, 0, 2 * MiB)).toThrow(
      expect.objectContaining({ code: 'ERR_GPUPOOL_INJECTED_FAULT' }),
    );
    device.map(range, 0, 2 * MiB); // call 3
    device.setFaults(undefined);
    device.unmap(range, 0, 2 * MiB);
    device.releaseRange(range);
    expect(device.usedBytes).toBe(0);
  });
});
