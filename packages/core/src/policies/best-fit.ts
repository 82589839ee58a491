/**
 * bestFit: each request takes the smallest free block that fits, the lowest address among equals —
 * the classic caching-allocator choice (PyTorch, CuPy). Free blocks are kept ordered by size in
 * fine segregated bins (32 per power of two); the search scans the bin of the request, then the
 * first non-empty bin above, whose smallest block is the best fit (every block in a higher bin is
 * larger). Preferring low addresses packs live blocks toward the start of the arena, so fewer
 * pages are touched. Splitting and coalescing come from SegregatedBins.
 *
 * Mapped-aware (`preferMapped`, on devices that unmap only whole multi-page allocations): when the
 * best fit would need pages mapped, the smallest free block that lies in mapped pages and is at most
 * `mappedFitFactor` times the request is taken instead. Such a device cannot give back the empty
 * pages of an allocation that a live block still touches, so free space in mapped pages is worth
 * filling before mapping more: one map call fewer, and one swap fewer at the high-water mark.
 */
import type { MappedFit } from './policy.js';
import { binMinBytes, FL_COUNT, NONE, SegregatedBins, SL_COUNT } from './segregated-bins.js';

export class BestFitPolicy extends SegregatedBins {
  readonly name: string = 'bestFit';
  private mappedFit: MappedFit | null = null;

  preferMapped(fit: MappedFit | null): void {
    this.mappedFit = fit;
  }

  protected findFit(bytes: number): number {
    const best = this.bestFit(bytes);
    const fit = this.mappedFit;
    if (best === NONE || fit === null || fit.isMapped(this.addr[best]!, bytes)) return best;
    const mapped = this.smallestMapped(bytes, bytes * fit.mappedFitFactor, fit);
    return mapped === NONE ? best : mapped;
  }

  private bestFit(bytes: number): number {
    this.mapInsert(bytes);
    if (this.fl >= FL_COUNT) return NONE;
    const best = this.bestIn(this.fl * SL_COUNT + this.sl, bytes);
    if (best !== NONE) return best;
    // Every block in a higher bin fits; the smallest of the first non-empty one is the best.
    const bin = this.firstNonEmpty(this.fl, this.sl + 1);
    return bin === NONE ? NONE : this.bestIn(bin, bytes);
  }

  /**
   * The smallest free block of `bytes`..`maxBytes` whose first `bytes` lie in mapped pages (lowest
   * address on ties), or NONE. Bins hold ascending size ranges, so the first bin with a match holds
   * the answer; the scan stops there, or at the first bin whose sizes all exceed maxBytes.
   */
  private smallestMapped(bytes: number, maxBytes: number, fit: MappedFit): number {
    this.mapInsert(bytes);
    let best = NONE;
    let bestSize = Number.POSITIVE_INFINITY;
    let bestAddr = Number.POSITIVE_INFINITY;
    for (let bin = this.fl * SL_COUNT + this.sl; bin !== NONE; ) {
      const fl = (bin / SL_COUNT) | 0;
      const sl = bin & (SL_COUNT - 1);
      if (binMinBytes(fl, sl) > maxBytes) break;
      for (let r = this.heads[bin]!; r !== NONE; r = this.nextFree[r]!) {
        const size = this.size[r]!;
        if (size < bytes || size > maxBytes || size > bestSize) continue;
        const addr = this.addr[r]!;
        if ((size < bestSize || addr < bestAddr) && fit.isMapped(addr, bytes)) {
          best = r;
          bestSize = size;
          bestAddr = addr;
        }
      }
      if (best !== NONE) break;
      bin = this.firstNonEmpty(fl, sl + 1);
    }
    return best;
  }

  /** Smallest block of at least `bytes` in `bin` (lowest address on ties), or NONE. */
  private bestIn(bin: number, bytes: number): number {
    let best = NONE;
    let bestSize = Number.POSITIVE_INFINITY;
    let bestAddr = Number.POSITIVE_INFINITY;
    for (let r = this.heads[bin]!; r !== NONE; r = this.nextFree[r]!) {
      const size = this.size[r]!;
      if (size < bytes || size > bestSize) continue;
      const addr = this.addr[r]!;
      if (size < bestSize || addr < bestAddr) {
        best = r;
        bestSize = size;
        bestAddr = addr;
      }
    }
    return best;
  }
}
