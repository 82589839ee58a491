/**
 * `gpupool-bench scaling`: acquire+release throughput by thread count, for per-thread slices of
 * one shared arena (@gpupool/workers' createWorkerPool + threadPool()) and for the same work
 * against one lock-protected shared pool (LockedSharedPool, the seed's single-lock design).
 *
 * Per thread count T and mode: a fresh worker pool of exactly T Piscina threads, and ONE long task
 * per thread (scaling-worker.ts) that warms up for `warmupMs`, then runs 1 untimed + `runs` timed
 * rounds back to back. Thread start-up and task dispatch are over before the first round. Each
 * round starts at a spinning barrier (all threads start together) and every thread runs at least
 * `pairsPerThread` timed pairs, then keeps running pairs until every thread has finished its
 * share, so all threads are busy for the whole measured window. Throughput of a round = all pairs
 * completed by all threads / (last end − first start); the median over rounds is reported.
 * Efficiency is throughput / (T × the same mode's 1-thread throughput). It cannot exceed the
 * machine's cores: say how many there were when quoting it. Where Linux says how long each thread
 * ran on a CPU, `cpuNsPerPair` (on-CPU ns per pair over all timed rounds) tells the two causes
 * of a low efficiency apart: it stays flat when threads only waited for CPUs, and grows when they
 * slowed each other down (shared cache lines, a lock). During the rounds the main thread
 * only awaits the tasks. @gpupool/workers is imported lazily.
 */
import os from 'node:os';
import { type Device, MiB } from '@gpupool/core';
import { builtFile } from '../built-file.js';
import { createDevice, deviceLabel } from '../devices.js';
import { BenchDeviceError, BenchUsageError } from '../errors.js';
import type { Progress } from '../progress.js';
import type { ScalingRecord, ScalingRow } from '../results.js';
import {
  BARRIER_INT32S,
  type ScalingRoundResult,
  type ScalingTask,
  type ScalingTaskResult,
} from '../scaling-worker.js';
import { median } from '../stats.js';
import { resolvePolicies } from './replay.js';

export const SCALING_PAIRS_PER_THREAD_DEFAULT = 200_000;
export const SCALING_WARMUP_MS_DEFAULT = 300;
const ARENA_BYTES = 1024 * MiB;
/**
 * Arena per thread, beyond ARENA_BYTES: a thread's ring of 8 blocks (≤ 1.4 MiB live) fits in one
 * 8 MiB superblock; half as much again leaves room, and 256 threads still fit a 4 GiB host device.
 * Only counts above 85 threads grow the arena.
 */
const ARENA_BYTES_PER_THREAD = 12 * MiB;
const LOCKED_ARENA_BYTES = 256 * MiB;
/** The locked pool holds every thread's ring (1.33 MiB live each): above 128 threads it grows. */
const LOCKED_ARENA_BYTES_PER_THREAD = 2 * MiB;

export interface ScalingBenchOptions {
  threads: readonly number[];
  device?: 'host' | 'cuda';
  runs?: number;
  pairsPerThread?: number;
  /** Untimed pairs each thread runs for this long before its first round (default 300 ms). */
  warmupMs?: number;
  policy?: string | undefined;
  progress?: Progress;
}

/** dist/scaling-worker.js (Node 20 workers cannot load .ts). */
export function scalingWorkerFile(): string {
  return builtFile(
    'scaling-worker.js',
    'scaling needs the built worker file dist/scaling-worker.js: run `npx tsup` in packages/bench',
  );
}

type WorkersModule = typeof import('@gpupool/workers');

async function loadWorkers(): Promise<WorkersModule> {
  try {
    return await import('@gpupool/workers');
  } catch (error) {
    throw new BenchDeviceError(
      `scaling needs @gpupool/workers, which failed to load: ${(error as Error).message}`,
      {
        cause: error,
      },
    );
  }
}

export async function runScaling(options: ScalingBenchOptions): Promise<ScalingRecord> {
  const threadsList = [...new Set(options.threads)].sort((a, b) => a - b);
  if (threadsList.length === 0 || threadsList.some((t) => !Number.isInteger(t) || t < 1)) {
    throw new BenchUsageError('--workers must list positive thread counts, e.g. 1,2,4,8');
  }
  if (!threadsList.includes(1)) threadsList.unshift(1); // efficiency is relative to one thread
  const runs = options.runs ?? 3;
  const pairs = options.pairsPerThread ?? SCALING_PAIRS_PER_THREAD_DEFAULT;
  const warmupMs = options.warmupMs ?? SCALING_WARMUP_MS_DEFAULT;
  const kind = options.device ?? 'host';
  // Checked here: an unknown name would otherwise fail inside the first worker's task.
  if (options.policy !== undefined && resolvePolicies([options.policy])[0] !== options.policy)
    throw new BenchUsageError(`--policy: scaling takes one policy name (got "${options.policy}")`);
  const workers = await loadWorkers();
  const filename = scalingWorkerFile();
  const threadsMax = threadsList.at(-1)!;
  const arenaBytes = Math.max(ARENA_BYTES, threadsMax * ARENA_BYTES_PER_THREAD);
  const lockedArenaBytes = Math.max(LOCKED_ARENA_BYTES, threadsMax * LOCKED_ARENA_BYTES_PER_THREAD);
  const device = await createDevice(
    kind === 'host' ? { kind, capacityBytes: arenaBytes + lockedArenaBytes + 64 * MiB } : { kind },
  );
  const rows: ScalingRow[] = [];
  options.progress?.setTotal(threadsList.length * 2);
  let lockedId = 0;
  try {
    for (const threads of threadsList) {
      // A fresh pool per mode too: the task's call sites see one mode only.
      for (const mode of ['slices', 'locked'] as const) {
        const pool = workers.createWorkerPool({
          device,
          filename,
          arenaBytes,
          // One slice per thread plus the main thread's: --workers goes past the default 64 slots.
          maxSlices: Math.max(workers.DEFAULT_MAX_SLICES, threads + 1),
          minThreads: threads,
          maxThreads: threads,
          ...(options.policy !== undefined ? { policy: options.policy } : {}),
        });
        try {
          options.progress?.update(rows.length, `${mode} × ${threads}`);
          const locked =
            mode === 'locked'
              ? workers.createLockedSharedPool({ device, arenaBytes: lockedArenaBytes })
              : undefined;
          lockedId++;
          try {
            const task: ScalingTask = {
              mode,
              pairs,
              rounds: runs + 1,
              warmupMs,
              barrier: new SharedArrayBuffer(4 * BARRIER_INT32S),
              threads,
              lockedId,
              ...(locked ? { locked: locked.share() } : {}),
            };
            const results = await Promise.all(
              Array.from({ length: threads }, () => pool.run<ScalingTaskResult>(task)),
            );
            if (results.some((r) => r.barrierTimedOut || r.rounds.length !== runs + 1)) {
              throw new Error(
                `scaling: the ${threads} ${mode} tasks never ran all at once (a barrier timed out); ` +
                  'every task needs its own worker thread',
              );
            }
            const samples: number[] = [];
            for (let r = 1; r <= runs; r++) samples.push(roundThroughput(results.map((x) => x.rounds[r]!)));
            const cpuNsPerPair = onCpuNsPerPair(results.flatMap((x) => x.rounds.slice(1)));
            rows.push({
              mode,
              threads,
              pairsPerSecond: median(samples),
              efficiency: Number.NaN,
              ...(cpuNsPerPair !== undefined ? { cpuNsPerPair } : {}),
            });
          } finally {
            locked?.destroy();
          }
        } finally {
          await pool.destroy();
        }
      }
    }
  } finally {
    destroyQuietly(device);
    options.progress?.done();
  }
  for (const row of rows) {
    const one = rows.find((r) => r.mode === row.mode && r.threads === 1);
    row.efficiency = one === undefined ? Number.NaN : row.pairsPerSecond / (row.threads * one.pairsPerSecond);
  }
  return {
    kind: 'scaling',
    device: `${deviceLabel({ kind })} (${os.cpus().length} CPU cores)`,
    runs,
    pairsPerThread: pairs,
    rows,
  };
}

/** All pairs completed by all threads in one round / (last end − first start), in pairs per second. */
export function roundThroughput(threads: readonly ScalingRoundResult[]): number {
  let start = threads[0]!.startNs;
  let end = threads[0]!.endNs;
  let pairs = 0;
  for (const t of threads) {
    if (t.startNs < start) start = t.startNs;
    if (t.endNs > end) end = t.endNs;
    pairs += t.pairsDone;
  }
  return pairs / (Number(end - start) / 1e9);
}

/** Below this much timed wall time in all, scheduler-tick rounding would make on-CPU time too coarse. */
const CPU_SAMPLED_NS_MIN = 100e6;

/**
 * On-CPU ns per pair over the timed rounds of all threads (Σ on-CPU / Σ pairs), or undefined when
 * a thread's CPU time is unknown or the rounds were too short to read it to a few percent.
 */
export function onCpuNsPerPair(rounds: readonly ScalingRoundResult[]): number | undefined {
  let cpu = 0;
  let wall = 0;
  let pairs = 0;
  for (const r of rounds) {
    if (r.cpuNs === undefined) return undefined;
    cpu += r.cpuNs;
    wall += Number(r.endNs - r.startNs);
    pairs += r.pairsDone;
  }
  return wall >= CPU_SAMPLED_NS_MIN && pairs > 0 ? cpu / pairs : undefined;
}

function destroyQuietly(device: Device): void {
  try {
    device.destroy();
  } catch {
    // Nothing left to report: the benchmark's numbers are already taken.
  }
}
