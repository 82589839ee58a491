/**
 * Pool behaviours the conformance suite cannot check on every device: failures of stream calls,
 * destroy with cross-stream frees still pending, OOM recovery through cached memory, and device
 * errors that come from another copy of core (recognised by their stable code).
 */
import { describe, expect, it, vi } from 'vitest';
import {
  type AddressRange,
  createPolicy,
  createPool,
  type Device,
  GiB,
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
