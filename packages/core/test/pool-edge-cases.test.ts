/**
 * Pool behaviours the conformance suite cannot check on every device: failures of stream calls,
 * destroy with cross-stream frees still pending, OOM recovery through cached memory, and device
 * errors that come from another copy of core (recognised by their stable code).
 */
import { describe, expect, it, vi } from 'vitest';
import {
  type AddressRange,
  bytesOfShape,
  createPolicy,
  createPool,
  type Device,
  GiB,
  HostDevice,
  isGpuPoolError,
  MiB,
  policyNames,
  SimulatedDevice,
} from '../src/index.js';
import { expectCode } from './conformance/pool-conformance.js';

describe('pool edge cases', () => {
  it('gives exact offsets and pointers for blocks far past 4 GiB (address kept in granules)', () => {
    const device = new SimulatedDevice({ capacityBytes: 64 * GiB });
    const pool = createPool({ device, detectLeaks: false });
    const big = pool.acquire(5 * GiB);
    const small = pool.acquire(256 + 1);
    const snapshot = pool.snapshot();
    const entry = snapshot.blocks.find((b) => b.id === small.id)!;
    expect(small.offset).toBe(entry.offset);
    expect(small.offset).toBeGreaterThanOrEqual(5 * GiB);
    expect(small.offset % 256).toBe(0);
    const base = BigInt(snapshot.arenas.find((a) => a.id === small.arenaId)!.base);
    expect(small.ptr).toBe(base + BigInt(small.offset));
    small.release();
    expect(small.offset).toBe(entry.offset);
    big.release();
    pool.destroy();
  });

  it('a block held across destroy() gives no pointer: its memory may be another pool’s by then', () => {
    const device = new HostDevice({ capacityBytes: 64 * MiB });
    for (const name of policyNames()) {
      const first = createPool({ device, policy: name, detectLeaks: false });
      const stale = first.acquire(4096);
      const staleOffset = stale.offset;
      first.destroy();
      // A second pool gets the same device memory back.
      const second = createPool({ device, policy: name, detectLeaks: false });
      const fresh = second.acquire(4096);
      device.data.fill(fresh, 1);
      expectCode(() => stale.ptr, 'ERR_GPUPOOL_POOL_DESTROYED');
      expectCode(() => device.data.fill(stale, 7), 'ERR_GPUPOOL_POOL_DESTROYED');
      expectCode(() => device.view(stale), 'ERR_GPUPOOL_POOL_DESTROYED');
      expect(device.view(fresh).every((byte) => byte === 1)).toBe(true);
      // Inert otherwise: offset and arenaId stay readable, release() only detaches the handle.
      expect(stale.offset).toBe(staleOffset);
      expect(stale.released).toBe(false);
      stale.release();
      expectCode(() => stale.ptr, 'ERR_GPUPOOL_RELEASED_BLOCK');
      fresh.release();
      second.destroy();
    }
    expect(device.usedBytes).toBe(0);
  });

  it('rejects a name, captureStacks or arenaBytes it cannot use, naming the option, reserving nothing', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const bad: [Record<string, unknown>, string, string][] = [
      [{ name: 42 }, 'ERR_GPUPOOL_ARGUMENT', 'name'],
      [{ name: {} }, 'ERR_GPUPOOL_ARGUMENT', 'name'],
      // A string or number was taken for false: no stacks, silently.
      [{ captureStacks: 'yes' }, 'ERR_GPUPOOL_ARGUMENT', 'captureStacks'],
      [{ captureStacks: 1 }, 'ERR_GPUPOOL_ARGUMENT', 'captureStacks'],
      // The device's own check named its argument, `bytes`.
      [{ arenaBytes: 2 ** 60 }, 'ERR_GPUPOOL_RANGE', 'arenaBytes'],
      [{ arenaBytes: 1e300 }, 'ERR_GPUPOOL_RANGE', 'arenaBytes'],
    ];
    for (const [options, code, argument] of bad) {
      expectCode(() => createPool({ device, ...options }), code, argument);
    }
    expect(device.calls.reserve).toBe(0);
    expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
    const named = createPool({ device, name: 'decoder', captureStacks: false, arenaBytes: 3 * MiB + 1 });
    expect(named.snapshot().name).toBe('decoder');
    expect(named.snapshot().arenas[0]!.bytes).toBe(4 * MiB);
    named.destroy();
  });

  it('with limitBytes not a multiple of the page, holds whole pages below it and says so when out of memory', () => {
    for (const mode of ['vmm', 'segments'] as const) {
      const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
      const pool = createPool({ device, mode, limitBytes: 7 * MiB, detectLeaks: false });
      const block = pool.acquire(6 * MiB); // three pages: the most below the limit
      expect(pool.stats().reservedBytes).toBe(6 * MiB);
      block.release();
      const error = expectCode(() => pool.acquire(6.5 * MiB), 'ERR_GPUPOOL_OUT_OF_MEMORY') as Error & {
        details: { largestFreeBytes: number };
      };
      // The run quoted was the limit itself, 7 MiB: larger than the 6.5 MiB block just refused.
      expect(error.details.largestFreeBytes, mode).toBeLessThan(6.5 * MiB);
      expect(error.message).toMatch(/largest free run 6\.00 MiB/);
      pool.checkInvariants();
      pool.destroy();
      expect(device.usedBytes).toBe(0);
    }
  });

  it('rejects a shape whose dimensions are past 2^53, even with a zero among them (the size was NaN)', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    // 1e200 × 1e200 overflows to Infinity, and × 0 gave NaN bytes, which no check caught: the
    // policy was then asked for NaN bytes and never returned.
    for (const shape of [
      [1e200, 1e200, 0],
      [2 ** 60, 0],
      [0, 2 ** 53],
    ]) {
      expect(() => bytesOfShape(shape, 'uint8')).toThrow(
        expect.objectContaining({
          code: 'ERR_GPUPOOL_RANGE',
          argument: expect.stringMatching(/^shape\[\d\]$/),
        }),
      );
    }
    for (const name of policyNames()) {
      const pool = createPool({ device, policy: name, detectLeaks: false });
      expectCode(
        () => pool.acquire({ shape: [1e200, 1e200, 0], dtype: 'uint8' }),
        'ERR_GPUPOOL_RANGE',
        'shape[0]',
      );
      expectCode(
        () => pool.prewarm([{ shape: [2 ** 60, 0], count: 1 }]),
        'ERR_GPUPOOL_RANGE',
        'specs[0].shape[0]',
      );
      // Safe dimensions with a zero are an empty tensor, as before.
      const empty = pool.acquire({ shape: [2 ** 40, 2 ** 40, 0], dtype: 'float32' });
      expect(empty.bytes).toBe(0);
      empty.release();
      expect(pool.stats().liveBlocks).toBe(0);
      pool.checkInvariants();
      pool.destroy();
    }
    expect(device.usedBytes).toBe(0);
  });

  it('an empty pool serves a block of nearly its limit whatever the arena size (bestFitPools’ halves)', () => {
    // A HostDevice cannot reserve twice its memory, so the arena is its size; bestFitPools, the
    // default where allocations span pages, cut it in halves and refused any block above one half.
    const host = new HostDevice({ capacityBytes: 256 * MiB, allocationBytes: 8 * MiB });
    const hostPool = createPool({ device: host, detectLeaks: false });
    expect(hostPool.policy.name).toBe('bestFitPools');
    hostPool.acquire(200 * MiB).release();
    hostPool.checkInvariants();
    hostPool.destroy();
    expect(host.usedBytes).toBe(0);
    // The same with an arenaBytes of the limit, for every policy.
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    for (const name of policyNames()) {
      const pool = createPool({ device, policy: name, limitBytes: 128 * MiB, arenaBytes: 128 * MiB });
      pool.acquire(120 * MiB).release();
      pool.checkInvariants();
      pool.destroy();
    }
    expect(device.usedBytes).toBe(0);
  });

  it('a release whose stream the device refuses throws, and the block stays live and releasable', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const s1 = device.streams.createStream();
    const block = pool.acquire(4096, { stream: s1 });
    device.streams.destroyStream(s1);
    const before = pool.stats();
    expectCode(() => block.release(), 'ERR_GPUPOOL_DEVICE');
    expect(block.released).toBe(false);
    expect(pool.stats()).toEqual(before);
    pool.checkInvariants();
    // The user can move the block to a live stream and release it properly.
    block.stream = 0;
    block.release();
    expect(pool.stats().liveBlocks).toBe(0);
    pool.destroy();
    expect(device.usedBytes).toBe(0);
  });

  it('destroy with cross-stream frees still pending returns every byte', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const s1 = device.streams.createStream();
    for (let i = 0; i < 10; i++) pool.acquire(3 * MiB, { stream: s1 }).release();
    expect(device.usedBytes).toBeGreaterThan(0);
    pool.destroy();
    expect(device.usedBytes).toBe(0);
    expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
  });

  it('destroy waits for the work of pending cross-stream frees and gives their events back', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, detectLeaks: false });
    const s1 = device.streams.createStream();
    const recorded = vi.spyOn(device.streams, 'recordEvent');
    const synchronized = vi.spyOn(device.streams, 'synchronizeEvent');
    const destroyed = vi.spyOn(device.streams, 'destroyEvent');
    const a = pool.acquire(4096, { stream: s1 });
    const b = pool.acquire(8192, { stream: s1 });
    a.release();
    pool.acquire(16_384, { stream: s1 }); // finishes a's free early, for stream 1: its event is kept
    b.release(); // pending
    const events = recorded.mock.results.map((r) => r.value as number);
    expect(events).toHaveLength(2);
    expect(destroyed).not.toHaveBeenCalled();
    pool.destroy();
    for (const event of events) {
      expect(synchronized).toHaveBeenCalledWith(event);
      expect(destroyed).toHaveBeenCalledWith(event);
    }
    expect(device.usedBytes).toBe(0);
  });

  it('serves one pool per Policy instance: a second pool given it throws, reserving nothing', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    for (const name of policyNames()) {
      const policy = createPolicy(name);
      const first = createPool({ device, policy, limitBytes: 32 * MiB, detectLeaks: false });
      const held = first.acquire(MiB);
      const calls = { ...device.calls };
      // Its free space is the first pool's: shared, the two would hand out overlapping blocks.
      let error: unknown;
      try {
        createPool({ device, policy, limitBytes: 32 * MiB });
      } catch (e) {
        error = e;
      }
      expect(error).toMatchObject({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'policy' });
      first.destroy();
      expect(() => createPool({ device, policy: () => policy })).toThrow(
        expect.objectContaining({ code: 'ERR_GPUPOOL_ARGUMENT', argument: 'policy' }),
      );
      expect(device.calls.reserve).toBe(calls.reserve);
      held.release();
    }
    expect(device.usedBytes).toBe(0);
    expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
  });

  it('in segment mode, aligns blocks on the device even where segments are aligned to less than a page', () => {
    // Segments below a page (4 MiB here) are aligned to 512 bytes, as cudaMalloc aligns to 256:
    // a small segment carved first puts the pool's 2 MiB segments off every alignment above 512.
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB, pageBytes: 4 * MiB, vmm: false });
    const foreign = device.allocateSegment(1000);
    for (const name of policyNames()) {
      const pool = createPool({ device, policy: name, detectLeaks: false, blockCacheBytes: 0 });
      const blocks = [pool.acquire(1000)];
      for (let alignmentBytes = 512; alignmentBytes <= 4 * MiB; alignmentBytes *= 2) {
        const block = pool.acquire(1000, { alignmentBytes });
        expect(block.ptr % BigInt(alignmentBytes), `${name}, ${alignmentBytes}-byte alignment`).toBe(0n);
        blocks.push(block);
      }
      pool.checkInvariants();
      for (const b of blocks) b.release();
      pool.destroy();
    }
    device.freeSegment(foreign);
    expect(device.usedBytes).toBe(0);
  });

  it('recovers from OOM by flushing cached blocks (a fragmentation event, not an error)', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, policy: 'exactShape', limitBytes: 16 * MiB, detectLeaks: false });
    const cached = [0, 1, 2].map(() => pool.acquire({ shape: [4 * MiB], dtype: 'uint8' }));
    for (const b of cached) b.release(); // 12 MiB kept in the shape's bucket
    const other = pool.acquire({ shape: [10 * MiB], dtype: 'uint8' });
    const stats = pool.stats();
    expect(stats.fragmentationEvents).toBe(1);
    expect(stats.outOfMemoryErrors).toBe(0);
    expect(stats.reservedBytes).toBeLessThanOrEqual(16 * MiB);
    other.release();
    pool.destroy();
  });

  it('treats a device refusal from another copy of core (same code, other class) as OOM', () => {
    const inner = new SimulatedDevice({ capacityBytes: 256 * MiB });
    let refuse = false;
    // A device whose errors are not instances of this core's classes, as with a CommonJS and an
    // ESM copy of core in one process: only the stable code identifies them.
    const device: Device = Object.create(inner, {
      map: {
        value(range: AddressRange, offsetBytes: number, bytes: number) {
          if (refuse) {
            refuse = false;
            throw Object.assign(new Error('map: device out of memory'), {
              code: 'ERR_GPUPOOL_DEVICE_OUT_OF_MEMORY',
            });
          }
          inner.map(range, offsetBytes, bytes);
        },
      },
    });
    const pool = createPool({ device, detectLeaks: false });
    refuse = true;
    const block = pool.acquire(MiB); // refused once, recovered, retried
    expect(pool.stats().fragmentationEvents).toBe(1);
    block.release();
    pool.destroy();
    expect(inner.usedBytes).toBe(0);
  });
});

describe('isGpuPoolError', () => {
  it('recognises every error the pool throws on purpose, the argument errors included', () => {
    const pool = createPool({
      device: new SimulatedDevice({ capacityBytes: 64 * MiB }),
      limitBytes: 16 * MiB,
    });
    const thrown = (fn: () => unknown): unknown => {
      try {
        fn();
      } catch (error) {
        return error;
      }
      throw new Error('expected a throw');
    };
    const block = pool.acquire(512);
    block.release();
    const errors = [
      thrown(() => pool.acquire('many' as never)), // InvalidArgumentError, a TypeError
      thrown(() => pool.acquire(-1)), // ArgumentRangeError, a RangeError
      thrown(() => pool.acquire(32 * MiB)), // OutOfMemoryError
      thrown(() => block.release()), // DoubleReleaseError
    ];
    expect(errors.map((e) => (e as { code: string }).code)).toEqual([
      'ERR_GPUPOOL_ARGUMENT',
      'ERR_GPUPOOL_RANGE',
      'ERR_GPUPOOL_OUT_OF_MEMORY',
      'ERR_GPUPOOL_DOUBLE_RELEASE',
    ]);
    for (const e of errors) expect(isGpuPoolError(e)).toBe(true);
    for (const other of [
      new TypeError('x'),
      { code: 'ERR_GPUPOOL_ARGUMENT' },
      'ERR_GPUPOOL_RANGE',
      undefined,
    ])
      expect(isGpuPoolError(other)).toBe(false);
    pool.destroy();
  });
});
