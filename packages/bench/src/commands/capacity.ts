/**
 * `gpupool-bench capacity`: the smallest device, as a multiple of a trace's peak live bytes, on
 * which the replay completes without OutOfMemoryError, found by bisection on SimulatedDevice
 * (capacity is bookkeeping there, so any size is cheap). Also answers the design target directly:
 * does the replay complete at 1.05 × peak live? (Completion need not be monotone in capacity, so
 * the target is checked by its own replay, not read off the bisection.)
 */
import { createPool, OutOfMemoryError, replayTrace, SimulatedDevice, type Trace } from '@gpupool/core';
import { bisectSmallest } from '../bisect.js';
import { BenchInputError } from '../errors.js';
import type { Progress } from '../progress.js';
import type { CapacityRecord } from '../results.js';
import { loadTrace } from '../traces.js';
import { resolvePolicies } from './replay.js';

export const CAPACITY_TARGET_RATIO = 1.05;
export const CAPACITY_TOLERANCE_RATIO = 0.005;

export interface CapacityBenchOptions {
  traces: readonly (string | Trace)[];
  policies?: readonly string[];
  targetRatio?: number;
  toleranceRatio?: number;
  progress?: Progress;
}

/** Whether `trace` replays to the end through `policy` on a device of `capacityBytes`. */
export function completesOn(trace: Trace, policy: string, capacityBytes: number): boolean {
  const device = new SimulatedDevice({ capacityBytes: Math.max(1, Math.floor(capacityBytes)) });
  const pool = createPool({ device, policy, detectLeaks: false });
  try {
    replayTrace(trace, pool);
    return true;
  } catch (error) {
    if (error instanceof OutOfMemoryError) return false;
    throw error;
  } finally {
    pool.destroy();
    device.destroy();
  }
}

export function capacityOf(
  trace: Trace,
  policy: string,
  targetRatio = CAPACITY_TARGET_RATIO,
  toleranceRatio = CAPACITY_TOLERANCE_RATIO,
): CapacityRecord {
  const peak = Math.max(1, trace.peakLiveBytes);
  const holds = (ratio: number): boolean => completesOn(trace, policy, ratio * peak);
  const found = bisectSmallest(holds, 1, targetRatio, toleranceRatio);
  return {
    kind: 'capacity',
    trace: trace.name,
    policy,
    peakLiveBytes: trace.peakLiveBytes,
    minCapacityRatio: found.value,
    completesAtTargetRatio: holds(targetRatio),
    targetRatio,
    toleranceRatio,
    replays: found.evaluations + 1,
  };
}

export function runCapacity(options: CapacityBenchOptions): CapacityRecord[] {
  const policies = resolvePolicies(options.policies);
  const traces = options.traces.map((t) => (typeof t === 'string' ? loadTrace(t) : t));
  // Capacity is a multiple of peak live bytes: without any, there is nothing to bisect.
  for (const trace of traces) {
    if (trace.peakLiveBytes === 0)
      throw new BenchInputError(
        `trace ${trace.name} never holds a live byte (peak live 0 B): capacity is measured as a multiple of peak live bytes`,
      );
  }
  const records: CapacityRecord[] = [];
  options.progress?.setTotal(traces.length * policies.length);
  for (const trace of traces) {
    for (const policy of policies) {
      options.progress?.update(records.length, `${trace.name}/${policy}`);
      records.push(capacityOf(trace, policy, options.targetRatio, options.toleranceRatio));
    }
  }
  options.progress?.update(records.length);
  options.progress?.done();
  return records;
}
