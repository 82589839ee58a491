/**
 * bestFitPools: best fit in two pools, small blocks (≤ SMALL_BLOCK_BYTES, 1 MiB) and large ones,
 * each in its own part of the address space — as PyTorch's caching allocator keeps its small and
 * large pools apart. Small blocks live long and short alike; scattered among large ones they pin
 * pages and split the holes that large blocks free, so the mapped set grows. Kept apart, large
 * holes coalesce whole, and on a device that can only unmap whole allocations (CudaDevice's
 * 64 MiB allocations) the allocations of large blocks empty out and can be released.
 *
 * An arena (`addArena`, a VMM address space) of at least SPLIT_MIN_BYTES is cut at a 2 MiB
 * boundary in the middle: the lower part for large blocks, the upper part for small. Other ranges
 * (segments, superblocks: sized for the blocks that asked for them) go to the large pool whole.
 * A request that finds no room in its own pool tries the other, so nothing fails that a single
 * best fit would place.
 *
 * Slots: inner slot × 2, plus 1 for the small pool.
 */
import { BestFitPolicy } from './best-fit.js';
import type { Policy } from './policy.js';

export const SMALL_BLOCK_BYTES = 1024 * 1024;
/** Arenas at least this large are split between the pools. */
export const SPLIT_MIN_BYTES = 64 * 1024 * 1024;
const SPLIT_ALIGN_BYTES = 2 * 1024 * 1024;

export class BestFitPoolsPolicy implements Policy {
  readonly name: string = 'bestFitPools';
  readonly cachesBlocks = false;
  private readonly large = new BestFitPolicy();
  private readonly small = new BestFitPolicy();
  /** Split ranges: start address → first address of the small part. */
  private readonly splits = new Map<number, number>();

  addRange(address: number, bytes: number): void {
    this.large.addRange(address, bytes);
  }

  addArena(address: number, bytes: number): void {
    if (bytes < SPLIT_MIN_BYTES) {
      this.large.addRange(address, bytes);
      return;
    }
    const lower = Math.floor(bytes / 2 / SPLIT_ALIGN_BYTES) * SPLIT_ALIGN_BYTES;
    this.large.addRange(address, lower);
    this.small.addRange(address + lower, bytes - lower);
    this.splits.set(address, address + lower);
  }

  removeRange(address: number, bytes: number): boolean {
    const at = this.splits.get(address);
    if (at === undefined) return this.large.removeRange(address, bytes);
    const upper = address + bytes - at;
    if (!this.small.removeRange(at, upper)) return false;
    if (!this.large.removeRange(address, at - address)) {
      this.small.addRange(at, upper); // put the small part back: the range stays as it was
      return false;
    }
    this.splits.delete(address);
    return true;
  }

  allocate(sizeBytes: number, alignmentBytes: number, key: string | undefined): number {
    if (sizeBytes <= SMALL_BLOCK_BYTES) {
      const slot = this.small.allocate(sizeBytes, alignmentBytes, key);
      if (slot >= 0) return slot * 2 + 1;
      const other = this.large.allocate(sizeBytes, alignmentBytes, key);
      return other < 0 ? -1 : other * 2;
    }
    const slot = this.large.allocate(sizeBytes, alignmentBytes, key);
    if (slot >= 0) return slot * 2;
    const other = this.small.allocate(sizeBytes, alignmentBytes, key);
    return other < 0 ? -1 : other * 2 + 1;
  }

  addressOf(slot: number): number {
    return slot & 1 ? this.small.addressOf(slot >>> 1) : this.large.addressOf(slot >>> 1);
  }

  sizeOf(slot: number): number {
    return slot & 1 ? this.small.sizeOf(slot >>> 1) : this.large.sizeOf(slot >>> 1);
  }

  free(slot: number): boolean {
    return slot & 1 ? this.small.free(slot >>> 1) : this.large.free(slot >>> 1);
  }

  flush(): void {
    // Neither pool caches blocks.
  }

  freeBytes(): number {
    return this.small.freeBytes() + this.large.freeBytes();
  }

  largestFreeBytes(): number {
    return Math.max(this.small.largestFreeBytes(), this.large.largestFreeBytes());
  }

  forEachFree(visit: (address: number, bytes: number) => void): void {
    this.large.forEachFree(visit);
    this.small.forEachFree(visit);
  }

  checkInvariants(): string | undefined {
    const large = this.large.checkInvariants();
    if (large !== undefined) return `large pool: ${large}`;
    const small = this.small.checkInvariants();
    return small === undefined ? undefined : `small pool: ${small}`;
  }
}
