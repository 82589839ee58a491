/**
 * TLSF specifics, on the policy alone (no pool, no device): splitting, immediate coalescing in
 * both directions, alignment with a free front remainder, exact fits near capacity, ranges that
 * never merge with each other, removeRange, slot reuse, and huge sizes.
 */
import { describe, expect, it } from 'vitest';
import { MiB, TlsfPolicy } from '../../src/index.js';

function freeRuns(policy: TlsfPolicy): [number, number][] {
  const runs: [number, number][] = [];
  policy.forEachFree((address, bytes) => runs.push([address, bytes]));
  return runs.sort((a, b) => a[0] - b[0]);
}

describe('TlsfPolicy', () => {
  it('splits a free block: consecutive allocations are adjacent and the rest stays free', () => {
    const t = new TlsfPolicy();
    t.addRange(0, MiB);
    const a = t.allocate(1024, 256, undefined);
    const b = t.allocate(4096, 256, undefined);
    expect(t.addressOf(a)).toBe(0);
    expect(t.sizeOf(a)).toBe(1024);
    expect(t.addressOf(b)).toBe(1024);
    expect(freeRuns(t)).toEqual([[5120, MiB - 5120]]);
    expect(t.freeBytes()).toBe(MiB - 5120);
    expect(t.largestFreeBytes()).toBe(MiB - 5120);
  });

  it('coalesces with both neighbours at once, back to one free run', () => {
    const t = new TlsfPolicy();
    t.addRange(0, MiB);
    const slots = [256, 512, 768, 1024].map((n) => t.allocate(n, 256, undefined));
    t.free(slots[0]!);
    t.free(slots[2]!);
    expect(freeRuns(t)).toEqual([
      [0, 256],
      [768, 768],
      [2560, MiB - 2560],
    ]);
    t.free(slots[1]!); // merges with the runs before and after it
    expect(freeRuns(t)).toEqual([
      [0, 1536],
      [2560, MiB - 2560],
    ]);
    t.free(slots[3]!);
    expect(freeRuns(t)).toEqual([[0, MiB]]);
    expect(t.freeBytes()).toBe(MiB);
  });

  it('aligns a block and leaves the front remainder free', () => {
    const t = new TlsfPolicy();
    t.addRange(0, MiB);
    t.allocate(256, 256, undefined);
    const aligned = t.allocate(1000 * 256, 65536, undefined);
    expect(t.addressOf(aligned) % 65536).toBe(0);
    expect(t.addressOf(aligned)).toBe(65536);
    expect(freeRuns(t)[0]).toEqual([256, 65536 - 256]);
    t.free(aligned);
    expect(freeRuns(t)).toEqual([[256, MiB - 256]]);
  });

  it('finds an exact fit that is not on a bin boundary (nothing that fits is refused)', () => {
    const t = new TlsfPolicy();
    const odd = 3 * MiB + 7 * 256;
    t.addRange(0, odd);
    const whole = t.allocate(odd, 256, undefined);
    expect(whole).toBeGreaterThanOrEqual(0);
    expect(t.freeBytes()).toBe(0);
    expect(t.allocate(256, 256, undefined)).toBe(-1);
    t.free(whole);
    const almost = t.allocate(odd - 256, 256, undefined);
    expect(t.sizeOf(almost)).toBe(odd - 256);
  });

  it('returns -1 when nothing fits, and changes nothing', () => {
    const t = new TlsfPolicy();
    t.addRange(0, MiB);
    const a = t.allocate(MiB / 2, 256, undefined);
    const before = freeRuns(t);
    expect(t.allocate(MiB, 256, undefined)).toBe(-1);
    expect(t.allocate(MiB / 2 + 256, 256, undefined)).toBe(-1);
    expect(freeRuns(t)).toEqual(before);
    t.free(a);
  });

  it('never merges two ranges, and removes a range only when it is wholly free', () => {
    const t = new TlsfPolicy();
    t.addRange(0, MiB);
    t.addRange(MiB, MiB); // adjacent in pool space, but another segment
    const a = t.allocate(MiB, 256, undefined);
    const b = t.allocate(MiB, 256, undefined);
    expect(t.allocate(256, 256, undefined)).toBe(-1);
    t.free(a);
    t.free(b);
    expect(freeRuns(t)).toEqual([
      [0, MiB],
      [MiB, MiB],
    ]);
    expect(t.allocate(2 * MiB, 256, undefined)).toBe(-1);
    const c = t.allocate(256, 256, undefined);
    expect(t.removeRange(t.addressOf(c), MiB)).toBe(false);
    const other = t.addressOf(c) === 0 ? MiB : 0;
    expect(t.removeRange(other, MiB)).toBe(true);
    expect(t.freeBytes()).toBe(MiB - 256);
    t.free(c);
    expect(t.removeRange(t.addressOf(c) === 0 ? 0 : MiB, MiB)).toBe(true);
    expect(t.freeBytes()).toBe(0);
  });

  it('reuses slots of freed blocks (slots stay small integers)', () => {
    const t = new TlsfPolicy();
    t.addRange(0, 64 * MiB);
    let maxSlot = 0;
    for (let i = 0; i < 10_000; i++) {
      const s = t.allocate(256 * (1 + (i % 17)), 256, undefined);
      maxSlot = Math.max(maxSlot, s);
      t.free(s);
    }
    expect(maxSlot).toBeLessThan(8);
  });

  it('handles sizes up to 2^48 bytes', () => {
    const t = new TlsfPolicy();
    t.addRange(0, 2 ** 48);
    const big = t.allocate(2 ** 47 + 256, 256, undefined);
    expect(t.sizeOf(big)).toBe(2 ** 47 + 256);
    const rest = t.allocate(2 ** 47 - 256, 256, undefined);
    expect(rest).toBeGreaterThanOrEqual(0);
    expect(t.freeBytes()).toBe(0);
    t.free(big);
    t.free(rest);
    expect(t.largestFreeBytes()).toBe(2 ** 48);
  });

  it('rejects ranges that are not whole granules', () => {
    const t = new TlsfPolicy();
    for (const bad of [0, 100, 257, -256]) {
      expect(() => t.addRange(0, bad)).toThrow(expect.objectContaining({ code: 'ERR_GPUPOOL_RANGE' }));
    }
    expect(t.freeBytes()).toBe(0);
  });
});
