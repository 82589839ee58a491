/**
 * TLSF: two-level segregated fit (Masmano et al., 2004). O(1) allocate and free. A request is
 * rounded up to the next bin boundary so that the head of the first non-empty bin found by the
 * bitmaps is guaranteed to fit ("good fit": no list is searched). If no such bin exists, the one
 * bin that may still hold a fitting block is scanned, so nothing that fits is ever refused (that
 * matters near capacity). Splitting and coalescing come from SegregatedBins.
 */

import { log2Floor } from '../units.js';
import { POLICY_GRANULE_BYTES } from './policy.js';
import { FL_COUNT, NONE, SegregatedBins, SL_COUNT, SL_LOG2 } from './segregated-bins.js';

export class TlsfPolicy extends SegregatedBins {
  readonly name: string = 'tlsf';

  protected findFit(bytes: number): number {
    const units = bytes / POLICY_GRANULE_BYTES;
    // Round up to the next bin boundary: every block in the bin found is then big enough.
    let rounded = bytes;
    if (units >= SL_COUNT) {
      if (units < 0x8000_0000) {
        const shift = 31 - Math.clz32(units) - SL_LOG2;
        rounded = bytes + ((1 << shift) - 1) * POLICY_GRANULE_BYTES;
      } else {
        rounded = bytes + (2 ** (log2Floor(units) - SL_LOG2) - 1) * POLICY_GRANULE_BYTES;
      }
    }
    this.mapInsert(rounded);
    const found = this.firstNonEmpty(this.fl, this.sl);
    if (found !== NONE) return this.heads[found]!;
    // Nothing guaranteed: the bin of `bytes` itself may still hold a block that is big enough.
    this.mapInsert(bytes);
    if (this.fl >= FL_COUNT) return NONE;
    for (let r = this.heads[this.fl * SL_COUNT + this.sl]!; r !== NONE; r = this.nextFree[r]!) {
      if (this.size[r]! >= bytes) return r;
    }
    return NONE;
  }
}
