/**
 * BlockCache: the pool's fast path. Recently released small blocks are kept whole, per exact
 * size, in LIFO stacks; an acquire of the same size pops one without touching the policy or the
 * backing (like a thread cache in mimalloc or jemalloc's tcache). A cached block stays placed
 * and occupied, so the books stay exact: it is neither live nor free, and `flush` returns it.
 *
 * Limits: only sizes up to MAX_CACHED_BLOCK_BYTES, at most SLOTS_PER_SIZE blocks per size, and
 * at most `limitBytes` in all — so the cache can never hold more than a sliver of memory.
 */
import { POLICY_GRANULE_BYTES } from './policies/policy.js';

/** Blocks larger than this go straight back to the policy (where coalescing matters most). */
export const MAX_CACHED_BLOCK_BYTES = 64 * 1024;
export const SLOTS_PER_SIZE = 16;
const SIZE_CLASSES = MAX_CACHED_BLOCK_BYTES / POLICY_GRANULE_BYTES + 1;

export class BlockCache {
  private readonly stacks = new Int32Array(SIZE_CLASSES * SLOTS_PER_SIZE);
  private readonly counts = new Int32Array(SIZE_CLASSES);
  private cachedBytes = 0;
  private cachedBlocks = 0;

  constructor(readonly limitBytes: number) {}

  get bytes(): number {
    return this.cachedBytes;
  }

  get blocks(): number {
    return this.cachedBlocks;
  }

  /** A cached slot of exactly `sizeBytes` (a multiple of the granule), or -1. */
  take(sizeBytes: number): number {
    if (sizeBytes > MAX_CACHED_BLOCK_BYTES) return -1;
    const cls = sizeBytes / POLICY_GRANULE_BYTES;
    const n = this.counts[cls]!;
    if (n === 0) return -1;
    this.counts[cls] = n - 1;
    this.cachedBytes -= sizeBytes;
    this.cachedBlocks--;
    return this.stacks[cls * SLOTS_PER_SIZE + n - 1]!;
  }

  /** Keeps `slot` if there is room; false means the caller must free it. */
  put(slot: number, sizeBytes: number): boolean {
    if (sizeBytes > MAX_CACHED_BLOCK_BYTES || this.cachedBytes + sizeBytes > this.limitBytes) return false;
    const cls = sizeBytes / POLICY_GRANULE_BYTES;
    const n = this.counts[cls]!;
    if (n === SLOTS_PER_SIZE) return false;
    this.stacks[cls * SLOTS_PER_SIZE + n] = slot;
    this.counts[cls] = n + 1;
    this.cachedBytes += sizeBytes;
    this.cachedBlocks++;
    return true;
  }

  /** Empties the cache, calling `visit(slot)` for each block (which the caller then frees). */
  flush(visit: (slot: number) => void): void {
    for (let cls = 0; cls < SIZE_CLASSES; cls++) {
      const n = this.counts[cls]!;
      for (let i = 0; i < n; i++) visit(this.stacks[cls * SLOTS_PER_SIZE + i]!);
      this.counts[cls] = 0;
    }
    this.cachedBytes = 0;
    this.cachedBlocks = 0;
  }

  /** Calls `visit(slot)` for each cached block without removing it. */
  forEach(visit: (slot: number) => void): void {
    for (let cls = 0; cls < SIZE_CLASSES; cls++) {
      const n = this.counts[cls]!;
      for (let i = 0; i < n; i++) visit(this.stacks[cls * SLOTS_PER_SIZE + i]!);
    }
  }
}
