/**
 * Per-thread registry of attached arenas and the calling thread's slice pool. Kept on
 * `globalThis` under a registered symbol so the package's entry points (`.` and `./thread`, ESM or
 * CJS) share one registry per thread even when bundled separately.
 *
 * Invariant: at most one SharedArena object and one slice pool per arena per thread; `deferred`
 * (creating thread only) holds remote frees whose owner's queue was full, retried until pushed
 * (never dropped). Other threads send such frees to the creating thread over `relay`.
 */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import type { PoolOptions } from '@gpupool/core';
import { type ArenaHandle, PUSH_FULL, type SharedArena } from './arena.js';

/** workerData key under which createWorkerPool passes the arena to its workers. */
export const WORKER_DATA_KEY = '@gpupool/workers';

export interface SlicePoolSettings {
  policy: string | undefined;
  emptySuperblocksMax: number | undefined;
  idleMergeMs: number | undefined;
  detectLeaks: PoolOptions['detectLeaks'];
}

export interface WorkerBootstrap {
  arena: ArenaHandle;
  slice: SlicePoolSettings;
  /** The worker file, to resolve the CUDA module from. */
  filename: string;
}

/** The subset of SlicePool the registry needs (avoids an import cycle). */
export interface ThreadSlice {
  readonly destroyed: boolean;
  destroy(): void;
}

export interface ThreadArena {
  readonly arena: SharedArena;
  slice: ThreadSlice | null;
  settings: SlicePoolSettings | null;
  /** Remote frees not yet pushed: [ownerId, offsetBytes, blockId] triples. */
  deferred: number[];
  retryTimer: ReturnType<typeof setTimeout> | null;
  /** The channel to (workers) or from (creator) the creating thread for frees a full queue refused. */
  relay: BroadcastChannel | null;
  /** This thread's producer record in the arena (PR_*), taken on its first remote free; -1: none left. */
  producerRecord: number | undefined;
}

/**
 * Pushes the deferred remote frees onto their owners' queues; those whose queue is still full stay
 * deferred (never dropped). Returns how many remain.
 */
export function pushDeferredFrees(context: ThreadArena): number {
  const d = context.deferred;
  let kept = 0;
  const record = producerRecordOf(context);
  for (let i = 0; i < d.length; i += 3) {
    if (record < 0 || context.arena.pushRemoteFree(record, d[i]!, d[i + 1]!, d[i + 2]!) === PUSH_FULL) {
      d[kept++] = d[i]!;
      d[kept++] = d[i + 1]!;
      d[kept++] = d[i + 2]!;
    }
  }
  d.length = kept;
  return kept;
}

const DEFERRED_RETRY_MS = 5;

/** This thread's producer record (taken on first use; the creating thread's is reserved). */
function producerRecordOf(context: ThreadArena): number {
  // A thread that found none left tries again each time (a dead thread's record is freed on adoption).
  if (context.producerRecord === undefined || context.producerRecord < 0)
    context.producerRecord = context.arena.takeProducerRecord(threadId);
  return context.producerRecord;
}

/**
 * Frees block (`offset`, `id`) of `ownerId`'s slice from this thread: onto the owner's remote-free
 * queue, through this thread's producer record, or (queue full, or no record left) to the
 * creating thread, which keeps it until pushed; dropped if the owner and everything it held are
 * back in the arena already.
 */
export function releaseRemote(context: ThreadArena, ownerId: number, offset: number, id: number): void {
  const arena = context.arena;
  if (context.deferred.length === 0) {
    const record = producerRecordOf(context);
    if (record >= 0 && arena.pushRemoteFree(record, ownerId, offset, id) !== PUSH_FULL) return;
  }
  if (!arena.creator) {
    // The owner's queue is full. A list kept here would be lost when this worker ends (Piscina ends
    // idle workers; tasks may exit): the creating thread, which lives until destroy(), keeps it.
    // A message posted before this thread ends is still delivered.
    if (context.relay === null) {
      context.relay = new BroadcastChannel(relayName(arena.arenaId));
      context.relay.unref();
    }
    context.relay.postMessage([ownerId, offset, id]);
    return;
  }
  context.deferred.push(ownerId, offset, id);
  scheduleRetry(context);
}

export function relayName(arenaId: number): string {
  return `@gpupool/workers: frees for arena ${arenaId}`;
}

function scheduleRetry(context: ThreadArena): void {
  if (context.retryTimer !== null) return;
  context.retryTimer = setTimeout(() => {
    context.retryTimer = null;
    if (pushDeferredFrees(context) > 0) scheduleRetry(context);
  }, DEFERRED_RETRY_MS);
  // Never what keeps a process alive: the frees matter only to a pool that is still used.
  context.retryTimer.unref();
}

interface Registry {
  arenas: Map<number, ThreadArena>;
  /** The arena `threadPool()` serves in this thread. */
  current: ThreadArena | null;
}

const REGISTRY_KEY = Symbol.for('@gpupool/workers.thread-registry');

export function registry(): Registry {
  const g = globalThis as unknown as Record<symbol, Registry | undefined>;
  let r = g[REGISTRY_KEY];
  if (r === undefined) {
    r = { arenas: new Map(), current: null };
    g[REGISTRY_KEY] = r;
  }
  return r;
}

export function register(
  arena: SharedArena,
  settings: SlicePoolSettings | null,
  makeCurrent: boolean,
): ThreadArena {
  const r = registry();
  let entry = r.arenas.get(arena.arenaId);
  if (entry === undefined) {
    const created: ThreadArena = {
      arena,
      slice: null,
      settings,
      deferred: [],
      retryTimer: null,
      relay: null,
      producerRecord: undefined,
    };
    // The adopter delivers the frees of ended producers as this thread's own remote frees.
    if (arena.creator) arena.redeliver = (ownerId, offset, id) => releaseRemote(created, ownerId, offset, id);
    entry = created;
    r.arenas.set(arena.arenaId, entry);
  }
  if (settings !== null) entry.settings = settings;
  if (makeCurrent && (r.current === null || r.current.arena !== arena)) r.current = entry;
  return entry;
}

export function unregister(arenaId: number): void {
  const r = registry();
  const entry = r.arenas.get(arenaId);
  if (entry?.retryTimer) clearTimeout(entry.retryTimer);
  entry?.relay?.close();
  r.arenas.delete(arenaId);
  if (r.current?.arena.arenaId === arenaId) r.current = null;
}

/** What createWorkerPool put in this worker's workerData, if anything. */
export function workerBootstrap(): WorkerBootstrap | undefined {
  const data = workerData as Record<string, unknown> | null | undefined;
  if (typeof data !== 'object' || data === null) return undefined;
  return data[WORKER_DATA_KEY] as WorkerBootstrap | undefined;
}
