import { HostDevice, MiB } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { createLockedSharedPool, LockedSharedPool } from '../dist/index.js';

describe('locked shared pool (bench baseline)', () => {
  it('reuses freed blocks of a size class and is usable through an attached handle', () => {
    const device = new HostDevice({ capacityBytes: 64 * MiB });
    const pool = createLockedSharedPool({ device, arenaBytes: 16 * MiB });
    const a = pool.acquire(1000);
    const offset = a.offset;
    a.release();
    expect(() => a.release()).toThrow(/already released/);
    const other = LockedSharedPool.attach(pool.share());
    const b = other.acquire(900); // same 1 KiB class: the freed block comes back
    expect(b.offset).toBe(offset);
    expect(pool.stats()).toMatchObject({ liveBlocks: 1, acquires: 2 });
    b.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });
});
