/**
 * The whole run: K cameras × N frames dispatched to pipeline threads (Piscina workers on slices of
 * one shared arena through @gpupool/workers; plain Piscina workers with --no-pool; or the main
 * thread with `workers: 0`), every result checked against what the camera drew, counters added up over
 * threads, progress reported as it goes.
 *
 * Limits: at most 2 frames in flight per worker (bounded memory); at most PROBLEMS_KEPT problem
 * lines kept.
 */
import { availableParallelism } from 'node:os';
import { DEFAULT_POLICY, HostDevice, type PoolSnapshot } from '@gpupool/core';
import { CudaDevice, cuda } from '@gpupool/native';
import { createWorkerPool } from '@gpupool/workers';
import { Piscina } from 'piscina';
import { checkFrame } from './check.js';
import { rethrowAfterCleanup, withCleanupError } from './cleanup.js';
import type { FrameTask, TaskOutput, ThreadCounters, ThreadOptions, ThreadReport } from './thread.js';
import { closeThread, runTask } from './thread.js';

export const PROBLEMS_KEPT = 20;
export const CAMERAS_MAX = 64;
export const FRAMES_MAX = 1_000_000;
export const WORKERS_MAX = 64;

export interface RunOptions {
  device: 'host' | 'cuda';
  /** false: --no-pool (one device allocation per tensor). */
  pool: boolean;
  /** Frames per camera. */
  frames: number;
  cameras: number;
  /** Worker threads; 0 runs every frame on the calling thread. */
  workers: number;
  policy?: string;
  /** Where the built worker is (dist/worker.js); needed when workers > 0. */
  workerFile?: URL;
  onProgress?: (progress: Progress) => void;
  /** Milliseconds between progress calls (default 250). */
  progressEveryMs?: number;
}

export interface Progress {
  framesDone: number;
  framesTotal: number;
  framesWrong: number;
  elapsedSeconds: number;
  framesPerSecond: number;
  liveMB: number;
  reservedMB: number;
  reuseRate: number;
}

/** The final statistics: the seed's keys, then the run's. */
export interface RunSummary {
  allocations: number;
  reuses: number;
  returns: number;
  leaks: number;
  peakMB: number;
  peakReservedMB: number;
  fragmentationEvents: number;
  acquires: number;
  reuseRate: number;
  deviceAllocCalls: number;
  deviceFreeCalls: number;
  framesChecked: number;
  framesWrong: number;
  objectsChecked: number;
  seconds: number;
  framesPerSecond: number;
  msPerFramePerThread: number;
  device: string;
  deviceKind: 'host' | 'cuda';
  kernels: 'js' | 'cuda';
  pool: boolean;
  policy: string;
  memory: string;
  workers: number;
  cameras: number;
  framesPerCamera: number;
  problems: string[];
  timeline: Progress[];
  snapshots: { threadId: number; snapshot: PoolSnapshot }[];
}

const MB = 1024 * 1024;

/** Thrown for `--device cuda` where CUDA cannot be used. */
export class CudaUnavailableForRunError extends Error {
  readonly code = 'ERR_CUDA_UNAVAILABLE';
}

export function defaultWorkers(): number {
  return Math.max(1, Math.min(availableParallelism(), 8));
}

function checkRange(name: string, value: number, lo: number, hi: number): void {
  if (!Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new RangeError(`${name} must be an integer in ${lo}..${hi} (got ${String(value)})`);
  }
}

interface Runner {
  run(task: FrameTask): Promise<TaskOutput>;
  close(): Promise<void>;
  memory: string;
  /** Device calls made on the main thread (the shared arena's device), not counted by any worker. */
  mainDeviceCalls?: () => { alloc: number; free: number };
}

async function makeRunner(options: RunOptions, thread: ThreadOptions): Promise<Runner> {
  if (options.workers === 0) {
    return {
      run: (task) => runTask(task),
      close: async () => closeThread(),
      memory: options.pool ? 'pool on the main thread' : 'device segments on the main thread',
    };
  }
  if (options.workerFile === undefined) throw new TypeError('workerFile is needed when workers > 0');
  const piscinaOptions = {
    filename: options.workerFile.href,
    minThreads: options.workers,
    maxThreads: options.workers,
    idleTimeout: 60_000,
  };
  if (options.pool) {
    // One arena on one device; each worker allocates from its own slice of it.
    const device = options.device === 'cuda' ? new CudaDevice() : new HostDevice({ capacityBytes: 512 * MB });
    const arenaBytes = options.device === 'cuda' ? 4096 * MB : 384 * MB;
    let wp: ReturnType<typeof createWorkerPool>;
    try {
      wp = createWorkerPool({
        device,
        arenaBytes,
        superblockBytes: 16 * MB,
        policy: options.policy,
        ...piscinaOptions,
      });
    } catch (error) {
      // The device is all that exists yet: give it back, and throw what createWorkerPool threw.
      rethrowAfterCleanup(error, () => device.destroy());
    }
    thread.workersSlice = true;
    return {
      run: (task) => wp.run<TaskOutput>(task),
      close: async () => {
        try {
          await wp.destroy();
        } catch (error) {
          // The device goes too, even when the workers did not end cleanly.
          rethrowAfterCleanup(error, () => device.destroy());
        }
        device.destroy();
      },
      memory: 'slices of one shared arena (@gpupool/workers)',
      mainDeviceCalls: () => ({
        alloc: device.calls.map + device.calls.allocateSegment,
        free: device.calls.unmap + device.calls.freeSegment,
      }),
    };
  }
  const piscina = new Piscina(piscinaOptions);
  return {
    run: (task) => piscina.run(task) as Promise<TaskOutput>,
    close: () => piscina.destroy(),
    memory: 'device segments per tensor, per worker thread (Piscina)',
  };
}

function sumCounters(reports: Iterable<ThreadReport>): ThreadCounters {
  const total: ThreadCounters = {
    allocations: 0,
    reuses: 0,
    returns: 0,
    leaks: 0,
    fragmentationEvents: 0,
    acquires: 0,
    liveBlocks: 0,
    liveBytes: 0,
    peakLiveBytes: 0,
    reservedBytes: 0,
    peakReservedBytes: 0,
    deviceAllocCalls: 0,
    deviceFreeCalls: 0,
  };
  for (const r of reports) {
    for (const key of Object.keys(total) as (keyof ThreadCounters)[]) total[key] += r.counters[key];
  }
  return total;
}

/** Runs the pipeline and checks every frame. Rejects only on a crash, never on wrong results. */
export async function runPipeline(options: RunOptions): Promise<RunSummary> {
  checkRange('cameras', options.cameras, 1, CAMERAS_MAX);
  checkRange('frames', options.frames, 1, FRAMES_MAX);
  checkRange('workers', options.workers, 0, WORKERS_MAX);
  if (options.device !== 'host' && options.device !== 'cuda') {
    throw new TypeError(`device must be 'host' or 'cuda' (got ${String(options.device)})`);
  }
  if (options.device === 'cuda' && !cuda.available) {
    throw new CudaUnavailableForRunError(`CUDA is not available here: ${cuda.reason ?? 'unknown reason'}`);
  }
  const thread: ThreadOptions = { device: options.device, pool: options.pool };
  if (options.policy !== undefined) thread.policy = options.policy;
  const total = options.cameras * options.frames;
  const reports = new Map<number, ThreadReport>();
  const snapshots = new Map<number, PoolSnapshot>();
  const problems: string[] = [];
  const timeline: Progress[] = [];
  let framesDone = 0;
  let framesWrong = 0;
  let objectsChecked = 0;
  let threadMs = 0;
  let kernels: 'js' | 'cuda' = options.device === 'cuda' ? 'cuda' : 'js';
  let deviceName = '';
  const started = performance.now();
  const everyMs = options.progressEveryMs ?? 250;
  let lastProgress = started;

  const progress = (): Progress => {
    const elapsedSeconds = (performance.now() - started) / 1000;
    const sum = sumCounters(reports.values());
    let live = 0;
    for (const r of reports.values()) live += r.frameLiveBytes;
    return {
      framesDone,
      framesTotal: total,
      framesWrong,
      elapsedSeconds,
      framesPerSecond: elapsedSeconds > 0 ? framesDone / elapsedSeconds : 0,
      liveMB: live / MB,
      reservedMB: sum.reservedBytes / MB,
      reuseRate: sum.acquires > 0 ? sum.reuses / sum.acquires : 0,
    };
  };

  const onOutput = (out: TaskOutput) => {
    framesDone++;
    threadMs += out.ms;
    kernels = out.report.kernels;
    deviceName = out.report.deviceName;
    reports.set(out.report.threadId, out.report);
    if (out.report.snapshot !== undefined) snapshots.set(out.report.threadId, out.report.snapshot);
    const check = checkFrame(out.result);
    objectsChecked += check.objects;
    if (!check.ok) {
      framesWrong++;
      for (const p of check.problems) if (problems.length < PROBLEMS_KEPT) problems.push(p);
    }
    const now = performance.now();
    if (now - lastProgress >= everyMs) {
      lastProgress = now;
      const p = progress();
      timeline.push(p);
      options.onProgress?.(p);
    }
  };

  const inFlightMax = Math.max(1, options.workers * 2);
  let next = 0;
  let mainCalls = { alloc: 0, free: 0 };
  // Nothing between here and the try below can throw: once made, the runner is always closed.
  const runner = await makeRunner(options, thread);
  let failure: { error: unknown } | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let inFlight = 0;
      let failed = false;
      const fail = (error: unknown) => {
        failed = true;
        reject(error);
      };
      const pump = () => {
        while (!failed && inFlight < inFlightMax && next < total) {
          // Frame-major order: every camera's frame f before any camera's frame f + 1.
          const task: FrameTask = {
            camera: next % options.cameras,
            frame: Math.floor(next / options.cameras),
            options: thread,
          };
          next++;
          inFlight++;
          // Both handlers end in resolve or reject: a throw in onOutput (a malformed result, an
          // onProgress callback) rejects the run instead of going unhandled and leaving it pending.
          runner.run(task).then((out) => {
            inFlight--;
            if (failed) return;
            try {
              onOutput(out);
              if (framesDone === total) resolve();
              else pump();
            } catch (error) {
              fail(error);
            }
          }, fail);
        }
      };
      pump();
    });
  } catch (error) {
    failure = { error };
  }
  try {
    mainCalls = runner.mainDeviceCalls?.() ?? mainCalls;
    await runner.close();
  } catch (closeError) {
    // No failure before: the close error is the run's error. Otherwise the run's own error is
    // thrown, carrying the close error (see withCleanupError).
    if (failure === undefined) throw closeError;
    throw withCleanupError(failure.error, closeError);
  }
  if (failure !== undefined) throw failure.error;

  const last = progress();
  timeline.push(last);
  options.onProgress?.(last);
  const sum = sumCounters(reports.values());
  return {
    allocations: sum.allocations,
    reuses: sum.reuses,
    returns: sum.returns,
    // Blocks dropped without release, plus any still held after every frame finished.
    leaks: sum.leaks + sum.liveBlocks,
    peakMB: sum.peakLiveBytes / MB,
    peakReservedMB: sum.peakReservedBytes / MB,
    fragmentationEvents: sum.fragmentationEvents,
    acquires: sum.acquires,
    reuseRate: sum.acquires > 0 ? sum.reuses / sum.acquires : 0,
    deviceAllocCalls: sum.deviceAllocCalls + mainCalls.alloc,
    deviceFreeCalls: sum.deviceFreeCalls + mainCalls.free,
    framesChecked: framesDone,
    framesWrong,
    objectsChecked,
    seconds: last.elapsedSeconds,
    framesPerSecond: last.framesPerSecond,
    msPerFramePerThread: framesDone > 0 ? threadMs / framesDone : 0,
    device: deviceName,
    deviceKind: options.device,
    kernels,
    pool: options.pool,
    // What the pools actually placed with: core's default depends on the device (defaultPolicyName).
    policy: options.pool ? ([...snapshots.values()][0]?.policy ?? options.policy ?? DEFAULT_POLICY) : 'none',
    memory: runner.memory,
    workers: options.workers,
    cameras: options.cameras,
    framesPerCamera: options.frames,
    problems,
    timeline,
    snapshots: [...snapshots].map(([threadId, snapshot]) => ({ threadId, snapshot })),
  };
}
