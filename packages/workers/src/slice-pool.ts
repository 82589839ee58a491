/**
 * SlicePool: a core Pool whose backing is this thread's slice of a shared arena. It adds what
 * crossing threads needs: blocks exported as descriptors are remembered (offset → block) until
 * freed, and frees pushed by other threads onto this slice's remote-free queue are merged at the
 * start of the next acquire/release and on an idle timer.
 *
 * Invariants: `exported` holds exactly the live blocks handed out with toDescriptor (kept after
 * destroy(), so a block released here then still comes off its run's count, through the slice's
 * queue like any remote free, so its adopter counts it once); the shared
 * exported-block count of each run equals the number of its blocks in `exported`; only this
 * thread pops this slice's queue while the slice is active.
 */
import { threadId } from 'node:worker_threads';
import {
  type AcquireOptions,
  type AcquireRequest,
  ArgumentRangeError,
  type Block,
  DoubleReleaseError,
  InvalidArgumentError,
  Pool,
  PoolDestroyedError,
} from '@gpupool/core';
import type { SharedArena } from './arena.js';
import type { BlockDescriptor } from './descriptor.js';
import {
  exportKey,
  GRANULE_BYTES,
  MERGE_APPLY,
  MERGE_REJECT,
  OP_EXPORT,
  OP_UNEXPORT,
  SL_QUEUE_HEAD,
  SL_QUEUE_TAIL,
  SL_REMOTE_FREES_MERGED,
  SL_REMOTE_FREES_REJECTED,
  sliceIndex,
  TOMBSTONE_OWNER_ID,
} from './layout.js';
import { SliceBacking } from './slice-backing.js';
import type { SliceStats } from './stats.js';
import {
  pushDeferredFrees,
  releaseRemote,
  type SlicePoolSettings,
  type ThreadArena,
} from './thread-context.js';

/** Brand shared by every copy of this package loaded in a thread (ESM and CJS builds). */
export const SLICE_POOL_BRAND = Symbol.for('@gpupool/workers.SlicePool');
/** Remote frees merged per operation at most, so one call never does unbounded work. */
export const MERGE_BATCH_MAX = 1024;
export const DEFAULT_IDLE_MERGE_MS = 25;

export class SlicePool extends Pool {
  readonly [SLICE_POOL_BRAND] = true;
  readonly arena: SharedArena;
  readonly slot: number;
  readonly ownerId: number;
  private readonly slice: SliceBacking;
  private readonly context: ThreadArena;
  private readonly exported = new Map<number, Block>();
  private readonly headAt: number;
  private readonly tailAt: number;
  private idleTimer: ReturnType<typeof setInterval> | null = null;

  /** Opens a slice for the calling thread and a pool over it. */
  static open(context: ThreadArena, settings: SlicePoolSettings): SlicePool {
    const arena = context.arena;
    checkSliceSettings(settings, arena.superblockCount);
    const idleMergeMs = settings.idleMergeMs ?? DEFAULT_IDLE_MERGE_MS;
    const { slot, ownerId } = arena.openSlot(threadId);
    const slice = new SliceBacking({
      arena,
      slot,
      ownerId,
      emptySuperblocksMax: settings.emptySuperblocksMax,
    });
    try {
      return new SlicePool(context, settings, slice, idleMergeMs);
    } catch (error) {
      slice.destroy();
      throw error;
    }
  }

  private constructor(
    context: ThreadArena,
    settings: SlicePoolSettings,
    slice: SliceBacking,
    idleMergeMs: number,
  ) {
    super({
      device: context.arena.device,
      backing: slice,
      policy: settings.policy,
      limitBytes: context.arena.arenaBytes,
      detectLeaks: settings.detectLeaks,
      name: `slice ${slice.slot} of arena ${context.arena.arenaId} (thread ${threadId})`,
    });
    this.arena = context.arena;
    this.slot = slice.slot;
    this.ownerId = slice.ownerId;
    this.slice = slice;
    this.context = context;
    this.headAt = sliceIndex(this.arena, this.slot, SL_QUEUE_HEAD);
    this.tailAt = sliceIndex(this.arena, this.slot, SL_QUEUE_TAIL);
    if (idleMergeMs > 0) {
      this.idleTimer = setInterval(() => this.onIdle(), idleMergeMs);
      this.idleTimer.unref();
    }
  }

  /** The idle timer: merges remote frees; if another slice ran out of superblocks, gives back the empty ones. */
  private onIdle(): void {
    this.mergeRemoteFrees();
    if (!this.destroyed && this.slice.claimFailedElsewhere()) this.trim();
  }

  override acquire(request: AcquireRequest, options?: AcquireOptions): Block {
    if (this.remoteFreesWaiting()) this.mergeRemoteFrees();
    return super.acquire(request, options);
  }

  /** @internal Called by Block.release(). */
  override releaseBlock(block: Block): void {
    // Most blocks never leave their thread: skip the table lookup while nothing is exported.
    if (this.exported.size !== 0 && block._owner === this && this.exported.get(block.offset) === block) {
      if (this.destroyed) {
        // The adopter owns this slice's counts now and applies each block's free once, whichever
        // thread sends it: the same block released through its descriptor too must not count twice.
        this.exported.delete(block.offset);
        releaseRemote(this.context, this.ownerId, block.offset, block.id | 0);
      } else {
        this.unexport(block);
      }
    }
    super.releaseBlock(block);
    if (this.remoteFreesWaiting()) this.mergeRemoteFrees();
  }

  override trim(): number {
    this.mergeRemoteFrees();
    return super.trim();
  }

  override destroy(): void {
    if (this.destroyed) return;
    if (this.idleTimer !== null) clearInterval(this.idleTimer);
    this.idleTimer = null;
    this.mergeRemoteFrees();
    super.destroy();
    // `exported` is kept: the runs of these blocks stay owned (the creator adopts them), and a
    // block released here after all must still come off its run's exported count.
    if (this.context.slice === this) this.context.slice = null;
  }

  /** Superblocks this slice owns now. */
  get superblocks(): number {
    return this.slice.superblocks;
  }

  sliceStats(): SliceStats {
    return this.arena.sliceStats(this.slot);
  }

  /** Merges frees other threads queued for this slice's blocks; returns how many were merged. */
  mergeRemoteFrees(): number {
    if (this.destroyed) return 0;
    this.flushDeferred();
    let merged = 0;
    // Each entry is logged before it changes anything (SL_MERGE_STATE): this thread may end
    // between any two steps (Piscina terminates idle workers, and idle workers merge), and its
    // adopter then finishes the entry. Counted as each is applied, before the release (which may
    // give a superblock back).
    this.arena.drainQueue(this.slot, MERGE_BATCH_MAX, (offsetBytes, blockId, ownerId, pos) => {
      // A position an ended producer took and never filled (its adopter delivered the free anew).
      if (ownerId === TOMBSTONE_OWNER_ID) return;
      const block = ownerId === this.ownerId ? this.exported.get(offsetBytes) : undefined;
      if (block === undefined || (block.id | 0) !== blockId || block._owner !== this) {
        this.arena.logMerge(this.slot, pos, MERGE_REJECT, -1, 0);
        this.arena.count(this.slot, SL_REMOTE_FREES_REJECTED);
        return;
      }
      const first = this.slice.runFirstOf(offsetBytes);
      this.arena.logMerge(
        this.slot,
        pos,
        MERGE_APPLY,
        first,
        exportKey(offsetBytes / GRANULE_BYTES, blockId),
      );
      this.exported.delete(offsetBytes);
      this.arena.addExported(first, -1, offsetBytes, blockId);
      this.arena.count(this.slot, SL_REMOTE_FREES_MERGED);
      super.releaseBlock(block);
      merged++;
    });
    this.arena.clearMergeLog(this.slot);
    return merged;
  }

  /** @internal Remembers a block handed to another thread; returns its descriptor. */
  exportBlock(block: Block): BlockDescriptor {
    if (block._owner !== this) throw new DoubleReleaseError(`block #${block.id}`);
    // After destroy() the block is inert and its run may be back in the arena (or adopted).
    if (this.destroyed) throw new PoolDestroyedError('toDescriptor');
    const offset = block.offset;
    const descriptor: BlockDescriptor = Object.freeze({
      arenaId: this.arena.arenaId,
      offset,
      bytes: block.bytes,
      owner: this.ownerId,
      id: block.id | 0,
      shape: block.shape === undefined ? undefined : [...block.shape],
      dtype: block.dtype,
    });
    if (this.exported.get(offset) !== block) {
      this.exported.set(offset, block);
      // Logged (OP_EXPORT): a thread that ends before this returns never handed the descriptor
      // out, and its adopter takes the count back.
      this.arena.changeExported(this.slot, OP_EXPORT, this.slice.runFirstOf(offset), offset, block.id);
    }
    return descriptor;
  }

  /** @internal The live exported block a descriptor names, if this slice owns it. */
  exportedBlock(offset: number, id: number): Block | undefined {
    const block = this.exported.get(offset);
    return block !== undefined && (block.id | 0) === id ? block : undefined;
  }

  private unexport(block: Block): void {
    this.exported.delete(block.offset);
    // Logged (OP_UNEXPORT): the adopter of a thread that ends midway completes it.
    this.arena.changeExported(
      this.slot,
      OP_UNEXPORT,
      this.slice.runFirstOf(block.offset),
      block.offset,
      block.id,
    );
  }

  private remoteFreesWaiting(): boolean {
    const w = this.arena.words;
    return Atomics.load(w, this.tailAt) !== Atomics.load(w, this.headAt) || this.context.deferred.length > 0;
  }

  private flushDeferred(): void {
    if (this.context.deferred.length > 0) pushDeferredFrees(this.context);
  }
}

/**
 * Checks the slice settings every thread of a worker pool uses; createWorkerPool calls it at once,
 * so a bad value fails there rather than in every task.
 */
export function checkSliceSettings(settings: SlicePoolSettings, superblockCount: number): void {
  const idleMergeMs = settings.idleMergeMs ?? DEFAULT_IDLE_MERGE_MS;
  if (!(typeof idleMergeMs === 'number' && Number.isFinite(idleMergeMs) && idleMergeMs >= 0)) {
    throw new ArgumentRangeError(
      'idleMergeMs',
      'must be a finite number ≥ 0 (0: no idle merging)',
      idleMergeMs,
    );
  }
  const esm = settings.emptySuperblocksMax;
  if (esm !== undefined && !(Number.isInteger(esm) && esm >= 0 && esm <= superblockCount)) {
    throw new ArgumentRangeError('emptySuperblocksMax', `must be an integer in 0..${superblockCount}`, esm);
  }
  // The modes core's Pool accepts (checked there too, but only once a thread opens its slice).
  const detect = settings.detectLeaks;
  if (detect !== undefined && ![true, false, 'all', 'sampled', 'off'].includes(detect)) {
    throw new InvalidArgumentError('detectLeaks', "must be true, false, 'all', 'sampled' or 'off'", detect);
  }
}

export function isSlicePool(value: unknown): value is SlicePool {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[SLICE_POOL_BRAND] === true
  );
}
