/**
 * bestFit: each request takes the smallest free block that fits, the lowest address among equals —
 * the classic caching-allocator choice (PyTorch, CuPy). Free blocks are kept ordered by size in
 * fine segregated bins (32 per power of two); the search scans the bin of the request, then the
 * first non-empty bin above, whose smallest block is the best fit (every block in a higher bin is
 * larger). Preferring low addresses packs live blocks toward the start of the arena, so fewer
 * pages are touched. Splitting and coalescing come from SegregatedBins.
 */
import { FL_COUNT, NONE, SegregatedBins, SL_COUNT } from './segregated-bins.js';

export class BestFitPolicy extends SegregatedBins {
  readonly name: string = 'bestFit';

  protected findFit(bytes: number): number {
    this.mapInsert(bytes);
    if (this.fl >= FL_COUNT) return NONE;
    const best = this.bestIn(this.fl * SL_COUNT + this.sl, bytes);
    if (best !== NONE) return best;
    // Every block in a higher bin fits; the smallest of the first non-empty one is the best.
    const bin = this.firstNonEmpty(this.fl, this.sl + 1);
    return bin === NONE ? NONE : this.bestIn(bin, bytes);
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
