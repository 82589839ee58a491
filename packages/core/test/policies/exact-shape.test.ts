/**
 * exactShape specifics (the seed design kept as the baseline): one FIFO per (dtype, shape) — or per
 * size for blocks acquired by bytes — of at most maxPerBucket (10) blocks; a request is served from
 * its own bucket or by fresh placement, never from another shape's blocks; no splitting of cached
 * blocks; flush empties every bucket.
 */
import { describe, expect, it } from 'vitest';
import { createPool, ExactShapePolicy, MiB, SimulatedDevice } from '../../src/index.js';

describe('ExactShapePolicy', () => {
  it('keeps a released block in its bucket and hands it back to the same key, first in first out', () => {
    const p = new ExactShapePolicy();
    p.addRange(0, 16 * MiB);
    const a = p.allocate(4096, 256, 'float16:32,64');
    const b = p.allocate(4096, 256, 'float16:32,64');
    expect(p.free(a)).toBe(false); // cached, not free space
    expect(p.free(b)).toBe(false);
    expect(p.cachedBytes()).toBe(8192);
    expect(p.allocate(4096, 256, 'float16:32,64')).toBe(a);
    expect(p.allocate(4096, 256, 'float16:32,64')).toBe(b);
    expect(p.cachedBytes()).toBe(0);
  });

  it('never serves another shape from a bucket, even of the same size', () => {
    const p = new ExactShapePolicy();
    p.addRange(0, 16 * MiB);
    const a = p.allocate(4096, 256, 'float16:32,64');
    p.free(a);
    const other = p.allocate(4096, 256, 'float16:64,32');
    expect(other).not.toBe(a);
    expect(p.addressOf(other)).not.toBe(p.addressOf(a));
    const bySize = p.allocate(4096, 256, undefined);
    expect(bySize).not.toBe(a);
  });

  it('caches at most 10 blocks per bucket; the 11th goes back to free space', () => {
    const p = new ExactShapePolicy();
    p.addRange(0, 16 * MiB);
    const slots = Array.from({ length: 11 }, () => p.allocate(1024, 256, 'uint8:1024'));
    const results = slots.map((s) => p.free(s));
    expect(results.slice(0, 10).every((r) => r === false)).toBe(true);
    expect(results[10]).toBe(true);
    expect(p.cachedBytes()).toBe(10 * 1024);
    expect(new ExactShapePolicy({ maxPerBucket: 2 }).cachesBlocks).toBe(true);
  });

  it('flush visits every cached block and turns it into free space', () => {
    const p = new ExactShapePolicy();
    p.addRange(0, 16 * MiB);
    const a = p.allocate(1024, 256, 'k1');
    const b = p.allocate(2048, 256, 'k2');
    p.free(a);
    p.free(b);
    const visited: [number, number][] = [];
    p.flush((slot, _address, bytes) => visited.push([slot, bytes]));
    expect(visited.sort()).toEqual(
      [
        [a, 1024],
        [b, 2048],
      ].sort(),
    );
    expect(p.cachedBytes()).toBe(0);
    expect(p.freeBytes()).toBe(16 * MiB);
  });

  it('does not serve a cached block that misses the requested alignment', () => {
    const p = new ExactShapePolicy();
    p.addRange(0, 16 * MiB);
    p.allocate(256, 256, 'pad');
    const a = p.allocate(1024, 256, 'k');
    expect(p.addressOf(a) % 65536).not.toBe(0);
    p.free(a);
    const aligned = p.allocate(1024, 65536, 'k');
    expect(aligned).not.toBe(a);
    expect(p.addressOf(aligned) % 65536).toBe(0);
  });

  it('in a pool: the same shape is reused without a device call; a different shape is not', () => {
    const device = new SimulatedDevice({ capacityBytes: 256 * MiB });
    const pool = createPool({ device, policy: 'exactShape', detectLeaks: false });
    const first = pool.acquire({ shape: [3, 224, 224], dtype: 'float16' });
    const ptr = first.ptr;
    first.release();
    expect(pool.stats().liveBytes).toBe(0);
    const again = pool.acquire({ shape: [3, 224, 224], dtype: 'float16' });
    expect(again.ptr).toBe(ptr);
    again.release();
    const transposed = pool.acquire({ shape: [224, 224, 3], dtype: 'float16' });
    expect(transposed.ptr).not.toBe(ptr);
    transposed.release();
    // trim empties the buckets and gives the memory back.
    pool.trim();
    expect(pool.stats().reservedBytes).toBe(0);
    pool.destroy();
  });
});
