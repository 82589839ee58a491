/**
 * Which policy a pool gets when none is given: bestFitPools where the pool maps pages on a device
 * whose physical allocations span several pages (only whole ones unmap), bestFit elsewhere — and
 * never anything but the policy the caller names.
 */
import { describe, expect, it } from 'vitest';
import {
  createPool,
  DEFAULT_POLICY,
  DEFAULT_POLICY_GROUPED,
  defaultPolicyName,
  HostDevice,
  MiB,
  SimulatedDevice,
} from '../src/index.js';

const grouped = () => new SimulatedDevice({ capacityBytes: 1024 * MiB, allocationBytes: 64 * MiB });
const singlePages = () => new SimulatedDevice({ capacityBytes: 1024 * MiB });

describe('the default policy', () => {
  it('is the two-pool best fit on a device with multi-page allocations, in vmm mode', () => {
    expect(DEFAULT_POLICY_GROUPED).toBe('bestFitPools');
    const device = grouped();
    expect(defaultPolicyName(device, {})).toBe('bestFitPools');
    const pool = createPool({ device, detectLeaks: false });
    expect(pool.snapshot().policy).toBe('bestFitPools');
    // Small and large blocks land in different halves of the arena.
    const small = pool.acquire(4096);
    const large = pool.acquire(8 * MiB);
    expect(Math.abs(small.offset - large.offset)).toBeGreaterThan(256 * MiB);
    pool.destroy();
  });

  it('is best fit where every page is its own allocation', () => {
    expect(DEFAULT_POLICY).toBe('bestFit');
    expect(defaultPolicyName(singlePages(), {})).toBe('bestFit');
    const pool = createPool({ device: singlePages(), detectLeaks: false });
    expect(pool.snapshot().policy).toBe('bestFit');
    pool.destroy();
  });

  it('is best fit in segments mode and on devices without VMM', () => {
    const device = grouped();
    expect(defaultPolicyName(device, { mode: 'segments' })).toBe('bestFit');
    const pool = createPool({ device, mode: 'segments', detectLeaks: false });
    expect(pool.snapshot().policy).toBe('bestFit');
    pool.destroy();
    const host = new HostDevice({ capacityBytes: 64 * MiB });
    expect(defaultPolicyName(host, {})).toBe('bestFit');
    host.destroy();
  });

  it('is best fit under a custom backing (worker slices place their own blocks)', () => {
    const backing = {} as never; // only its presence is read
    expect(defaultPolicyName(grouped(), { backing })).toBe('bestFit');
  });

  it('never overrides a policy the caller names', () => {
    const pool = createPool({ device: grouped(), policy: 'bestFit', detectLeaks: false });
    expect(pool.snapshot().policy).toBe('bestFit');
    pool.destroy();
    const tlsf = createPool({ device: singlePages(), policy: 'tlsf', detectLeaks: false });
    expect(tlsf.snapshot().policy).toBe('tlsf');
    tlsf.destroy();
  });
});
