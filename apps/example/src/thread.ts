/**
 * What one pipeline thread keeps between frames: its device handle, its pool (or, with --no-pool,
 * its direct allocator), its kernels and stream. `runTask` runs one frame and returns the result
 * plus this thread's cumulative counters, so the main thread can add threads up without asking
 * each worker separately. Used by the Piscina worker (worker.ts) and by the inline mode (--workers 0).
 *
 * Where memory comes from:
 * - in a worker of createWorkerPool: this thread's slice of the shared arena (`threadPool()`);
 * - on the main thread (--workers 0): a pool over a device this thread opens;
 * - with --no-pool: a device this thread opens itself (HostDevice, or CudaDevice in 'malloc' mode —
 *   one CUDA context per process, so the same GPU), one segment per tensor.
 */
import { threadId } from 'node:worker_threads';
import {
  createPool,
  type Device,
  HostDevice,
  MiB,
  type Pool,
  type PoolSnapshot,
  type PoolStats,
} from '@gpupool/core';
import { CudaDevice } from '@gpupool/native';
import { threadPool } from '@gpupool/workers/thread';
import type { FrameResult } from './check.js';
import { rethrowAfterCleanup, withCleanupError } from './cleanup.js';
import {
  cudaKernels,
  type DirectCounts,
  directSource,
  hostKernels,
  type Kernels,
  poolSource,
  prewarmSpecs,
  processFrame,
  type TensorSource,
} from './pipeline.js';

export type DeviceKind = 'host' | 'cuda';

export interface ThreadOptions {
  device: DeviceKind;
  pool: boolean;
  /** Placement policy of the pool (default: core's default for the device, defaultPolicyName). */
  policy?: string;
  /** Host device capacity per thread, when the thread opens its own HostDevice. */
  hostCapacityBytes?: number;
  /** Take memory from the @gpupool/workers slice of this thread (when running under createWorkerPool). */
  workersSlice?: boolean;
}

export interface FrameTask {
  camera: number;
  frame: number;
  options: ThreadOptions;
}

/** Counters of one thread, cumulative since it started: the pool's own statistics, plus device calls. */
export type ThreadCounters = Pick<
  PoolStats,
  | 'allocations'
  | 'reuses'
  | 'returns'
  | 'leaks'
  | 'fragmentationEvents'
  | 'acquires'
  | 'liveBlocks'
  | 'liveBytes'
  | 'peakLiveBytes'
  | 'reservedBytes'
  | 'peakReservedBytes'
> & {
  /** Device calls that obtained memory (map + allocateSegment) and gave it back (unmap + freeSegment). */
  deviceAllocCalls: number;
  deviceFreeCalls: number;
};

export interface ThreadReport {
  threadId: number;
  deviceName: string;
  kernels: Kernels['kind'];
  memory: 'workers-slice' | 'thread-pool' | 'direct';
  counters: ThreadCounters;
  /** Live bytes at this frame's busiest moment (every tensor of the frame held). */
  frameLiveBytes: number;
  /** A snapshot at this thread's busiest moment so far (only when it changed). */
  snapshot?: PoolSnapshot;
}

export interface TaskOutput {
  result: FrameResult;
  report: ThreadReport;
  ms: number;
}

interface ThreadState {
  key: string;
  device: Device;
  pool: Pool | null;
  direct: (TensorSource & { counts: DirectCounts }) | null;
  source: TensorSource;
  kernels: Kernels;
  memory: ThreadReport['memory'];
  busiest: number;
  snapshot: PoolSnapshot | undefined;
  snapshotSent: boolean;
}

let state: ThreadState | undefined;

function setup(options: ThreadOptions): ThreadState {
  const key = JSON.stringify(options);
  if (state !== undefined) {
    if (state.key !== key) throw new Error('a pipeline thread cannot change its options');
    return state;
  }
  let pool: Pool | null = null;
  let memory: ThreadReport['memory'] = 'direct';
  if (options.pool && options.workersSlice === true) {
    pool = threadPool();
    memory = 'workers-slice';
  }
  let device: Device;
  if (pool !== null) {
    device = pool.device;
  } else if (options.device === 'cuda') {
    // --no-pool measures what the pool saves: cudaMalloc/cudaFree per tensor.
    device = new CudaDevice({ mode: options.pool ? 'vmm' : 'malloc' });
  } else {
    device = new HostDevice({ capacityBytes: options.hostCapacityBytes ?? 96 * MiB });
  }
  // From here on a failure gives back what this thread made (kernels, pool, device) before it throws.
  let kernels: Kernels | undefined;
  const ownPool = pool === null;
  const ownDevice = memory !== 'workers-slice';
  try {
    if (pool === null && options.pool) {
      pool = createPool({ device, name: `pipeline thread ${threadId}`, policy: options.policy });
      memory = 'thread-pool';
    }
    const cuda = device.kind === 'cuda' ? (device as CudaDevice) : null;
    const stream = cuda === null ? 0 : cuda.streams.createStream();
    const direct = options.pool
      ? null
      : directSource(device, cuda === null ? undefined : () => cuda.streams.synchronizeStream(stream));
    kernels = cuda === null ? hostKernels(device) : cudaKernels(cuda, stream);
    // Map the common shapes before the first frame, as the seed did.
    pool?.prewarm(prewarmSpecs());
    // Peaks measure the pipeline, not the prewarm (which holds every common shape at once).
    pool?.resetPeaks();
    const source = pool !== null ? poolSource(pool, stream) : (direct as TensorSource);
    state = {
      key,
      device,
      pool,
      direct,
      source,
      kernels,
      memory,
      busiest: -1,
      snapshot: undefined,
      snapshotSent: true,
    };
    return state;
  } catch (error) {
    const made = { kernels, pool: ownPool ? pool : null, device: ownDevice ? device : null };
    rethrowAfterCleanup(error, () => release(made));
  }
}

/**
 * Gives back the kernels' host buffers, then the pool, then the device (each that is given), all of
 * them even when one throws; the first error is thrown, carrying any later one (withCleanupError).
 */
function release(made: { kernels?: Kernels | undefined; pool: Pool | null; device: Device | null }): void {
  let failure: { error: unknown } | undefined;
  const step = (give: () => void) => {
    try {
      give();
    } catch (error) {
      failure = failure === undefined ? { error } : { error: withCleanupError(failure.error, error) };
    }
  };
  if (made.kernels !== undefined) step(() => made.kernels?.close());
  if (made.pool !== null) step(() => made.pool?.destroy());
  if (made.device !== null) step(() => made.device?.destroy());
  if (failure !== undefined) throw failure.error;
}

function counters(s: ThreadState): ThreadCounters {
  const calls = s.device.calls;
  const deviceAllocCalls = calls.map + calls.allocateSegment;
  const deviceFreeCalls = calls.unmap + calls.freeSegment;
  if (s.pool !== null) {
    const st = s.pool.stats();
    return {
      allocations: st.allocations,
      reuses: st.reuses,
      returns: st.returns,
      leaks: st.leaks,
      fragmentationEvents: st.fragmentationEvents,
      acquires: st.acquires,
      liveBlocks: st.liveBlocks,
      liveBytes: st.liveBytes,
      peakLiveBytes: st.peakLiveBytes,
      reservedBytes: st.reservedBytes,
      peakReservedBytes: st.peakReservedBytes,
      deviceAllocCalls,
      deviceFreeCalls,
    };
  }
  const c = (s.direct as { counts: DirectCounts }).counts;
  return {
    allocations: c.allocations,
    reuses: 0,
    returns: c.frees,
    leaks: 0,
    fragmentationEvents: 0,
    acquires: c.allocations,
    liveBlocks: c.liveBlocks,
    liveBytes: c.liveBytes,
    peakLiveBytes: c.peakLiveBytes,
    reservedBytes: c.reservedBytes,
    peakReservedBytes: c.peakReservedBytes,
    deviceAllocCalls,
    deviceFreeCalls,
  };
}

/** Runs one frame on this thread. */
export async function runTask(task: FrameTask): Promise<TaskOutput> {
  const s = setup(task.options);
  const started = performance.now();
  let frameLiveBytes = 0;
  const result = processFrame(s.source, s.kernels, task.camera, task.frame, (count) => {
    frameLiveBytes =
      s.pool !== null ? s.pool.stats().liveBytes : (s.direct as { counts: DirectCounts }).counts.liveBytes;
    // At the frame's busiest moment (every tensor live): keep a snapshot for the memory report.
    if (s.pool !== null && count > s.busiest) {
      s.busiest = count;
      s.snapshot = s.pool.snapshot();
      s.snapshotSent = false;
    }
  });
  const ms = performance.now() - started;
  const report: ThreadReport = {
    threadId,
    deviceName: s.device.name,
    kernels: s.kernels.kind,
    memory: s.memory,
    counters: counters(s),
    frameLiveBytes,
  };
  if (!s.snapshotSent && s.snapshot !== undefined) {
    report.snapshot = s.snapshot;
    s.snapshotSent = true;
  }
  return { result, report, ms };
}

/**
 * Gives this thread's memory back (inline mode; a worker's memory goes with the worker): the CUDA
 * kernels' pinned buffers (freePinned, not left to the garbage collector), the pool, the device.
 */
export function closeThread(): void {
  if (state === undefined) return;
  const s = state;
  state = undefined;
  release({ kernels: s.kernels, pool: s.pool, device: s.memory !== 'workers-slice' ? s.device : null });
}
