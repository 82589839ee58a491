/**
 * createWorkerPool: a Piscina 5 pool whose workers each allocate from their own slice of one
 * shared device arena. The calling (main) thread reserves the arena, passes it to every worker in
 * `workerData`, can allocate too (`mainPool`, or `threadPool()` here), and adopts the slices of
 * workers that exit, crash or are terminated, so their superblocks return to the arena.
 *
 * Invariants: only this thread adopts dead slices and releases the arena's address range; after
 * `destroy()` every superblock is back and the range is released.
 */
import { availableParallelism } from 'node:os';
import { threadId as mainThreadId, type Worker } from 'node:worker_threads';
import {
  ArgumentRangeError,
  type Device,
  InvalidArgumentError,
  type Pool,
  type PoolOptions,
} from '@gpupool/core';
import { Piscina } from 'piscina';
import { DEFAULT_MAX_SLICES, SharedArena, SLICES_MAX } from './arena.js';
import { listenForRelayedFrees } from './descriptor.js';
import { WorkersDestroyedError } from './errors.js';
import { checkSliceSettings, SlicePool } from './slice-pool.js';
import type { ArenaStats } from './stats.js';
import {
  register,
  type SlicePoolSettings,
  type ThreadArena,
  unregister,
  WORKER_DATA_KEY,
  type WorkerBootstrap,
} from './thread-context.js';

type PiscinaOptions = NonNullable<ConstructorParameters<typeof Piscina>[0]>;

/** The key of the message a Piscina 5 worker posts once its task module is loaded (piscina's READY). */
const PISCINA_READY_KEY = '_WORKER_READY';
/** How long destroy() waits for a worker still loading its task module before ending it anyway. */
const LOAD_WAIT_MS = 10_000;

function isReadyMessage(message: unknown): boolean {
  return typeof message === 'object' && message !== null && PISCINA_READY_KEY in message;
}
type RunOptions = NonNullable<Parameters<Piscina['run']>[1]>;

export interface WorkerPoolOptions extends Omit<PiscinaOptions, 'filename' | 'workerData'> {
  /** HostDevice (CPU, CI) or CudaDevice (@gpupool/native). */
  device: Device;
  /** The worker module (absolute path or file URL), as Piscina's `filename`. */
  filename: string;
  /** Address space of the shared arena: a multiple of superblockBytes. */
  arenaBytes: number;
  /** Unit traded between slices (default 8 MiB, a multiple of the device page). */
  superblockBytes?: number;
  /** Policy name for every slice (core's default, bestFit); names, not functions, cross threads. */
  policy?: string;
  /** Empty superblocks a slice keeps before returning the oldest (default 2). */
  emptySuperblocksMax?: number;
  /** Slice slots (main thread included; at least maxThreads + 1; default the larger of 64 and maxThreads + 1). */
  maxSlices?: number;
  /** Cells in each slice's remote-free queue (power of two, default 4096). */
  remoteFreeQueueCells?: number;
  /** Period of the idle merge of remote frees and adoption of orphaned slices (ms, default 25; 0: off). */
  idleMergeMs?: number;
  /** Leak detection in every slice pool, as core's PoolOptions.detectLeaks (default 'sampled'). */
  detectLeaks?: PoolOptions['detectLeaks'];
  /** Passed to workers as Piscina's workerData (must be an object); the arena rides along under '@gpupool/workers'. */
  workerData?: Record<string, unknown>;
}

export interface WorkerPoolStats {
  arena: ArenaStats;
  threads: number;
  queueSize: number;
  completed: number;
}

export class WorkerPool {
  readonly piscina: Piscina;
  readonly arena: SharedArena;
  private readonly context: ThreadArena;
  private readonly settings: SlicePoolSettings;
  private adoptTimer: ReturnType<typeof setInterval> | null = null;
  private destroyedFlag = false;
  private destroying: Promise<void> | null = null;
  /** True once destroy() has ended the workers and adopted their slices (done once, not retried). */
  private workersEnded = false;
  /** Threads (by id) that have loaded their task module: ending them cannot abort the process. */
  private readonly loaded = new Set<number>();
  /** Threads (by id) still loading it, watched: resolves once loaded or stopped. */
  private readonly loading = new Map<number, Promise<void>>();

  /** @internal Use createWorkerPool. */
  constructor(options: WorkerPoolOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError(
        'options',
        'must be an object { device, filename, arenaBytes, … }',
        options,
      );
    }
    const { device, filename, arenaBytes, superblockBytes, policy, emptySuperblocksMax } = options;
    const { remoteFreeQueueCells, idleMergeMs, detectLeaks, workerData, ...piscinaOptions } = options;
    if (typeof filename !== 'string' || filename.length === 0) {
      throw new InvalidArgumentError(
        'filename',
        'must be the path or file URL of the worker module',
        filename,
      );
    }
    if (policy !== undefined && typeof policy !== 'string') {
      throw new InvalidArgumentError('policy', "must be a registered policy name such as 'tlsf'", policy);
    }
    if (
      workerData !== undefined &&
      (typeof workerData !== 'object' || workerData === null || Array.isArray(workerData))
    ) {
      throw new InvalidArgumentError(
        'workerData',
        'must be a plain object (the arena is added to it)',
        workerData,
      );
    }
    const arena = SharedArena.create({
      device,
      arenaBytes,
      superblockBytes,
      maxSlices: sliceSlotsFor(options),
      remoteFreeQueueCells,
    });
    this.arena = arena;
    this.settings = { policy, emptySuperblocksMax, idleMergeMs, detectLeaks };
    delete (piscinaOptions as Record<string, unknown>).device;
    for (const k of ['arenaBytes', 'superblockBytes', 'policy', 'emptySuperblocksMax', 'maxSlices'])
      delete (piscinaOptions as Record<string, unknown>)[k];
    try {
      // Checked here, not only when a thread opens its slice: there, a bad value would fail every task.
      checkSliceSettings(this.settings, arena.superblockCount);
      this.context = register(arena, this.settings, true);
      listenForRelayedFrees(this.context);
      const boot: WorkerBootstrap = { arena: arena.share(), slice: this.settings, filename };
      this.piscina = new Piscina({
        // 'async' lets a worker's event loop run between tasks, so its idle merge of remote frees runs.
        atomics: 'async',
        ...piscinaOptions,
        filename,
        workerData: { ...(workerData ?? {}), [WORKER_DATA_KEY]: boot },
      });
    } catch (error) {
      unregister(arena.arenaId);
      device.releaseRange(arena.range);
      throw error;
    }
    // Piscina reports the workers it starts with as created (and ready) before they have loaded the
    // task module; those it starts later, once they have. So the first ones are watched until their
    // ready message, the later ones counted as loaded when created.
    const starting = new Set<number>();
    for (const worker of this.piscina.threads as Worker[]) {
      starting.add(worker.threadId);
      void this.loadWait(worker);
    }
    this.piscina.on('workerCreate', (info: { id: number }) => {
      if (!starting.has(info.id)) this.loaded.add(info.id);
      this.watchWorker(info.id);
    });
    const period = idleMergeMs ?? 25;
    if (period > 0) {
      this.adoptTimer = setInterval(() => this.arena.adoptOrphans(), period);
      this.adoptTimer.unref();
    }
  }

  /** The main thread's pool over its own slice (opened on first use). */
  get mainPool(): Pool {
    if (this.destroyedFlag) throw new WorkersDestroyedError('mainPool');
    const slice = this.context.slice;
    if (slice instanceof SlicePool && !slice.destroyed) return slice;
    const pool = SlicePool.open(this.context, this.settings);
    this.context.slice = pool;
    return pool;
  }

  /** Runs a task on a worker (Piscina's `run`). */
  run<T = unknown>(task: unknown, options?: RunOptions): Promise<T> {
    if (this.destroyedFlag) return Promise.reject(new WorkersDestroyedError('run'));
    return this.piscina.run(task, options) as Promise<T>;
  }

  /** Adopts orphaned slices now (also done on a timer); returns the superblocks given back. */
  reclaim(): number {
    if (this.destroyedFlag) return 0;
    return this.arena.adoptOrphans();
  }

  stats(): WorkerPoolStats {
    return {
      arena: this.arena.stats(),
      threads: this.piscina.threads.length,
      queueSize: this.piscina.queueSize,
      completed: this.piscina.completed,
    };
  }

  get destroyed(): boolean {
    return this.destroyedFlag;
  }

  /**
   * Stops the workers, adopts their slices, destroys the main slice and releases the arena.
   * Blocks still held anywhere become invalid.
   */
  destroy(): Promise<void> {
    // A second call waits for the first: it resolves once everything is back, not at once. After a
    // refusal (the device kept memory), the next call tries again.
    if (this.destroying === null) {
      const attempt = this.destroyOnce();
      this.destroying = attempt;
      attempt.catch(() => {
        if (this.destroying === attempt) this.destroying = null;
      });
    }
    return this.destroying;
  }

  private async destroyOnce(): Promise<void> {
    this.destroyedFlag = true;
    // threadPool() in this thread opens no slice of an arena that is going away (as after a
    // destroy() that completed: NoArenaError), nor while a rejected destroy() waits for its retry.
    this.context.settings = null;
    if (this.adoptTimer !== null) clearInterval(this.adoptTimer);
    if (!this.workersEnded) {
      await this.untilLoaded();
      await this.piscina.destroy();
      const mine = this.context.slice;
      if (mine !== null && !mine.destroyed) mine.destroy();
      for (const s of this.arena.stats().slices) {
        if (s.state === 'active' && s.threadId !== mainThreadId) this.arena.adoptDeadThread(s.threadId);
      }
      this.workersEnded = true;
    }
    // Either may throw a device's refusal (an unmap, the range's release): destroy() again retries.
    this.arena.forceReturnAll();
    this.arena.device.releaseRange(this.arena.range);
    unregister(this.arena.arenaId);
  }

  /**
   * Resolves once no worker is still loading its task module (at most LOAD_WAIT_MS). Piscina loads
   * an ES module with require(), and Node 20 aborts the whole process when a worker is terminated
   * inside that (FATAL ERROR: v8::Module::IsGraphAsync … instantiated module): a pool destroyed just
   * after it was created must not end its workers there.
   */
  private async untilLoaded(): Promise<void> {
    // Until none is left: Piscina starts a worker in place of one that ends (its load failed, its
    // task exited) while this waits, and that one loads too. One deadline for them all.
    const deadline = Date.now() + LOAD_WAIT_MS;
    for (;;) {
      // threadId is -1 once a thread has stopped, even before its 'exit' event.
      const loading = (this.piscina.threads as Worker[]).filter(
        (w) => w.threadId !== -1 && !this.loaded.has(w.threadId),
      );
      const left = deadline - Date.now();
      if (loading.length === 0 || left <= 0) return;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timedOut = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, left);
      });
      await Promise.race([Promise.all(loading.map((w) => this.loadWait(w))), timedOut]);
      clearTimeout(timer);
    }
  }

  /**
   * Resolves when `worker` has loaded its task module (it posts Piscina's ready message) or has
   * stopped; one wait per worker, started for the workers Piscina begins with as soon as they exist
   * (their ready message may come before destroy()), for a later one when destroy() finds it loading.
   */
  private loadWait(worker: Worker): Promise<void> {
    const id = worker.threadId;
    let wait = this.loading.get(id);
    if (wait === undefined) {
      wait = new Promise<void>((resolve) => {
        const done = (): void => {
          worker.off('message', onMessage);
          worker.off('exit', done);
          this.loading.delete(id);
          resolve();
        };
        const onMessage = (message: unknown): void => {
          if (!isReadyMessage(message)) return;
          this.loaded.add(id);
          done();
        };
        worker.on('message', onMessage);
        worker.once('exit', done);
      });
      this.loading.set(id, wait);
    }
    return wait;
  }

  private watchWorker(id: number): void {
    const worker = (this.piscina.threads as Worker[]).find((w) => w.threadId === id);
    if (worker === undefined) return;
    worker.once('exit', () => {
      this.loaded.delete(id);
      if (!this.destroyedFlag) this.arena.adoptDeadThread(id);
    });
  }
}

/**
 * Slice slots for the pool: one per worker Piscina may run (maxThreads, resolved as Piscina does)
 * plus the main thread's. An explicit maxSlices below that is refused: the extra workers' tasks
 * would all fail with SlicesExhaustedError.
 */
function sliceSlotsFor(options: WorkerPoolOptions): number | undefined {
  const { maxThreads, minThreads, maxSlices } = options;
  // Piscina's own default: 1.5 threads per CPU; it raises maxThreads to minThreads.
  const max = typeof maxThreads === 'number' ? maxThreads : availableParallelism() * 1.5;
  const threads = Math.ceil(Math.max(max, typeof minThreads === 'number' ? minThreads : 0));
  if (!Number.isFinite(threads)) return maxSlices; // Piscina refuses such options itself
  if (maxSlices === undefined) {
    if (threads + 1 > SLICES_MAX) {
      throw new ArgumentRangeError(
        'maxThreads',
        `must be at most ${SLICES_MAX - 1} (each worker and the main thread take one of ${SLICES_MAX} slice slots)`,
        maxThreads ?? threads,
      );
    }
    return Math.max(DEFAULT_MAX_SLICES, threads + 1);
  }
  if (typeof maxSlices === 'number' && maxSlices < threads + 1) {
    throw new ArgumentRangeError(
      'maxSlices',
      `must be at least maxThreads + 1 (${threads + 1}): a slice for each worker and one for the main thread`,
      maxSlices,
    );
  }
  return maxSlices;
}

export function createWorkerPool(options: WorkerPoolOptions): WorkerPool {
  return new WorkerPool(options);
}
