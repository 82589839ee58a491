/**
 * getGlobalPool(): one pool per device, and a process-wide default device for calls without one
 * (a HostDevice unless setDefaultDevice chose another).
 */
import { describe, expect, it } from 'vitest';
import { GiB, getGlobalPool, InvalidArgumentError, SimulatedDevice, setDefaultDevice } from '../src/index.js';

describe('getGlobalPool without a device', () => {
  it('uses a HostDevice by default, the same pool every time', () => {
    const pool = getGlobalPool();
    expect(pool.device.kind).toBe('host');
    expect(getGlobalPool()).toBe(pool);
    const block = pool.acquire(1000);
    expect(block.bytes).toBe(1000);
    block.release();
  });

  it('uses the device set with setDefaultDevice, and a new pool after destroy', () => {
    const device = new SimulatedDevice({ capacityBytes: GiB });
    setDefaultDevice(device);
    const pool = getGlobalPool();
    expect(pool.device).toBe(device);
    expect(getGlobalPool(device)).toBe(pool);
    pool.destroy();
    const next = getGlobalPool();
    expect(next).not.toBe(pool);
    expect(next.device).toBe(device);
    next.destroy();
  });

  it('rejects what is not a device, changing nothing', () => {
    const before = getGlobalPool();
    expect(() => setDefaultDevice(null as never)).toThrow(InvalidArgumentError);
    expect(() => setDefaultDevice({} as never)).toThrow(InvalidArgumentError);
    expect(() => getGlobalPool(42 as never)).toThrow(InvalidArgumentError);
    expect(getGlobalPool()).toBe(before);
  });
});
