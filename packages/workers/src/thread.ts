/**
 * `@gpupool/workers/thread`: what task code calls inside a worker. `threadPool()` returns the
 * calling thread's core Pool over its slice of the worker pool's shared arena, opening the slice on
 * first use (in the main thread: the slice of the pool created there). One slice per thread,
 * reused by every task that thread runs; blocks a task forgets are leaks of that slice, reported
 * by the pool's leak detection and returned to the arena when the thread exits.
 */
import type { Pool } from '@gpupool/core';
import { SharedArena } from './arena.js';
import { NoArenaError } from './errors.js';
import { isSlicePool, SlicePool } from './slice-pool.js';
import { register, registry, type ThreadArena, workerBootstrap } from './thread-context.js';

export type { BlockDescriptor } from './descriptor.js';
export { fromDescriptor, RemoteBlock, toDescriptor } from './descriptor.js';

/** The calling thread's pool over its slice of the shared arena. */
export function threadPool(): Pool {
  return threadSlicePool();
}

/** Same as threadPool(), typed as the SlicePool (slice statistics, merging). */
export function threadSlicePool(): SlicePool {
  const r = registry();
  let context: ThreadArena | null = r.current;
  if (context === null) {
    const boot = workerBootstrap();
    if (boot === undefined) throw new NoArenaError();
    const existing = r.arenas.get(boot.arena.arenaId);
    context = existing ?? register(SharedArena.attach(boot.arena, [boot.filename]), boot.slice, true);
    r.current = context;
  }
  const slice = context.slice;
  if (isSlicePool(slice) && !slice.destroyed) return slice;
  if (context.settings === null) throw new NoArenaError();
  const pool = SlicePool.open(context, context.settings);
  context.slice = pool;
  return pool;
}
