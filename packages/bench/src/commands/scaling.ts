/**
 * `gpupool-bench scaling`: acquire+release throughput by thread count, for per-thread slices of
 * one shared arena (@gpupool/workers' createWorkerPool + threadPool()) and for the same work
 * against one lock-protected shared pool (LockedSharedPool, the seed's single-lock design).
 *
 * Per thread count T: a fresh worker pool of exactly T Piscina threads; one untimed round, then
 * `runs` timed rounds of T tasks that start together at a barrier (scaling-worker.ts). Throughput
 * = T × pairs / (last end − first start); the median over rounds is reported. Efficiency is
 * throughput / (T × the same mode's 1-thread throughput). It cannot exceed the machine's cores:
 * say how many there were when quoting it. @gpupool/workers is imported lazily.
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Device, MiB } from '@gpupool/core';
import { createDevice, deviceLabel } from '../devices.js';
import { BenchDeviceError, BenchUsageError } from '../errors.js';
import type { Progress } from '../progress.js';
import type { ScalingRecord, ScalingRow } from '../results.js';
import type { ScalingTask, ScalingTaskResult } from '../scaling-worker.js';
import { median } from '../stats.js';

export const SCALING_PAIRS_PER_THREAD_DEFAULT = 200_000;
const ARENA_BYTES = 1024 * MiB;
const LOCKED_ARENA_BYTES = 256 * MiB;

export interface ScalingBenchOptions {
  threads: readonly number[];
  device?: 'host' | 'cuda';
  runs?: number;
  pairsPerThread?: number;
  policy?: string | undefined;
  progress?: Progress;
}

/** dist/scaling-worker.js, found from dist/ (built) or from src/commands/ (tests run on sources). */
export function scalingWorkerFile(): string {
  const candidates = [
    new URL('./scaling-worker.js', import.meta.url),
    new URL('../../dist/scaling-worker.js', import.meta.url),
  ];
  for (const c of candidates) {
    const path = fileURLToPath(c);
    if (existsSync(path)) return path;
  }
  throw new BenchDeviceError(
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
  const kind = options.device ?? 'host';
  const workers = await loadWorkers();
  const filename = scalingWorkerFile();
  const device = await createDevice(
    kind === 'host' ? { kind, capacityBytes: ARENA_BYTES + LOCKED_ARENA_BYTES + 64 * MiB } : { kind },
  );
  const rows: ScalingRow[] = [];
  options.progress?.setTotal(threadsList.length * 2);
  let lockedId = 0;
  try {
    for (const threads of threadsList) {
      const pool = workers.createWorkerPool({
        device,
        filename,
        arenaBytes: ARENA_BYTES,
        minThreads: threads,
        maxThreads: threads,
        ...(options.policy !== undefined ? { policy: options.policy } : {}),
      });
      try {
        for (const mode of ['slices', 'locked'] as const) {
          options.progress?.update(rows.length, `${mode} × ${threads}`);
          const locked =
            mode === 'locked'
              ? workers.createLockedSharedPool({ device, arenaBytes: LOCKED_ARENA_BYTES })
              : undefined;
          lockedId++;
          try {
            const round = async (): Promise<number> => {
              const barrier = new SharedArrayBuffer(4);
              const task: ScalingTask = {
                mode,
                pairs,
                barrier,
                threads,
                lockedId,
                ...(locked ? { locked: locked.share() } : {}),
              };
              const results = await Promise.all(
                Array.from({ length: threads }, () => pool.run<ScalingTaskResult>(task)),
              );
              const start = results.reduce((m, r) => (r.startNs < m ? r.startNs : m), results[0]!.startNs);
              const end = results.reduce((m, r) => (r.endNs > m ? r.endNs : m), results[0]!.endNs);
              return (threads * pairs) / (Number(end - start) / 1e9);
            };
            await round();
            const samples: number[] = [];
            for (let r = 0; r < runs; r++) samples.push(await round());
            rows.push({ mode, threads, pairsPerSecond: median(samples), efficiency: Number.NaN });
          } finally {
            locked?.destroy();
          }
        }
      } finally {
        await pool.destroy();
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

function destroyQuietly(device: Device): void {
  try {
    device.destroy();
  } catch {
    // Nothing left to report: the benchmark's numbers are already taken.
  }
}
