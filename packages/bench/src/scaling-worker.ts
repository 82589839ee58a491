/**
 * The scaling benchmark's Piscina task (its own tsup entry: Node 20 workers cannot load .ts).
 *
 * One task per thread runs every round of one (mode, thread count), so thread start-up and
 * Piscina's dispatch happen once, before any timing. The task first warms this thread's path
 * (slice claim, V8 optimization) with untimed pairs for `warmupMs`, then for each of `rounds`
 * rounds:
 *  1. waits at a shared barrier until all `threads` tasks are there (spinning, so all threads
 *     leave it within a microsecond or so of each other; Atomics.wait only after a long spin);
 *  2. runs `pairs` timed acquire+release pairs over a ring of 8 live blocks of mixed sizes, from
 *     this thread's slice (`threadPool()`) or from the one lock-protected shared pool;
 *  3. keeps running pairs (counted) until every thread has finished its `pairs`, so that every
 *     thread was busy for the whole time any other thread was timing: no thread's numbers come
 *     from a moment when it ran alone.
 * Per round it returns its start, its end and the pairs it completed in between, on the
 * process-wide monotonic clock, and (Linux) the time this thread spent on a CPU in between, from
 * /proc/thread-self/schedstat: wall time well above it means the thread waited for a CPU; on-CPU
 * time per pair that grows with the thread count means the threads slow each other down. The
 * kernel updates a running thread's figure once per scheduler tick (1–10 ms), so one reading is
 * coarse: the caller sums many rounds before using it.
 */
import { readFileSync } from 'node:fs';
import type { LockedSharedPoolHandle } from '@gpupool/workers';

export interface ScalingTask {
  mode: 'slices' | 'locked';
  /** Timed pairs each thread runs at least per round. */
  pairs: number;
  /** Rounds run back to back in this one task (the caller discards the first as warm-up). */
  rounds: number;
  /** Untimed pairs run for this long before the first round. */
  warmupMs: number;
  /** Int32Array over it: see BAR_* (arrivals and finished threads, cumulative over rounds). */
  barrier: SharedArrayBuffer;
  threads: number;
  locked?: LockedSharedPoolHandle;
  /** Distinguishes locked pools across rounds, to reuse one attachment per thread. */
  lockedId?: number;
}

export interface ScalingRoundResult {
  startNs: bigint;
  endNs: bigint;
  /** Pairs completed between startNs and endNs (≥ the task's `pairs`). */
  pairsDone: number;
  /** ns this thread ran on a CPU between startNs and endNs, ± one scheduler tick (absent where the OS does not say). */
  cpuNs?: number;
}

export interface ScalingTaskResult {
  rounds: ScalingRoundResult[];
  barrierTimedOut: boolean;
}

/** Barrier words: each counts up by `threads` per round, never reset; 128 bytes apart. */
export const BAR_ARRIVED = 0;
export const BAR_FINISHED = 32;
/** Words in the barrier buffer. */
export const BARRIER_INT32S = 64;

/** Sizes cycled through: small tensors to 1 MiB, as a pipeline stage allocates. */
const SIZES_BYTES = [512, 4096, 1536, 65536, 8192, 262144, 2048, 1048576];
const RING = 8;
/** Pairs between two looks at the finished count while the other threads are still timing. */
const CHECK_EVERY = 64;
const BARRIER_TIMEOUT_MS = 60_000;
/** Spin this long at the barrier before sleeping in Atomics.wait. */
const SPIN_NS = 50_000_000n;

let lockedCache: { id: number; pool: { acquire(bytes: number): { release(): void } } } | undefined;

interface Releasable {
  release(): void;
}

export default async function scalingTask(task: ScalingTask): Promise<ScalingTaskResult> {
  const workers = await import('@gpupool/workers');
  let acquire: (bytes: number) => Releasable;
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
  const ring: (Releasable | undefined)[] = new Array(RING);
  let i = 0;
  const step = (): void => {
    const slot = i % RING;
    ring[slot]?.release();
    ring[slot] = acquire(SIZES_BYTES[i % SIZES_BYTES.length]!);
    i++;
  };

  // Warm-up: untimed pairs, at least one ring's worth, then until warmupMs have passed.
  const warmEnd = process.hrtime.bigint() + BigInt(Math.round(task.warmupMs * 1e6));
  do for (let k = 0; k < 256; k++) step();
  while (process.hrtime.bigint() < warmEnd);

  const bar = new Int32Array(task.barrier);
  const rounds: ScalingRoundResult[] = [];
  let barrierTimedOut = false;
  for (let r = 0; r < task.rounds && !barrierTimedOut; r++) {
    const everyone = task.threads * (r + 1);
    // 1. Barrier.
    Atomics.add(bar, BAR_ARRIVED, 1);
    barrierTimedOut = !waitUntil(bar, BAR_ARRIVED, everyone);
    // 2. Timed pairs.
    const cpu0 = threadCpuNs();
    const startNs = process.hrtime.bigint();
    for (let k = 0; k < task.pairs; k++) step();
    let pairsDone = task.pairs;
    Atomics.add(bar, BAR_FINISHED, 1);
    // 3. Keep the load on until every thread has finished its timed pairs.
    while (Atomics.load(bar, BAR_FINISHED) < everyone) {
      for (let k = 0; k < CHECK_EVERY; k++) step();
      pairsDone += CHECK_EVERY;
    }
    const endNs = process.hrtime.bigint();
    const cpu1 = threadCpuNs();
    rounds.push({ startNs, endNs, pairsDone, ...(cpu1 >= cpu0 ? { cpuNs: cpu1 - cpu0 } : {}) });
  }
  for (const b of ring) b?.release();
  return { rounds, barrierTimedOut };
}

/** ns the calling thread has run on a CPU (Linux schedstat), or NaN where unavailable. */
function threadCpuNs(): number {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'latin1').split(' ', 1)[0]);
  } catch {
    return Number.NaN;
  }
}

/** Waits until bar[at] ≥ target: spins first, then sleeps; false on timeout. */
function waitUntil(bar: Int32Array, at: number, target: number): boolean {
  let seen = Atomics.load(bar, at);
  if (seen >= target) {
    Atomics.notify(bar, at);
    return true;
  }
  const spinEnd = process.hrtime.bigint() + SPIN_NS;
  for (let n = 0; ; n++) {
    seen = Atomics.load(bar, at);
    if (seen >= target) return true;
    if ((n & 1023) === 1023 && process.hrtime.bigint() > spinEnd) break;
  }
  const deadline = Date.now() + BARRIER_TIMEOUT_MS;
  for (;;) {
    seen = Atomics.load(bar, at);
    if (seen >= target) return true;
    if (Date.now() > deadline) return false;
    Atomics.wait(bar, at, seen, 50);
  }
}
