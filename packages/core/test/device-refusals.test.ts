/**
 * A device that refuses to take memory back (unmap, freeSegment, releaseRange), or to give it
 * (map, allocateSegment, reserve), at any call. fault-injection.test.ts fails memory-obtaining
 * calls only; here every call that moves memory can fail, in the middle of release(), trim(),
 * releaseIdle(), prewarm() and destroy(). Whatever fails: the error is typed, the books stay
 * exact (no block counted twice, none lost), the pool stays usable, and once the device accepts
 * again, destroy() returns every byte.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type Block,
  createPool,
  type Device,
  DeviceError,
  DeviceOutOfMemoryError,
  isDeviceError,
  MiB,
  type Pool,
  policyNames,
  SimulatedDevice,
} from '../src/index.js';
import { expectCode } from './conformance/pool-conformance.js';
import { prng } from './helpers/prng.js';

const PAGE_BYTES = 2 * MiB;
const MEMORY_CALLS = ['reserve', 'releaseRange', 'map', 'unmap', 'allocateSegment', 'freeSegment'] as const;
type MemoryCall = (typeof MEMORY_CALLS)[number];

/**
 * `inner` behind a wrapper that counts its memory calls (from 1) and refuses those `refuse` says
 * so: calls that obtain memory with DeviceOutOfMemoryError, calls that give it back with DeviceError.
 */
function refusing(inner: SimulatedDevice): {
  device: Device;
  refuse: { next: (call: MemoryCall, index: number) => boolean };
  calls: () => number;
} {
  let index = 0;
  const refuse = { next: (_call: MemoryCall, _index: number) => false };
  const properties: PropertyDescriptorMap = {};
  for (const call of MEMORY_CALLS) {
    properties[call] = {
      value(...args: unknown[]) {
        index++;
        if (refuse.next(call, index)) {
          if (call === 'map' || call === 'allocateSegment' || call === 'reserve')
            throw new DeviceOutOfMemoryError(call, 0, 'refused by the test');
          throw new DeviceError(call, 'refused by the test');
        }
        return (inner[call] as (...a: unknown[]) => unknown).apply(inner, args);
      },
    };
  }
  return { device: Object.create(inner, properties) as Device, refuse, calls: () => index };
}

/** Refuses the next `count` calls named `call`. */
function refuseNext(call: MemoryCall, count = 1): (c: MemoryCall) => boolean {
  return (c) => c === call && count-- > 0;
}

afterEach(() => {
  vi.useRealTimers();
});

describe('a device that refuses to take memory back', () => {
  it('a release that unmaps on the way (retainFraction) completes, counting the block once', () => {
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const { device, refuse } = refusing(inner);
    const pool = createPool({ device, retainFraction: 0, retainMinBytes: 0, detectLeaks: false });
    const kept = pool.acquire(MiB);
    const block = pool.acquire(8 * MiB);
    refuse.next = refuseNext('unmap');
    block.release(); // its empty pages are unmapped on the way: refused, so they stay mapped
    expect(block.released).toBe(true);
    expect(pool.stats().liveBlocks).toBe(1);
    expect(pool.stats().liveBytes).toBe(MiB);
    expect(pool.stats().reservedBytes).toBe(inner.usedBytes);
    pool.checkInvariants();
    expectCode(() => block.release(), 'ERR_GPUPOOL_DOUBLE_RELEASE');
    expect(pool.stats().liveBytes).toBe(MiB);
    // The pages kept go back with the next release, or trim().
    pool.acquire(4 * MiB).release();
    expect(pool.stats().reservedBytes).toBeLessThanOrEqual(2 * PAGE_BYTES);
    kept.release();
    pool.checkInvariants();
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
  });

  it('a refusal thrown by another copy of DeviceError (the other module format) is one all the same', () => {
    // A CudaDevice required as CommonJS throws the CommonJS build's classes into an ESM pool.
    class ForeignDeviceError extends Error {
      readonly code = 'ERR_GPUPOOL_DEVICE';
      readonly call = 'unmap';
    }
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    let refuseUnmap = false;
    const device = Object.create(inner, {
      unmap: {
        value(...args: unknown[]) {
          if (refuseUnmap) throw new ForeignDeviceError('unmap: refused by the test');
          return (inner.unmap as (...a: unknown[]) => unknown).apply(inner, args);
        },
      },
    }) as Device;
    expect(isDeviceError(new ForeignDeviceError('x'))).toBe(true);
    expect(isDeviceError(new Error('x'))).toBe(false);
    const pool = createPool({ device, retainFraction: 0, retainMinBytes: 0, detectLeaks: false });
    const kept = pool.acquire(MiB);
    const block = pool.acquire(8 * MiB);
    refuseUnmap = true;
    block.release(); // the unmap on the way is refused: best effort, the release completes
    refuseUnmap = false;
    expect(pool.stats().liveBytes).toBe(MiB);
    pool.checkInvariants();
    kept.release();
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
  });

  it('the releaseAfterMs timer survives a refusal, and releases once the device accepts', () => {
    vi.useFakeTimers();
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const { device, refuse } = refusing(inner);
    const pool = createPool({ device, releaseAfterMs: 10, retainMinBytes: 0, detectLeaks: false });
    pool.acquire(4 * MiB).release();
    refuse.next = (call) => call === 'unmap';
    vi.advanceTimersByTime(100); // a throwing timer callback would crash the process
    expect(pool.stats().reservedBytes).toBe(4 * MiB);
    refuse.next = () => false;
    vi.advanceTimersByTime(100);
    expect(pool.stats().reservedBytes).toBe(0);
    expect(inner.usedBytes).toBe(0);
    pool.destroy();
  });

  it('trim() refused for one segment keeps it as free space, gives back the others, and says so', () => {
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB, vmm: false });
    const { device, refuse } = refusing(inner);
    const pool = createPool({ device, detectLeaks: false });
    // A 15 MiB block takes a segment of its own (rounded up to 16 MiB).
    const blocks = [pool.acquire(15 * MiB), pool.acquire(15 * MiB), pool.acquire(15 * MiB)];
    for (const b of blocks) b.release();
    expect(pool.stats().reservedBytes).toBe(48 * MiB);
    refuse.next = refuseNext('freeSegment');
    expectCode(() => pool.trim(), 'ERR_GPUPOOL_DEVICE');
    expect(pool.stats().reservedBytes).toBe(16 * MiB);
    expect(pool.stats().reservedBytes).toBe(inner.usedBytes);
    pool.checkInvariants();
    // The refused segment is still the pool's: a block is served from it without a device call.
    const calls = pool.stats().allocations;
    pool.acquire(15 * MiB).release();
    expect(pool.stats().allocations).toBe(calls);
    expect(pool.trim()).toBe(16 * MiB);
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
    expect(inner.openAllocations).toEqual({ ranges: 0, segments: 0 });
  });

  describe.each(['vmm', 'segments'] as const)('destroy() in %s mode', (mode) => {
    it('refused in part gives back the rest, says so, and finishes when called again', () => {
      const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
      const { device, refuse } = refusing(inner);
      const pool = createPool({ device, mode, detectLeaks: false, blockCacheBytes: 0 });
      // Blocks in separate runs (vmm: mapped runs split by a hole; segments: one each).
      const blocks = [pool.acquire(12 * MiB), pool.acquire(12 * MiB), pool.acquire(12 * MiB)];
      blocks[1]!.release();
      if (mode === 'vmm') pool.trim();
      const reserved = pool.stats().reservedBytes;
      refuse.next = refuseNext(mode === 'vmm' ? 'unmap' : 'freeSegment');
      expectCode(() => pool.destroy(), 'ERR_GPUPOOL_DEVICE');
      expect(pool.destroyed).toBe(true);
      expect(inner.usedBytes).toBeGreaterThan(0);
      expect(inner.usedBytes).toBeLessThan(reserved);
      expect(pool.stats().reservedBytes).toBe(inner.usedBytes); // what the device kept, said
      expect(pool.stats().liveBytes).toBe(0);
      expectCode(() => pool.acquire(16), 'ERR_GPUPOOL_POOL_DESTROYED');
      blocks[0]!.release(); // inert
      pool.destroy();
      expect(inner.usedBytes).toBe(0);
      expect(inner.openAllocations).toEqual({ ranges: 0, segments: 0 });
      expect(pool.stats().reservedBytes).toBe(0);
      pool.destroy(); // idempotent once done
    });
  });
});

interface Config {
  policy: string;
  mode: 'vmm' | 'segments';
  /** Pages per device allocation (vmm). */
  allocationPages: number;
  retainFraction: number | undefined;
}

/**
 * A scripted workload on streams 0 and 1: acquires (bytes and shapes, aligned), releases, trim(),
 * releaseIdle(), prewarm() and finished work, refusing the device calls `refuseAt` names. After
 * each step the books equal the blocks held; at the end, with every call accepted, the pool is
 * destroyed (after one refused attempt when `refuseInDestroy`) and the device holds nothing.
 * Returns the number of device calls made.
 */
function workload(config: Config, seed: number, refuseAt: ReadonlySet<number>, refuseInDestroy = 0): number {
  const inner = new SimulatedDevice({
    capacityBytes: 256 * MiB,
    allocationBytes: config.allocationPages * PAGE_BYTES,
  });
  const { device, refuse, calls } = refusing(inner);
  refuse.next = (_call, index) => refuseAt.has(index);
  let pool: Pool;
  try {
    pool = createPool({
      device,
      policy: config.policy,
      mode: config.mode,
      limitBytes: 64 * MiB,
      retainFraction: config.retainFraction,
      retainMinBytes: 0,
      detectLeaks: false,
    });
  } catch (error) {
    expect((error as { code?: string }).code).toBe('ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY');
    expect(inner.openAllocations).toEqual({ ranges: 0, segments: 0 });
    return calls();
  }
  const s1 = inner.streams.createStream();
  const random = prng(seed);
  const pick = <T>(options: readonly T[]): T => options[Math.floor(random() * options.length)]!;
  const held: Block[] = [];
  const expectTyped = (what: string, error: unknown): void => {
    const code = (error as { code?: string }).code;
    if (code !== 'ERR_GPUPOOL_OUT_OF_MEMORY' && code !== 'ERR_GPUPOOL_DEVICE')
      throw new Error(`${what}: unexpected ${code}: ${(error as Error).stack}`);
  };
  const check = (what: string): void => {
    pool.checkInvariants();
    const stats = pool.stats();
    const liveBytes = held.reduce((sum, b) => sum + b.bytes, 0);
    if (stats.liveBlocks !== held.length || stats.liveBytes !== liveBytes)
      throw new Error(`${what}: pool says ${stats.liveBlocks} blocks, ${stats.liveBytes} bytes`);
    if (stats.reservedBytes !== inner.usedBytes)
      throw new Error(`${what}: reserved ${stats.reservedBytes}, device ${inner.usedBytes}`);
    if (stats.peakReservedBytes < stats.reservedBytes) throw new Error(`${what}: peak below reserved`);
  };
  for (let i = 0; i < 100; i++) {
    const what = `step ${i}`;
    const r = random();
    try {
      if (r < 0.45) {
        const bytes = pick([0, 300, 5000, 70_000, PAGE_BYTES + 5, 5 * MiB, 12 * MiB]);
        const options = { stream: random() < 0.3 ? s1 : 0, alignmentBytes: pick([256, 4096, PAGE_BYTES]) };
        held.push(
          random() < 0.3
            ? pool.acquire({ shape: [bytes], dtype: 'uint8' }, options)
            : pool.acquire(bytes, options),
        );
      } else if (r < 0.8) {
        if (held.length > 0) {
          const at = Math.floor(random() * held.length);
          held[at]!.release();
          held.splice(at, 1);
        }
      } else if (r < 0.85) {
        pool.trim();
      } else if (r < 0.9) {
        pool.releaseIdle();
      } else if (r < 0.95) {
        pool.prewarm([
          { shape: [Math.floor(random() * 3 * MiB)], count: 1 + Math.floor(random() * 3) },
          { shape: [1000], dtype: 'float32', count: 2 },
        ]);
      } else {
        inner.completeAllWork();
      }
    } catch (error) {
      expectTyped(what, error);
    }
    check(what);
  }
  const made = calls();
  refuse.next = () => false;
  if (refuseInDestroy > 0) {
    const at = made + refuseInDestroy;
    refuse.next = (_call, index) => index === at;
    try {
      pool.destroy();
    } catch (error) {
      expectTyped('destroy', error);
    }
    refuse.next = () => false;
  } else {
    for (const b of held) b.release();
    held.length = 0;
    check('end');
  }
  pool.destroy();
  expect(inner.usedBytes).toBe(0);
  expect(inner.openAllocations).toEqual({ ranges: 0, segments: 0 });
  return made;
}

const CONFIGS: Config[] = policyNames().flatMap((policy) => [
  { policy, mode: 'vmm', allocationPages: 1, retainFraction: 0.1 },
  { policy, mode: 'vmm', allocationPages: 4, retainFraction: undefined },
  { policy, mode: 'segments', allocationPages: 1, retainFraction: undefined },
]);

describe.each(CONFIGS)('policy $policy, $mode mode, $allocationPages-page allocations', (config) => {
  it('a refusal at every device call of a workload: typed errors, exact books, every byte back', () => {
    for (const seed of [1, 2]) {
      const total = workload(config, seed, new Set());
      for (let k = 1; k <= total + 1; k++) workload(config, seed, new Set([k]));
      for (let k = 1; k <= 3; k++) workload(config, seed, new Set(), k);
    }
  });
});
