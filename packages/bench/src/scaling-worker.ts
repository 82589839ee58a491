/**
 * The scaling benchmark's Piscina task (its own tsup entry: Node 20 workers cannot load .ts).
 * Each task waits at a shared barrier so all threads start together, then runs `pairs`
 * acquire+release pairs over a ring of 8 live blocks of mixed sizes, either from this thread's
 * slice (`threadPool()`) or from the one lock-protected shared pool. Returns its start and end
 * on the process-wide monotonic clock, so the main thread measures the union of all threads.
 */
import type { LockedSharedPoolHandle } from '@gpupool/workers';

export interface ScalingTask {
  mode: 'slices' | 'locked';
  pairs: number;
  /** Int32Array over it: [0] threads arrived. */
  barrier: SharedArrayBuffer;
  threads: number;
  locked?: LockedSharedPoolHandle;
  /** Distinguishes locked pools across rounds, to reuse one attachment per thread. */
  lockedId?: number;
}

export interface ScalingTaskResult {
  startNs: bigint;
  endNs: bigint;
  barrierTimedOut: boolean;
}

/** Sizes cycled through: small tensors to 1 MiB, as a pipeline stage allocates. */
const SIZES_BYTES = [512, 4096, 1536, 65536, 8192, 262144, 2048, 1048576];
const RING = 8;
const BARRIER_TIMEOUT_MS = 20_000;

let lockedCache: { id: number; pool: { acquire(bytes: number): { release(): void } } } | undefined;

export default async function scalingTask(task: ScalingTask): Promise<ScalingTaskResult> {
  const workers = await import('@gpupool/workers');
  let acquire: (bytes: number) => { release(): void };
  if (task.mode === 'slices') {
    const pool = workers.threadPool();
    acquire = (bytes) => pool.acquire(bytes);
  } else {
    if (lockedCache === undefined || lockedCache.id !== task.lockedId) {
      lockedCache = { id: task.lockedId ?? 0, pool: workers.LockedSharedPool.attach(task.locked!) };
    }
    const pool = lockedCache.pool;
    acquire = (bytes) => pool.acquire(bytes);
  }
  // Warm this thread's path (slice claim, JIT) before the barrier.
  for (let i = 0; i < 64; i++) acquire(SIZES_BYTES[i % SIZES_BYTES.length]!).release();
  const barrier = new Int32Array(task.barrier);
  Atomics.add(barrier, 0, 1);
  Atomics.notify(barrier, 0);
  const deadline = Date.now() + BARRIER_TIMEOUT_MS;
  let barrierTimedOut = false;
  for (;;) {
    const arrived = Atomics.load(barrier, 0);
    if (arrived >= task.threads) break;
    if (Date.now() > deadline) {
      barrierTimedOut = true;
      break;
    }
    Atomics.wait(barrier, 0, arrived, 50);
  }
  const ring: ({ release(): void } | undefined)[] = new Array(RING);
  const startNs = process.hrtime.bigint();
  for (let i = 0; i < task.pairs; i++) {
    const slot = i % RING;
    ring[slot]?.release();
    ring[slot] = acquire(SIZES_BYTES[i % SIZES_BYTES.length]!);
  }
  const endNs = process.hrtime.bigint();
  for (const b of ring) b?.release();
  return { startNs, endNs, barrierTimedOut };
}
