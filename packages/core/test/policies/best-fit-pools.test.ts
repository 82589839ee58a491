/**
 * bestFitPools specifics, on the policy alone: an arena is split between a large pool (lower half)
 * and a small pool (upper half); requests go to their own pool first and to the other when theirs
 * is full; plain ranges are not split; removeRange takes a split arena back only when both parts
 * are wholly free, and changes nothing otherwise.
 */
import { describe, expect, it } from 'vitest';
import { BestFitPoolsPolicy, MiB, SMALL_BLOCK_BYTES, SPLIT_MIN_BYTES } from '../../src/index.js';

const ARENA = 2 * SPLIT_MIN_BYTES;
const HALF = ARENA / 2;

describe('BestFitPoolsPolicy', () => {
  it('puts small blocks in the upper half of an arena and large ones in the lower half', () => {
    const p = new BestFitPoolsPolicy();
    p.addArena(0, ARENA);
    const large = p.allocate(SMALL_BLOCK_BYTES + 256, 256, undefined);
    const small = p.allocate(SMALL_BLOCK_BYTES, 256, undefined);
    expect(p.addressOf(large)).toBe(0);
    expect(p.addressOf(small)).toBe(HALF);
    expect(p.sizeOf(small)).toBe(SMALL_BLOCK_BYTES);
    expect(p.freeBytes()).toBe(ARENA - 2 * SMALL_BLOCK_BYTES - 256);
    expect(p.free(large)).toBe(true);
    expect(p.free(small)).toBe(true);
    expect(p.freeBytes()).toBe(ARENA);
    expect(p.largestFreeBytes()).toBe(HALF);
  });

  it('falls back to the other pool when its own is full', () => {
    const p = new BestFitPoolsPolicy();
    p.addArena(0, ARENA);
    const fillSmall = p.allocate(HALF, 256, undefined); // a large request that fits only the lower half
    expect(p.addressOf(fillSmall)).toBe(0);
    const bigger = p.allocate(HALF, 256, undefined); // the large pool is full: the small pool takes it
    expect(p.addressOf(bigger)).toBe(HALF);
    expect(p.allocate(256, 256, undefined)).toBe(-1); // nothing left anywhere
    p.free(bigger);
    const small = p.allocate(256, 256, undefined);
    expect(p.addressOf(small)).toBe(HALF);
  });

  it('does not split plain ranges (segments, superblocks), nor arenas below SPLIT_MIN_BYTES', () => {
    const p = new BestFitPoolsPolicy();
    p.addRange(0, ARENA);
    expect(p.addressOf(p.allocate(256, 256, undefined))).toBe(0);
    const q = new BestFitPoolsPolicy();
    q.addArena(0, 32 * MiB);
    expect(q.addressOf(q.allocate(256, 256, undefined))).toBe(0);
    expect(q.largestFreeBytes()).toBe(32 * MiB - 256);
  });

  it('removes a split arena only when both parts are free, leaving it intact otherwise', () => {
    const p = new BestFitPoolsPolicy();
    p.addArena(0, ARENA);
    const small = p.allocate(4096, 256, undefined);
    expect(p.removeRange(0, ARENA)).toBe(false);
    expect(p.freeBytes()).toBe(ARENA - 4096);
    p.free(small);
    const large = p.allocate(8 * MiB, 256, undefined);
    expect(p.removeRange(0, ARENA)).toBe(false); // the small part was removed and put back
    expect(p.freeBytes()).toBe(ARENA - 8 * MiB);
    expect(p.addressOf(p.allocate(4096, 256, undefined))).toBe(HALF);
    p.free(large);
  });
});
