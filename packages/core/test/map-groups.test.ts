/**
 * Allocation groups: on a device whose physical allocations span several pages (allocationBytes,
 * as CudaDevice makes them) the VMM backing unmaps only whole allocations, and only once nothing
 * in them is occupied; SimulatedDevice with allocationBytes refuses anything else, so these tests
 * would throw if the backing ever tried.
 */
import { describe, expect, it } from 'vitest';
import { ArgumentRangeError, createPool, DeviceError, MiB, SimulatedDevice } from '../src/index.js';

const PAGE = 2 * MiB;

describe('SimulatedDevice with allocationBytes', () => {
  it('unmaps whole allocations, one or several adjacent, and refuses part of one without changing anything', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB, allocationBytes: 64 * MiB });
    expect(device.allocationBytes).toBe(64 * MiB);
    const range = device.reserve(32 * MiB);
    device.map(range, 0, 3 * PAGE);
    device.map(range, 3 * PAGE, PAGE);
    expect(() => device.unmap(range, 0, 2 * PAGE)).toThrow(DeviceError);
    expect(() => device.unmap(range, PAGE, 3 * PAGE)).toThrow(/whole allocations/);
    expect(device.usedBytes).toBe(4 * PAGE);
    device.unmap(range, 0, 4 * PAGE); // both calls at once
    expect(device.usedBytes).toBe(0);
    device.releaseRange(range);
  });

  it('cuts a map run at window boundaries: each window part unmaps on its own', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB, allocationBytes: 2 * PAGE });
    const range = device.reserve(32 * MiB);
    device.map(range, PAGE, 4 * PAGE); // allocations [1], [2, 3], [4]
    expect(() => device.unmap(range, 2 * PAGE, PAGE)).toThrow(/whole allocations/);
    device.unmap(range, 2 * PAGE, 2 * PAGE);
    device.unmap(range, PAGE, PAGE);
    device.unmap(range, 4 * PAGE, PAGE);
    expect(device.usedBytes).toBe(0);
    device.releaseRange(range);
  });

  it('keeps one page per allocation by default: any page run unmaps', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB });
    expect(device.allocationBytes).toBe(PAGE);
    const range = device.reserve(32 * MiB);
    device.map(range, 0, 3 * PAGE);
    device.unmap(range, PAGE, PAGE);
    expect(device.usedBytes).toBe(2 * PAGE);
    device.unmap(range, 0, PAGE);
    device.unmap(range, 2 * PAGE, PAGE);
    device.releaseRange(range);
  });

  it('rejects an allocation size that is not a multiple of the page with a typed error naming it', () => {
    for (const bad of [3 * MiB, 0, -PAGE, Number.NaN, '4' as never]) {
      expect(() => new SimulatedDevice({ capacityBytes: 64 * MiB, allocationBytes: bad })).toThrow(
        ArgumentRangeError,
      );
      expect(() => new SimulatedDevice({ capacityBytes: 64 * MiB, allocationBytes: bad })).toThrow(
        /allocationBytes/,
      );
    }
  });
});

describe('VmmBacking over map groups', () => {
  function setup(limitMiB: number) {
    // Allocations as large as the arena: every map call is one allocation, as in the comments below.
    const device = new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes: 4096 * MiB });
    const pool = createPool({ device, policy: 'bestFit', limitBytes: limitMiB * MiB, detectLeaks: false });
    return { device, pool };
  }

  it('maps each missing run in one call and reports one snapshot run per call', () => {
    const { device, pool } = setup(256);
    const a = pool.acquire(5 * PAGE);
    const b = pool.acquire(3 * PAGE);
    expect(device.calls.map).toBe(2);
    expect(pool.snapshot().arenas[0]!.mappedRuns).toEqual([
      [0, 5],
      [5, 3],
    ]);
    a.release();
    b.release();
    pool.checkInvariants();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('trim gives back only groups with no occupied page, whole', () => {
    const { device, pool } = setup(256);
    const big = pool.acquire(4 * PAGE); // group [0, 4)
    big.release();
    const small = pool.acquire(PAGE); // lands in page 0 of that group: the group stays busy
    expect(pool.trim()).toBe(0);
    expect(pool.stats().reservedBytes).toBe(4 * PAGE);
    pool.checkInvariants();
    small.release();
    expect(pool.trim()).toBe(4 * PAGE);
    expect(device.usedBytes).toBe(0);
    pool.checkInvariants();
    pool.destroy();
  });

  it('at the high-water mark swaps out whole empty groups', () => {
    const { device, pool } = setup(256);
    const a = pool.acquire(2 * PAGE); // group [0, 2)
    const b = pool.acquire(2 * PAGE); // group [2, 4); peak 4 pages
    a.release();
    const c = pool.acquire(3 * PAGE); // no room in [0, 2): goes to [4, 7), needs 3 new pages
    expect(pool.snapshot().arenas[0]!.mappedRuns).toEqual([
      [2, 2],
      [4, 3],
    ]); // the empty group [0, 2) went first
    expect(device.usedBytes).toBe(5 * PAGE);
    pool.checkInvariants();
    b.release();
    c.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('never unmaps a group that an occupied block still touches, even when most of it is empty', () => {
    const { device, pool } = setup(256);
    const a = pool.acquire(4 * PAGE); // group [0, 4)
    const b = pool.acquire(PAGE); // group [4, 5); peak 5 pages
    a.release();
    const pin = pool.acquire(PAGE); // page 0: the group [0, 4) is busy, pages 1-3 empty
    const c = pool.acquire(4 * PAGE); // [1, 4) is too small: goes to [5, 9)
    // A 'page' device would have unmapped pages 1-3; here the mark rises instead.
    expect(pool.snapshot().arenas[0]!.mappedRuns).toEqual([
      [0, 4],
      [4, 1],
      [5, 4],
    ]);
    expect(device.usedBytes).toBe(9 * PAGE);
    pool.checkInvariants();
    for (const block of [b, pin, c]) block.release();
    expect(pool.trim()).toBe(9 * PAGE);
    pool.destroy();
  });
});

describe('retainFraction on a device with multi-page allocations', () => {
  it('keeps retainMinBytes and prewarmed memory mapped: a whole group is not unmapped below the floor', () => {
    // Groups of four pages: unmapping "down to" a floor of three pages unmapped both groups.
    const device = new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes: 4 * PAGE });
    const pool = createPool({
      device,
      policy: 'bestFit',
      retainFraction: 0,
      retainMinBytes: 3 * PAGE,
      blockCacheBytes: 0,
      detectLeaks: false,
    });
    pool.acquire(8 * PAGE).release(); // groups [0, 4) and [4, 8)
    expect(pool.stats().reservedBytes).toBe(4 * PAGE); // [4, 8) unmapped, [0, 4) kept
    pool.checkInvariants();
    expect(pool.trim()).toBe(4 * PAGE);

    // Prewarmed memory is the floor: one group of three pages holding a 5 MiB block.
    const shape = { shape: [5 * MiB], dtype: 'uint8' as const };
    pool.prewarm([{ ...shape, count: 1 }]);
    expect(pool.stats().reservedBytes).toBe(3 * PAGE);
    const calls = pool.stats().allocations;
    pool.acquire(shape).release();
    expect(pool.stats().allocations).toBe(calls);
    pool.checkInvariants();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });
});

describe('swap budget (swapsPerRaise) on a device with multi-page allocations', () => {
  function run(swapsPerRaise: number): number {
    const device = new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes: 4 * PAGE });
    const pool = createPool({
      device,
      policy: 'bestFit',
      detectLeaks: false,
      swapsPerRaise,
      mappedFitFactor: 0,
    });
    const a = pool.acquire(4 * PAGE); // [0, 4)
    const fence = pool.acquire(PAGE); // [4, 5)
    a.release();
    const b = pool.acquire(5 * PAGE); // [5, 10): swaps [0, 4) out, the budget of 1 is spent
    const g = pool.acquire(4 * PAGE); // [0, 4) again: nothing empty to swap, the mark rises to 10
    g.release(); // a whole allocation window of empty pages
    const h = pool.acquire(5 * PAGE); // [10, 15)
    const reservedPages = pool.stats().reservedBytes / PAGE;
    pool.checkInvariants();
    for (const block of [fence, b, h]) block.release();
    pool.destroy();
    return reservedPages;
  }

  it('swaps out a whole empty allocation window even with the budget spent', () => {
    expect(run(1)).toBe(11); // [0, 4) unmapped for [10, 15)
  });

  it('never swaps with a budget of 0', () => {
    expect(run(0)).toBe(15);
  });
});

describe('mapped-aware placement (mappedFitFactor)', () => {
  /**
   * Leaves two holes: [0, 2) unmapped (trimmed) and [3, 7) mapped but empty, with live blocks at
   * page 2 and page 7 around them; then asks for 2 pages. Best fit alone takes [0, 2), a map call.
   */
  function twoHoles(allocationBytes: number, mappedFitFactor?: number) {
    const device = new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes });
    const pool = createPool({ device, policy: 'bestFit', detectLeaks: false, mappedFitFactor });
    const x = pool.acquire(2 * PAGE); // [0, 2)
    const y = pool.acquire(PAGE); // [2, 3)
    const z = pool.acquire(4 * PAGE); // [3, 7)
    const fence = pool.acquire(PAGE); // [7, 8)
    x.release();
    pool.trim(); // unmaps [0, 2): the only empty allocation
    z.release(); // [3, 7) stays mapped, empty
    const mapsBefore = device.calls.map;
    const block = pool.acquire(2 * PAGE);
    const result = { page: block.offset / PAGE, mapCalls: device.calls.map - mapsBefore };
    pool.checkInvariants();
    for (const b of [y, fence, block]) b.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
    return result;
  }

  it('on a device with multi-page allocations, fills a mapped hole instead of mapping a tighter one', () => {
    expect(twoHoles(64 * MiB)).toEqual({ page: 3, mapCalls: 0 });
  });

  it('stays plain best fit when turned off, or where every page is an allocation of its own', () => {
    expect(twoHoles(64 * MiB, 0)).toEqual({ page: 0, mapCalls: 1 });
    expect(twoHoles(PAGE)).toEqual({ page: 0, mapCalls: 1 });
  });

  it('takes no mapped hole larger than mappedFitFactor times the request', () => {
    expect(twoHoles(64 * MiB, 1.5)).toEqual({ page: 0, mapCalls: 1 });
    expect(twoHoles(64 * MiB, 2)).toEqual({ page: 3, mapCalls: 0 });
  });
});

describe('map-ahead (mapAheadFraction)', () => {
  it('extends a run that lifts the high-water mark within its allocation window, as far as the fraction allows', () => {
    const device = new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes: 8 * PAGE });
    const pool = createPool({ device, policy: 'bestFit', detectLeaks: false, mapAheadFraction: 1 });
    const a = pool.acquire(2 * PAGE); // touches 2 pages: 2 more may be mapped ahead
    expect(device.calls.map).toBe(1);
    expect(pool.stats().reservedBytes).toBe(4 * PAGE);
    const b = pool.acquire(2 * PAGE); // [2, 4): mapped ahead, no call
    expect(device.calls.map).toBe(1);
    const c = pool.acquire(6 * PAGE); // [4, 10): 4 to the window's end, then 2 in the next window
    expect(pool.snapshot().arenas[0]!.mappedRuns).toEqual([
      [0, 4],
      [4, 4],
      [8, 8],
    ]);
    pool.checkInvariants();
    for (const block of [a, b, c]) block.release();
    expect(pool.trim()).toBe(16 * PAGE);
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('maps only the block when the device has no room for the pages ahead', () => {
    // limitBytes above the device's capacity: the device, not the pool's limit, refuses the 4 pages.
    const device = new SimulatedDevice({ capacityBytes: 3 * PAGE, allocationBytes: 8 * PAGE });
    const pool = createPool({
      device,
      policy: 'bestFit',
      detectLeaks: false,
      mapAheadFraction: 1,
      limitBytes: 16 * PAGE,
    });
    const a = pool.acquire(2 * PAGE); // 4 pages would not fit the device: 2 are mapped
    expect(pool.stats().reservedBytes).toBe(2 * PAGE);
    a.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });
});
