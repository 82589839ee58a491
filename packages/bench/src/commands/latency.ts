/**
 * `gpupool-bench latency`: the time of one acquire+release pair on a warm pool, by block size and
 * policy, and on a GPU the same for the raw CUDA calls, timed inside C++ by @gpupool/native
 * (cudaMalloc+cudaFree, cudaMallocAsync+cudaFreeAsync, and one 2 MiB VMM page map+unmap).
 *
 * Warm means: the pool has served this size once before timing starts. The pool runs in its
 * default configuration, so if it gives pages back between pairs, that cost is measured too.
 * The iteration count is calibrated per (policy, size) so one run takes about `runTargetMs`.
 */
import { createPool, type Device, MiB } from '@gpupool/core';
import { createDevice, type DeviceSpec, deviceLabel, loadNative } from '../devices.js';
import type { Progress } from '../progress.js';
import type { LatencyRecord, LatencyRow, RawLatencyRow } from '../results.js';
import { median } from '../stats.js';
import { resolvePolicies } from './replay.js';

/** 512 B … 256 MiB, ×16 per step. */
export const LATENCY_SIZES_BYTES: readonly number[] = [512, 8192, 131072, 2 * MiB, 32 * MiB, 256 * MiB];
export const LATENCY_RUNS_DEFAULT = 5;
const RUN_TARGET_MS_DEFAULT = 40;
const ITERATIONS_MAX = 2_000_000;

export interface LatencyBenchOptions {
  policies?: readonly string[];
  sizesBytes?: readonly number[];
  device?: DeviceSpec;
  runs?: number;
  /** Target duration of one timed run (default 40 ms). */
  runTargetMs?: number;
  /** Skip the raw CUDA timings even on a GPU. */
  skipRaw?: boolean;
  progress?: Progress;
}

export async function runLatency(options: LatencyBenchOptions = {}): Promise<LatencyRecord> {
  const policies = resolvePolicies(options.policies);
  const sizes = options.sizesBytes ?? LATENCY_SIZES_BYTES;
  const spec: DeviceSpec = options.device ?? { kind: 'simulated' };
  const runs = options.runs ?? LATENCY_RUNS_DEFAULT;
  const targetMs = options.runTargetMs ?? RUN_TARGET_MS_DEFAULT;
  const device = await createDevice(spec.kind === 'host' ? { ...spec, capacityBytes: 1024 * MiB } : spec);
  const pool: LatencyRow[] = [];
  let iterationsUsed = 0;
  const total = policies.length * sizes.length;
  options.progress?.setTotal(total);
  try {
    for (const policy of policies) {
      for (const bytes of sizes) {
        options.progress?.update(pool.length, `${policy} ${bytes} B`);
        const { nsPerPair, iterations } = timePairs(device, policy, bytes, runs, targetMs);
        iterationsUsed = Math.max(iterationsUsed, iterations);
        pool.push({ policy, bytes, nsPerPair });
      }
    }
    options.progress?.update(total);
  } finally {
    device.destroy();
    options.progress?.done();
  }
  const record: LatencyRecord = {
    kind: 'latency',
    device: deviceLabel(spec),
    runs,
    iterations: iterationsUsed,
    pool,
    raw: [],
  };
  if (spec.kind !== 'cuda' || options.skipRaw === true) {
    record.rawSkipped = spec.kind !== 'cuda' ? 'raw CUDA timings need --device cuda' : 'skipped';
  } else {
    record.raw = await rawCudaLatency(sizes, runs);
  }
  return record;
}

/** Median ns per acquire+release pair of `bytes` on a warm pool. */
export function timePairs(
  device: Device,
  policy: string,
  bytes: number,
  runs: number,
  targetMs: number,
): { nsPerPair: number; iterations: number } {
  const pool = createPool({ device, policy, name: `latency:${policy}` });
  try {
    pool.acquire(bytes).release();
    // Calibrate: double the count until one batch takes ≥ 1/4 of the target.
    let iterations = 16;
    for (;;) {
      const ns = timeBatch(pool, bytes, iterations);
      if (ns >= (targetMs * 1e6) / 4 || iterations >= ITERATIONS_MAX) {
        iterations = Math.min(
          ITERATIONS_MAX,
          Math.max(1, Math.round((iterations * targetMs * 1e6) / Math.max(ns, 1))),
        );
        break;
      }
      iterations *= 2;
    }
    const samples: number[] = [];
    for (let r = 0; r < runs; r++) samples.push(timeBatch(pool, bytes, iterations) / iterations);
    return { nsPerPair: median(samples), iterations };
  } finally {
    pool.destroy();
  }
}

function timeBatch(pool: ReturnType<typeof createPool>, bytes: number, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) pool.acquire(bytes).release();
  return Number(process.hrtime.bigint() - start);
}

/** cudaMalloc / cudaMallocAsync per size and one VMM page, timed in C++ (median of runs). */
async function rawCudaLatency(sizes: readonly number[], runs: number): Promise<RawLatencyRow[]> {
  const native = await loadNative();
  const rows: RawLatencyRow[] = [];
  const measure = (mode: 'malloc' | 'mallocAsync' | 'vmm', bytes: number, iterations: number): number => {
    const samples: number[] = [];
    for (let r = 0; r < runs; r++) samples.push(native.benchAllocation({ mode, bytes, iterations }));
    return median(samples);
  };
  for (const bytes of sizes) {
    rows.push({ api: 'cudaMalloc', bytes, nsPerPair: measure('malloc', bytes, 100) });
    rows.push({ api: 'cudaMallocAsync', bytes, nsPerPair: measure('mallocAsync', bytes, 2000) });
  }
  rows.push({ api: 'vmmMap', bytes: 2 * MiB, nsPerPair: measure('vmm', 2 * MiB, 100) });
  return rows;
}
