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
