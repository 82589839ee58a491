import { describe, expect, it } from 'vitest';
import { bisectSmallest } from '../src/bisect.js';
import { capacityOf, completesOn } from '../src/commands/capacity.js';
import { syntheticTrace } from './helpers.js';

describe('bisectSmallest', () => {
  it('finds a threshold inside the first bracket within the tolerance', () => {
    const r = bisectSmallest((x) => x >= 1.0314, 1, 1.05, 0.001);
    expect(r.value).toBeGreaterThanOrEqual(1.0314);
    expect(r.value - 1.0314).toBeLessThanOrEqual(0.001);
    expect(r.failedBelow).toBeLessThan(1.0314);
  });

  it('widens the bracket when the first high end fails', () => {
    const r = bisectSmallest((x) => x >= 3.7, 1, 1.05, 0.01);
    expect(r.value).toBeGreaterThanOrEqual(3.7);
    expect(r.value).toBeLessThanOrEqual(3.71);
  });

  it('returns the low end when it already holds, and Infinity when nothing holds', () => {
    expect(bisectSmallest(() => true, 1, 1.05, 0.01)).toMatchObject({ value: 1, evaluations: 1 });
    const never = bisectSmallest(() => false, 1, 1.05, 0.01, 4);
    expect(never.value).toBe(Number.POSITIVE_INFINITY);
  });

  it('rejects an empty bracket', () => {
    expect(() => bisectSmallest(() => true, 2, 1, 0.1)).toThrow(RangeError);
  });
});

describe('capacity', () => {
  const trace = syntheticTrace('cap', 200, 3);

  it('a replay fails below peak live and completes on a roomy device', () => {
    expect(completesOn(trace, 'tlsf', trace.peakLiveBytes * 0.9)).toBe(false);
    expect(completesOn(trace, 'tlsf', trace.peakLiveBytes * 8)).toBe(true);
  });

  it('reports a ratio that completes, with the bracket below it failing', () => {
    const r = capacityOf(trace, 'tlsf', 1.05, 0.01);
    expect(r.minCapacityRatio).toBeGreaterThanOrEqual(1);
    expect(completesOn(trace, 'tlsf', r.minCapacityRatio * trace.peakLiveBytes)).toBe(true);
    expect(r.replays).toBeGreaterThan(1);
    expect(r.kind).toBe('capacity');
  });
});
