/**
 * `gpupool-bench latency`: the time of one acquire+release pair on a warm pool, by block size and
 * policy, and on a GPU the same for the raw CUDA calls, timed inside C++ by @gpupool/native
 * (cudaMalloc+cudaFree, cudaMallocAsync+cudaFreeAsync, and one 2 MiB VMM page map+unmap).
 *
 * Warm means: the pool has served this size once, and pairs have run untimed for `warmupMs`
 * (so V8 has optimized the path; FIRST_WARMUP_FACTOR times as long for the first size a process
 * times, whose code V8 has not compiled yet), before timing starts. The pool runs in its default
 * configuration, so if it gives pages back between pairs, that cost is measured too. The
 * iteration count is calibrated per (policy, size) so one run takes about `runTargetMs`.
 *
 * Each policy is timed in its own fresh Node processes (this CLI, `latency --policy P
 * --in-process --no-raw --json`), one after another, and the rows are merged: `processes` of them
 * per policy (default 3), and each size reports the median over those processes, because the
 * same code measured 40 ns in one fresh process and 60 ns in the next (on shared machines a
 * process's speed depends on the CPU it lands on and its neighbours' load) — one process's number
 * is a draw, not the pair's cost. In one process, the pool's call sites (acquire →
 * policy.allocate, …) would have seen every policy timed before, and a later policy would run on
 * polymorphic call sites that a real program, which uses one policy, never has. `isolate: false` (CLI `--in-process`) times every policy in the calling process.
 */
import { createPool, type Device, MiB, OutOfMemoryError } from '@gpupool/core';
import { benchCliFile, deviceArgs, runCliChildRecord } from '../cli-child.js';
import { createDevice, type DeviceSpec, deviceLabel, loadNative } from '../devices.js';
import { BenchUsageError } from '../errors.js';
import { formatBytes } from '../format/table.js';
import type { Progress } from '../progress.js';
import type { LatencyRecord, LatencyRow, RawLatencyRow } from '../results.js';
import { median } from '../stats.js';
import { resolvePolicies } from './replay.js';

/** 512 B … 256 MiB, ×16 per step. */
export const LATENCY_SIZES_BYTES: readonly number[] = [512, 8192, 131072, 2 * MiB, 32 * MiB, 256 * MiB];
export const LATENCY_RUNS_DEFAULT = 5;
export const LATENCY_RUN_TARGET_MS_DEFAULT = 40;
/** Fresh processes per policy whose medians are combined (isolated runs only). */
export const LATENCY_PROCESSES_DEFAULT = 3;
const ITERATIONS_MAX = 2_000_000;
/**
 * The first (policy, size) a process times warms up this many times longer: its pairs start in
 * V8's interpreter and the optimizing compiler runs on a background thread (on a busy machine,
 * late). Without it, the first size of a fresh process measured 0.4–2.5 µs instead of ~40 ns on a
 * loaded 2-core machine.
 */
const FIRST_WARMUP_FACTOR = 5;
let processWarmedUp = false;

export interface LatencyBenchOptions {
  policies?: readonly string[];
  sizesBytes?: readonly number[];
  device?: DeviceSpec;
  runs?: number;
  /** Target duration of one timed run (default 40 ms). */
  runTargetMs?: number;
  /** Untimed pairs run for this long per (policy, size) before calibration (default: runTargetMs). */
  warmupMs?: number;
  /** Skip the raw CUDA timings even on a GPU. */
  skipRaw?: boolean;
  /**
   * Time each policy in its own fresh Node process (default true): no policy runs on call sites
   * that other policies made polymorphic. false: every policy in this process, one after another.
   */
  isolate?: boolean;
  /** Fresh processes per policy when isolated (default 3); each size reports their median. */
  processes?: number;
  progress?: Progress;
}

export async function runLatency(options: LatencyBenchOptions = {}): Promise<LatencyRecord> {
  const policies = resolvePolicies(options.policies);
  const sizes = options.sizesBytes ?? LATENCY_SIZES_BYTES;
  const spec: DeviceSpec = options.device ?? { kind: 'simulated' };
  const runs = options.runs ?? LATENCY_RUNS_DEFAULT;
  const targetMs = options.runTargetMs ?? LATENCY_RUN_TARGET_MS_DEFAULT;
  const warmupMs = options.warmupMs ?? targetMs;
  const isolate = options.isolate ?? true;
  const processes = isolate ? (options.processes ?? LATENCY_PROCESSES_DEFAULT) : 1;
  if (!Number.isInteger(processes) || processes < 1)
    throw new BenchUsageError(`processes must be an integer ≥ 1 (got ${options.processes})`);
  const pool: LatencyRow[] = [];
  let iterationsUsed = 0;
  const total = policies.length * sizes.length;
  options.progress?.setTotal(total);
  try {
    if (isolate) {
      const cli = benchCliFile('latency');
      for (const policy of policies) {
        const children: LatencyRecord[] = [];
        for (let k = 0; k < processes; k++) {
          options.progress?.update(pool.length, `${policy} (process ${k + 1} of ${processes})`);
          const child = await runCliChildRecord(
            cli,
            latencyChildArgs(policy, spec, sizes, runs, targetMs, warmupMs),
            'latency record',
            isLatencyRecord,
          );
          iterationsUsed = Math.max(iterationsUsed, child.iterations);
          children.push(child);
        }
        pool.push(...medianOverProcesses(policy, sizes, children));
      }
    } else {
      const device = await createDevice(spec.kind === 'host' ? { ...spec, capacityBytes: 1024 * MiB } : spec);
      try {
        for (const policy of policies) {
          for (const bytes of sizes) {
            options.progress?.update(pool.length, `${policy} ${bytes} B`);
            const { nsPerPair, iterations } = timePairsOrUsage(
              device,
              spec,
              policy,
              bytes,
              runs,
              targetMs,
              warmupMs,
            );
            iterationsUsed = Math.max(iterationsUsed, iterations);
            pool.push({ policy, bytes, nsPerPair });
          }
        }
      } finally {
        device.destroy();
      }
    }
    options.progress?.update(total);
  } finally {
    options.progress?.done();
  }
  const record: LatencyRecord = {
    kind: 'latency',
    device: deviceLabel(spec),
    runs,
    iterations: iterationsUsed,
    pool,
    raw: [],
    isolation: isolate ? 'process-per-policy' : 'in-process',
  };
  if (isolate) record.processes = processes;
  if (spec.kind !== 'cuda' || options.skipRaw === true) {
    record.rawSkipped = spec.kind !== 'cuda' ? 'raw CUDA timings need --device cuda' : 'skipped';
  } else {
    record.raw = await rawCudaLatency(sizes, runs);
  }
  return record;
}

/** One row per size: the median over the processes' medians, with each process's value kept. */
function medianOverProcesses(
  policy: string,
  sizes: readonly number[],
  children: readonly LatencyRecord[],
): LatencyRow[] {
  return sizes.map((bytes) => {
    const perProcess = children.map((c) => {
      const row = c.pool.find((r) => r.policy === policy && r.bytes === bytes);
      if (row === undefined) throw new Error(`latency child process gave no row for ${policy} at ${bytes} B`);
      return row.nsPerPair;
    });
    const row: LatencyRow = { policy, bytes, nsPerPair: median(perProcess) };
    if (perProcess.length > 1) row.nsPerPairByProcess = perProcess;
    return row;
  });
}

/** The command line (after the CLI file) that times one policy in a child process. */
export function latencyChildArgs(
  policy: string,
  spec: DeviceSpec,
  sizes: readonly number[],
  runs: number,
  runTargetMs: number,
  warmupMs: number,
): string[] {
  const args = ['latency', '--in-process', '--no-raw', '--json', '--policy', policy, ...deviceArgs(spec)];
  args.push('--runs', String(runs), '--sizes', sizes.join(','));
  args.push('--run-ms', String(runTargetMs), '--warmup-ms', String(warmupMs));
  return args;
}

function isLatencyRecord(value: unknown): value is LatencyRecord {
  const record = value as LatencyRecord | null;
  return (
    typeof record === 'object' && record !== null && record.kind === 'latency' && Array.isArray(record.pool)
  );
}

/** timePairs, where a size the device cannot hold is a usage error naming --sizes, not a crash. */
function timePairsOrUsage(
  device: Device,
  spec: DeviceSpec,
  policy: string,
  bytes: number,
  runs: number,
  targetMs: number,
  warmupMs: number,
): { nsPerPair: number; iterations: number } {
  try {
    return timePairs(device, policy, bytes, runs, targetMs, warmupMs);
  } catch (error) {
    if (!(error instanceof OutOfMemoryError)) throw error;
    throw new BenchUsageError(
      `--sizes: a ${bytes} B block does not fit the ${deviceLabel(spec)} device (${formatBytes(device.totalBytes)}` +
        `${spec.kind === 'simulated' ? '; --capacity-gib sets its size' : ''}): ${error.message}`,
    );
  }
}

/** Median ns per acquire+release pair of `bytes` on a warm pool. */
export function timePairs(
  device: Device,
  policy: string,
  bytes: number,
  runs: number,
  targetMs: number,
  warmupMs = targetMs,
): { nsPerPair: number; iterations: number } {
  const pool = createPool({ device, policy, name: `latency:${policy}` });
  try {
    pool.acquire(bytes).release();
    // Warm up: untimed pairs until warmupMs have passed, so V8 has optimized this path.
    const ms = processWarmedUp ? warmupMs : warmupMs * FIRST_WARMUP_FACTOR;
    processWarmedUp = true;
    const warmupEndNs = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
    do timeBatch(pool, bytes, 64);
    while (process.hrtime.bigint() < warmupEndNs);
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
