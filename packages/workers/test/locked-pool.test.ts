import { HostDevice, InvalidArgumentError, MiB, SimulatedDevice } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { createLockedSharedPool, LockedSharedPool, UnshareableDeviceError } from '../dist/index.js';

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

  it('a device other threads cannot reach is refused before anything is reserved or mapped', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * MiB });
    expect(() => createLockedSharedPool({ device, arenaBytes: 16 * MiB })).toThrow(UnshareableDeviceError);
    expect(device.calls.reserve).toBe(0);
    expect(device.usedBytes).toBe(0);
  });

  it('out of memory says what it knows and marks what it does not count as unknown, never NaN', () => {
    const device = new HostDevice({ capacityBytes: 64 * MiB });
    const pool = createLockedSharedPool({ device, arenaBytes: 4 * MiB });
    const held = [];
    let error: unknown;
    try {
      for (;;) held.push(pool.acquire(MiB));
    } catch (e) {
      error = e;
    }
    expect((error as { code?: string }).code).toBe('ERR_GPUPOOL_OUT_OF_MEMORY');
    expect((error as Error).message).not.toContain('NaN');
    expect((error as Error).message).toMatch(/live unknown/);
    for (const b of held) b.release();
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('attach() with something that is not a handle says so with a typed error', () => {
    for (const handle of [undefined, {}, { words: new SharedArrayBuffer(8) }])
      expect(() => LockedSharedPool.attach(handle as never)).toThrow(InvalidArgumentError);
  });
});
