/**
 * SegregatedBins' size-to-bin mapping: binMinBytes is the inverse of mapInsert (bestFit's
 * mapped-aware scan stops at the first bin whose smallest size exceeds its limit, so an off-by-one
 * here would skip or over-scan a bin).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BestFitPolicy, POLICY_GRANULE_BYTES, TlsfPolicy } from '../../src/index.js';
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

describe('SegregatedBins books under random allocate/free', () => {
  // Splits keep the free remainder's record (re-binned only when its bin changes) and merges keep a
  // free neighbour's: the bins, lists and bitmaps must stay exact through any sequence.
  for (const make of [() => new BestFitPolicy(), () => new TlsfPolicy()]) {
    const name = make().name;
    it(`${name}: checkInvariants holds after every step, and live blocks never overlap`, () => {
      fc.assert(
        fc.property(
          fc.array(
            fc.record({
              free: fc.boolean(),
              pick: fc.nat(),
              granules: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 1, max: 1 << 16 })),
              alignLog2: fc.oneof(fc.constant(8), fc.integer({ min: 8, max: 16 })),
            }),
            { maxLength: 200 },
          ),
          (steps) => {
            const policy = make();
            const arenaBytes = 1 << 30;
            policy.addRange(0, arenaBytes);
            const live: number[] = [];
            for (const step of steps) {
              if (step.free && live.length > 0) {
                const [slot] = live.splice(step.pick % live.length, 1);
                policy.free(slot!);
              } else {
                const bytes = step.granules * POLICY_GRANULE_BYTES;
                const align = 2 ** step.alignLog2;
                const slot = policy.allocate(bytes, align, undefined);
                if (slot >= 0) {
                  expect(policy.addressOf(slot) % align).toBe(0);
                  expect(policy.sizeOf(slot)).toBeGreaterThanOrEqual(bytes);
                  live.push(slot);
                }
              }
              expect(policy.checkInvariants()).toBeUndefined();
              const spans = live.map((s) => [policy.addressOf(s), policy.sizeOf(s)] as const);
              spans.sort((a, b) => a[0] - b[0]);
              for (let i = 1; i < spans.length; i++)
                expect(spans[i - 1]![0] + spans[i - 1]![1]).toBeLessThanOrEqual(spans[i]![0]);
              const liveBytes = spans.reduce((sum, s) => sum + s[1], 0);
              expect(policy.freeBytes()).toBe(arenaBytes - liveBytes);
            }
          },
        ),
        { numRuns: 60 },
      );
    });
  }

  it('TLSF still takes the most recent block of a bin after a split leaves the remainder there', () => {
    const policy = new TlsfPolicy();
    const MiB = 1 << 20;
    const KiB = 1 << 10;
    // Free blocks of 40 and 40.75 MiB (one bin: 40–41 MiB), fenced by used blocks so they cannot merge.
    policy.addRange(0, 200 * MiB);
    const a = policy.allocate(40 * MiB, POLICY_GRANULE_BYTES, undefined);
    policy.allocate(MiB, POLICY_GRANULE_BYTES, undefined);
    const b = policy.allocate(40 * MiB + 768 * KiB, POLICY_GRANULE_BYTES, undefined);
    policy.allocate(MiB, POLICY_GRANULE_BYTES, undefined);
    policy.free(a);
    policy.free(b); // freed last: the head of the bin
    const first = policy.allocate(64 * KiB, POLICY_GRANULE_BYTES, undefined);
    expect(policy.addressOf(first)).toBe(41 * MiB); // b's start
    const second = policy.allocate(64 * KiB, POLICY_GRANULE_BYTES, undefined);
    expect(policy.addressOf(second)).toBe(41 * MiB + 64 * KiB); // b's remainder, still the head
    expect(policy.checkInvariants()).toBeUndefined();
  });

  it('checkInvariants reports a record filed in the wrong bin', () => {
    const policy = new BestFitPolicy();
    policy.addRange(0, 1 << 30);
    const slot = policy.allocate(1 << 20, POLICY_GRANULE_BYTES, undefined);
    expect(policy.checkInvariants()).toBeUndefined();
    // The remainder [1 MiB, 1 GiB) is the only free record; shrink it behind the bins' back.
    (policy as unknown as { size: Float64Array }).size[1 - slot] = 4096;
    expect(policy.checkInvariants()).toMatch(/is in bin|do not link|end where|sum to/);
  });
});

describe('SegregatedBins bins stay LIFO', () => {
  /** Exposes the head of a size's bin. */
  class HeadProbe extends BestFitPolicy {
    headFor(bytes: number): number {
      this.mapInsert(bytes);
      return this.heads[this.fl * SL_COUNT + this.sl]!;
    }
  }

  it('a block split from the middle of a bin, whose remainder stays there, becomes its head', () => {
    // TLSF takes a bin's head, so every remainder must be filed as insertFree would file it.
    const policy = new HeadProbe();
    const MiB = 1 << 20;
    const KiB = 1 << 10;
    policy.addRange(0, 200 * MiB);
    const a = policy.allocate(40 * MiB + 512 * KiB, POLICY_GRANULE_BYTES, undefined);
    policy.allocate(MiB, POLICY_GRANULE_BYTES, undefined);
    const b = policy.allocate(40 * MiB + 768 * KiB, POLICY_GRANULE_BYTES, undefined);
    policy.allocate(MiB, POLICY_GRANULE_BYTES, undefined);
    policy.free(a);
    policy.free(b); // b heads the 40–41 MiB bin; a is behind it
    expect(policy.headFor(40 * MiB)).toBe(b);
    const taken = policy.allocate(64 * KiB, POLICY_GRANULE_BYTES, undefined); // best fit: a, the smaller
    expect(policy.addressOf(taken)).toBe(0);
    const head = policy.headFor(40 * MiB);
    expect(policy.checkInvariants()).toBeUndefined();
    expect(head).not.toBe(b);
    expect(policy.sizeOf(head)).toBe(40 * MiB + 448 * KiB); // a's remainder
  });
});
