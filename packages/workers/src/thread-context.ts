/**
 * Per-thread registry of attached arenas and the calling thread's slice pool. Kept on
 * `globalThis` under a registered symbol so the package's entry points (`.` and `./thread`, ESM or
 * CJS) share one registry per thread even when bundled separately.
 *
 * Invariant: at most one SharedArena object and one slice pool per arena per thread; `deferred`
 * (creating thread only) holds remote frees whose owner's queue was full, retried until pushed
 * (never dropped). Other threads send such frees to the creating thread over `relay`.
 */
import { BroadcastChannel, workerData } from 'node:worker_threads';
import type { PoolOptions } from '@gpupool/core';
import type { ArenaHandle, SharedArena } from './arena.js';
import { SLOT_FREE, slotOfOwnerId } from './layout.js';

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
}

/**
 * Pushes the deferred remote frees onto their owners' queues; those whose queue is still full stay
 * deferred (never dropped). Returns how many remain.
 */
export function pushDeferredFrees(context: ThreadArena): number {
  const d = context.deferred;
  let kept = 0;
  for (let i = 0; i < d.length; i += 3) {
    if (!context.arena.pushRemoteFree(d[i]!, d[i + 1]!, d[i + 2]!)) {
      d[kept++] = d[i]!;
      d[kept++] = d[i + 1]!;
      d[kept++] = d[i + 2]!;
    }
  }
  d.length = kept;
  return kept;
}

const DEFERRED_RETRY_MS = 5;

/**
 * Frees block (`offset`, `id`) of `ownerId`'s slice from this thread: onto the owner's remote-free
 * queue, or (queue full) to the creating thread, which keeps it until pushed; dropped if the owner
 * and everything it held are back in the arena already.
 */
export function releaseRemote(context: ThreadArena, ownerId: number, offset: number, id: number): void {
  const arena = context.arena;
  const { ownerId: current, state } = arena.slotOwner(slotOfOwnerId(ownerId, arena.sliceSlots));
  if (current !== ownerId || state === SLOT_FREE) {
    // The owner and everything it held are back in the arena already.
    arena.noteDroppedRemoteFree();
    return;
  }
  if (context.deferred.length === 0 && arena.pushRemoteFree(ownerId, offset, id)) return;
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
    entry = { arena, slice: null, settings, deferred: [], retryTimer: null, relay: null };
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
