/**
 * SegregatedBins' size-to-bin mapping: binMinBytes is the inverse of mapInsert (bestFit's
 * mapped-aware scan stops at the first bin whose smallest size exceeds its limit, so an off-by-one
 * here would skip or over-scan a bin).
 */
import { describe, expect, it } from 'vitest';
import { POLICY_GRANULE_BYTES } from '../../src/index.js';
import { binMinBytes, SegregatedBins, SL_COUNT } from '../../src/policies/segregated-bins.js';

/** Exposes the protected mapping for the test. */
class Probe extends SegregatedBins {
  readonly name = 'probe';
  protected findFit(): number {
    return -1;
  }
  binIndex(bytes: number): [number, number] {
    this.mapInsert(bytes);
    return [this.fl, this.sl];
  }
}

describe('SegregatedBins bins', () => {
  it('binMinBytes(fl, sl) maps back to (fl, sl), and one granule less to an earlier bin', () => {
    const probe = new Probe();
    for (let fl = 0; fl < 30; fl++) {
      for (let sl = fl === 0 ? 1 : 0; sl < SL_COUNT; sl++) {
        const min = binMinBytes(fl, sl);
        expect(probe.binIndex(min)).toEqual([fl, sl]);
        const [pfl, psl] = probe.binIndex(min - POLICY_GRANULE_BYTES);
        expect(pfl * SL_COUNT + psl).toBe(fl * SL_COUNT + sl - 1);
      }
    }
  });
});
