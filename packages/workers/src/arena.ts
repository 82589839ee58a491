/**
 * SharedArena: one device address range split into superblocks, with its directory, slice table
 * and remote-free queues in one SharedArrayBuffer (see layout.ts). The creating thread reserves
 * the range; every thread of the worker pool attaches to the same arena and claims superblocks
 * with compare-and-swap, never a lock and never a wait.
 *
 * Invariants: a superblock has at most one owner; it is mapped exactly while it is owned (between
 * the owner's map and its unmap); slice slots are reused only after every superblock of their last
 * owner is back and no free for that owner is being pushed (SLOT_CLOSING), with a new generation
 * so stale descriptors are recognised. Every multi-step change of shared words on a slow path is
 * recorded first in its thread's books (layout.ts, "Termination"). Adoption of dead slices and
 * producer records (`adoptDeadThread`, `adoptOrphans`) runs only in the creating thread, whose
 * device reserved the range and may unmap any page of it.
 */
import { randomInt } from 'node:crypto';
import { threadId as creatorThreadId } from 'node:worker_threads';
import {
  type AddressRange,
  type ArenaRef,
  ArgumentRangeError,
  type Device,
  DeviceError,
  InvalidArgumentError,
  InvariantError,
  isDeviceError,
  isPowerOfTwo,
} from '@gpupool/core';
import { canAdoptRanges, type DeviceShare, openSharedDevice, shareDevice } from './device-link.js';
import { SlicesExhaustedError, UnshareableDeviceError } from './errors.js';
import {
  CELL_BLOCK_ID,
  CELL_OFFSET_GRANULES,
  CELL_OWNER_ID,
  CELL_SEQ,
  cellIndex,
  directoryIndex,
  exportKey,
  GRANULE_BYTES,
  HDR_CLAIM_FAILURES,
  HDR_DROPPED_REMOTE_FREES,
  HDR_MAGIC,
  HDR_QUEUE_CELLS,
  HDR_RECLAIMED_REMOTE_FREES,
  HDR_RECLAIMED_SLICES,
  HDR_RECLAIMED_SUPERBLOCKS,
  HDR_SLICE_SLOTS,
  HDR_SUPERBLOCK_COUNT,
  HDR_SUPERBLOCK_GRANULES,
  LAYOUT_MAGIC,
  type LayoutShape,
  layoutBytes,
  MAP_MAPPED,
  MAP_MAPPING,
  MAP_UNMAPPED,
  MAP_UNMAPPING,
  MERGE_APPLY,
  MERGE_REJECT,
  OP_CLAIM,
  OP_EXPORT,
  OP_RETURN,
  OP_UNEXPORT,
  OWNER_FREE,
  ownerIdOf,
  PR_BLOCK_ID,
  PR_OFFSET_GRANULES,
  PR_OWNER_ID,
  PR_POS,
  PR_STATE,
  PR_THREAD,
  PUSH_PENDING,
  PUSH_WON,
  producerIndex,
  SB_EXPORTED_BLOCKS,
  SB_EXPORTED_SUM,
  SB_MAP_STATE,
  SB_OWNER,
  SB_RUN_FIRST,
  SL_CLAIMS,
  SL_DEAD,
  SL_GENERATION,
  SL_MERGE_COUNT,
  SL_MERGE_FIRST,
  SL_MERGE_KEY,
  SL_MERGE_POS,
  SL_MERGE_STATE,
  SL_MERGE_SUM,
  SL_MERGE_TALLY,
  SL_OP_COUNT,
  SL_OP_EXPORTED,
  SL_OP_FIRST,
  SL_OP_KEY,
  SL_OP_PEAK,
  SL_OP_STATE,
  SL_OP_SUM,
  SL_OP_SUPERBLOCKS,
  SL_OP_TALLY,
  SL_OWNER_ID,
  SL_QUEUE_BASE,
  SL_QUEUE_HEAD,
  SL_QUEUE_TAIL,
  SL_REMOTE_FREES_MERGED,
  SL_REMOTE_FREES_REJECTED,
  SL_RETURNS,
  SL_STATE,
  SL_SUPERBLOCKS,
  SL_SUPERBLOCKS_PEAK,
  SL_THREAD_ID,
  SLOT_ACTIVE,
  SLOT_CLOSING,
  SLOT_FREE,
  SLOT_ORPHANED,
  sliceIndex,
  slotOfOwnerId,
  slotOpening,
  TOMBSTONE_OWNER_ID,
} from './layout.js';
import type { ArenaStats, SliceStats } from './stats.js';

export const DEFAULT_SUPERBLOCK_BYTES = 8 * 1024 * 1024;
export const DEFAULT_MAX_SLICES = 64;
export const DEFAULT_QUEUE_CELLS = 4096;
/** Offsets travel as int32 granule counts: the largest arena they can name. */
export const ARENA_BYTES_MAX = 2 ** 31 * GRANULE_BYTES;
const SUPERBLOCKS_MAX = 1 << 20;
export const SLICES_MAX = 1024;
const QUEUE_CELLS_MAX = 1 << 16;

export interface SharedArenaOptions {
  device: Device;
  /** Address space of the arena; a multiple of superblockBytes. */
  arenaBytes: number;
  /** Superblock size: a multiple of the device page size. Default 8 MiB (rounded up to pages). */
  superblockBytes?: number;
  /** Slice slots (threads that may hold a slice at once, main thread included). Default 64. */
  maxSlices?: number;
  /** Cells per remote-free queue, a power of two. Default 4096. */
  remoteFreeQueueCells?: number;
}

/** What crosses to a worker (structured-cloneable). */
export interface ArenaHandle {
  readonly arenaId: number;
  readonly words: SharedArrayBuffer;
  readonly device: DeviceShare;
  readonly range: { readonly id: number; readonly base: bigint; readonly bytes: number };
  readonly superblockBytes: number;
}

/**
 * Named points of the slow paths (claim, return, export, remote push) where a thread may be
 * terminated; the tests park a worker at one (SharedArena.stepHook) and terminate it there.
 */
export type ArenaStep =
  | 'open:taken'
  | 'close:closing'
  | 'push:checked'
  | 'push:trying'
  | 'push:claimed'
  | 'push:won'
  | 'push:published'
  | 'claim:won'
  | 'claim:mapped'
  | 'return:detached'
  | 'return:freed'
  | 'export:sum'
  | 'unexport:sum'
  | 'resolve:pending';

/** What pushRemoteFree did with a free. */
export type PushResult = typeof PUSH_PUSHED | typeof PUSH_FULL | typeof PUSH_DROPPED;
export const PUSH_PUSHED = 0;
/** The owner's queue is full: the caller keeps the free and tries again later. */
export const PUSH_FULL = 1;
/** Its owner is gone, or holds nothing: the free was stale (counted in droppedRemoteFrees). */
export const PUSH_DROPPED = 2;
/** The creating thread's producer record. */
const CREATOR_RECORD = 0;

export interface OpenedSlot {
  readonly slot: number;
  readonly ownerId: number;
}

export class SharedArena implements LayoutShape {
  readonly arenaId: number;
  readonly superblockBytes: number;
  readonly superblockCount: number;
  readonly sliceSlots: number;
  readonly queueCells: number;
  readonly words: Int32Array;
  readonly device: Device;
  readonly range: AddressRange;
  /** Pool-space address 0 is the arena's first byte, so block offsets are arena offsets. */
  readonly ref: ArenaRef;
  /** True in the thread that reserved the range. */
  readonly creator: boolean;
  private readonly buffer: SharedArrayBuffer;
  private readonly deviceShare: DeviceShare;
  /**
   * Creator only: per orphaned ownerId, the remote frees (offset:id) already applied to its
   * exported counts, so a block released twice after its owner is gone counts once.
   */
  private readonly adoptedFrees = new Map<number, Set<string>>();
  /**
   * @internal Test hook: called at each named point of the slow paths (ArenaStep) in this thread;
   * the tests park a worker there and terminate it. Null (one property check) otherwise.
   */
  stepHook: ((step: ArenaStep) => void) | null = null;
  /**
   * Creator only: delivers a free that an ended producer may not have pushed (see
   * resolveDeadProducers); the worker pool sets it to its main thread's remote release, which
   * keeps the free until its queue takes it. Unset: pushed here, kept in `undelivered` if full.
   */
  redeliver: ((ownerId: number, offsetBytes: number, blockId: number) => void) | null = null;
  /** Creator only: frees `redeliver` was not set to take and a full queue refused ([ownerId, offsetBytes, blockId]…). */
  private readonly undelivered: number[] = [];

  private constructor(
    handle: ArenaHandle,
    device: Device,
    range: AddressRange,
    creator: boolean,
    deviceShare: DeviceShare,
  ) {
    this.arenaId = handle.arenaId;
    this.buffer = handle.words;
    this.words = new Int32Array(handle.words);
    if (Atomics.load(this.words, HDR_MAGIC) !== LAYOUT_MAGIC) {
      throw new InvalidArgumentError('handle', 'must come from SharedArena.share() (bad layout magic)');
    }
    this.superblockCount = this.words[HDR_SUPERBLOCK_COUNT]!;
    this.sliceSlots = this.words[HDR_SLICE_SLOTS]!;
    this.queueCells = this.words[HDR_QUEUE_CELLS]!;
    this.superblockBytes = this.words[HDR_SUPERBLOCK_GRANULES]! * GRANULE_BYTES;
    this.device = device;
    this.range = range;
    this.creator = creator;
    this.deviceShare = deviceShare;
    this.ref = Object.freeze({ id: this.arenaId, base: range.base, start: 0, bytes: range.bytes });
  }

  /** Reserves the arena on `device` (the calling thread becomes its creator). */
  static create(options: SharedArenaOptions): SharedArena {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', 'must be an object { device, arenaBytes, … }', options);
    }
    const device = options.device;
    if (typeof device !== 'object' || device === null || typeof device.pageBytes !== 'number') {
      throw new InvalidArgumentError('device', 'must be a Device (HostDevice or CudaDevice)', device);
    }
    if (!device.vmm) {
      throw new InvalidArgumentError(
        'device',
        'must support virtual memory management (vmm: true)',
        device.kind,
      );
    }
    const page = device.pageBytes;
    const superblockBytes = options.superblockBytes ?? Math.ceil(DEFAULT_SUPERBLOCK_BYTES / page) * page;
    // The directory header keeps it as an int32 count of granules: 2^31 granules would wrap negative.
    if (
      !Number.isSafeInteger(superblockBytes) ||
      superblockBytes <= 0 ||
      superblockBytes % page !== 0 ||
      superblockBytes / GRANULE_BYTES > 0x7fffffff
    ) {
      throw new ArgumentRangeError(
        'superblockBytes',
        `must be a positive multiple of the device page size (${page}) below ${ARENA_BYTES_MAX}`,
        superblockBytes,
      );
    }
    const arenaBytes = options.arenaBytes;
    if (typeof arenaBytes !== 'number' || !Number.isSafeInteger(arenaBytes) || arenaBytes <= 0) {
      throw new ArgumentRangeError('arenaBytes', 'must be a positive safe integer', arenaBytes);
    }
    if (arenaBytes % superblockBytes !== 0 || arenaBytes > ARENA_BYTES_MAX) {
      throw new ArgumentRangeError(
        'arenaBytes',
        `must be a multiple of superblockBytes (${superblockBytes}) and at most ${ARENA_BYTES_MAX}`,
        arenaBytes,
      );
    }
    const superblockCount = arenaBytes / superblockBytes;
    if (superblockCount > SUPERBLOCKS_MAX) {
      throw new ArgumentRangeError(
        'arenaBytes',
        `must hold at most ${SUPERBLOCKS_MAX} superblocks (raise superblockBytes)`,
        arenaBytes,
      );
    }
    const sliceSlots = options.maxSlices ?? DEFAULT_MAX_SLICES;
    if (!Number.isInteger(sliceSlots) || sliceSlots < 1 || sliceSlots > SLICES_MAX) {
      throw new ArgumentRangeError('maxSlices', `must be an integer in 1..${SLICES_MAX}`, sliceSlots);
    }
    const queueCells = options.remoteFreeQueueCells ?? DEFAULT_QUEUE_CELLS;
    if (!isPowerOfTwo(queueCells) || queueCells < 2 || queueCells > QUEUE_CELLS_MAX) {
      throw new ArgumentRangeError(
        'remoteFreeQueueCells',
        `must be a power of two in 2..${QUEUE_CELLS_MAX}`,
        queueCells,
      );
    }
    const deviceShare = shareDevice(device);
    const shape = { superblockCount, sliceSlots, queueCells };
    const buffer = new SharedArrayBuffer(layoutBytes(shape));
    const words = new Int32Array(buffer);
    words[HDR_SUPERBLOCK_COUNT] = superblockCount;
    words[HDR_SLICE_SLOTS] = sliceSlots;
    words[HDR_QUEUE_CELLS] = queueCells;
    words[HDR_SUPERBLOCK_GRANULES] = superblockBytes / GRANULE_BYTES;
    for (let s = 0; s < sliceSlots; s++) {
      for (let c = 0; c < queueCells; c++) words[cellIndex(shape, s, c, CELL_SEQ)] = c;
    }
    for (let b = 0; b < superblockCount; b++) words[directoryIndex(b, SB_RUN_FIRST)] = -1;
    words[producerIndex(shape, CREATOR_RECORD, PR_THREAD)] = creatorThreadId + 1;
    // Published last: attach() checks it, and the buffer reaches workers only after this store.
    Atomics.store(words, HDR_MAGIC, LAYOUT_MAGIC);
    const range = device.reserve(arenaBytes);
    const handle: ArenaHandle = {
      arenaId: randomInt(1, 2 ** 31 - 1),
      words: buffer,
      device: deviceShare,
      range: { id: range.id, base: range.base, bytes: range.bytes },
      superblockBytes,
    };
    return new SharedArena(handle, device, range, true, deviceShare);
  }

  /** Opens an arena shared by another thread; opens the device in this thread. */
  static attach(handle: ArenaHandle, resolveFrom: readonly string[] = []): SharedArena {
    if (typeof handle !== 'object' || handle === null || !(handle.words instanceof SharedArrayBuffer)) {
      throw new InvalidArgumentError('handle', 'must come from SharedArena.share()', handle);
    }
    const device = openSharedDevice(handle.device, resolveFrom);
    let range: AddressRange = Object.freeze({ ...handle.range });
    if (canAdoptRanges(device)) {
      range = device.adoptRange(range);
    } else if (device.kind !== 'host') {
      throw new UnshareableDeviceError(
        `the '${device.kind}' device in this thread cannot map pages of an address range reserved by ` +
          'another thread (it needs adoptRange(range); see @gpupool/workers README, "Devices")',
      );
    }
    return new SharedArena(handle, device, range, false, handle.device);
  }

  share(): ArenaHandle {
    return {
      arenaId: this.arenaId,
      words: this.buffer,
      device: this.deviceShare,
      range: { id: this.range.id, base: this.range.base, bytes: this.range.bytes },
      superblockBytes: this.superblockBytes,
    };
  }

  get arenaBytes(): number {
    return this.range.bytes;
  }

  // ---- slices ----

  /** Takes a free slice slot for the calling thread. */
  openSlot(threadId: number): OpenedSlot {
    const w = this.words;
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      const state = sliceIndex(this, slot, SL_STATE);
      if (Atomics.load(w, state) !== SLOT_FREE) continue;
      // Take the slot first (opening, by this thread: no one else touches it), then fill it in and
      // publish. A thread that ends before has the slot freed by its adopter.
      if (Atomics.compareExchange(w, state, SLOT_FREE, slotOpening(threadId)) !== SLOT_FREE) continue;
      this.stepHook?.('open:taken');
      const generation = Atomics.add(w, sliceIndex(this, slot, SL_GENERATION), 1) + 1;
      const ownerId = ownerIdOf(slot, generation, this.sliceSlots);
      for (const f of [
        SL_SUPERBLOCKS,
        SL_CLAIMS,
        SL_RETURNS,
        SL_REMOTE_FREES_MERGED,
        SL_REMOTE_FREES_REJECTED,
      ])
        Atomics.store(w, sliceIndex(this, slot, f), 0);
      // Before ACTIVE: no free for this owner is pushed before it, none for the last one after (CLOSING).
      Atomics.store(
        w,
        sliceIndex(this, slot, SL_QUEUE_BASE),
        Atomics.load(w, sliceIndex(this, slot, SL_QUEUE_TAIL)),
      );
      Atomics.store(w, sliceIndex(this, slot, SL_SUPERBLOCKS_PEAK), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_DEAD), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_MERGE_STATE), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_OP_STATE), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_THREAD_ID), threadId);
      Atomics.store(w, sliceIndex(this, slot, SL_OWNER_ID), ownerId);
      // ACTIVE last: producers that read ACTIVE then see the new ownerId.
      Atomics.store(w, state, SLOT_ACTIVE);
      return { slot, ownerId };
    }
    throw new SlicesExhaustedError(this.sliceSlots);
  }

  /** The ownerId now in `slot` and whether it is active. */
  slotOwner(slot: number): { ownerId: number; state: number } {
    return {
      ownerId: Atomics.load(this.words, sliceIndex(this, slot, SL_OWNER_ID)),
      state: Atomics.load(this.words, sliceIndex(this, slot, SL_STATE)),
    };
  }

  /** Adds to an owner-only counter of `slot` (Atomics, for visibility to statistics readers). */
  count(slot: number, field: number, delta = 1): void {
    Atomics.add(this.words, sliceIndex(this, slot, field), delta);
  }

  /**
   * Closes a slice from its own thread (its pool was destroyed): the slot is freed if the slice holds
   * nothing; else (exported runs, queued frees) the creator adopts what is left.
   */
  closeSlot(slot: number, ownerId: number): void {
    this.tryFreeSlot(slot, ownerId, SLOT_ACTIVE);
  }

  /**
   * Frees `slot` (owner `ownerId`, now in state `from`) if the slice holds no superblock, no free is
   * queued for it and no producer is pushing one (a producer record naming `ownerId`); else leaves
   * it ORPHANED for the creator to adopt. See SLOT_CLOSING for why the order makes this safe.
   */
  private tryFreeSlot(slot: number, ownerId: number, from: number): boolean {
    const w = this.words;
    const stateAt = sliceIndex(this, slot, SL_STATE);
    // Before CLOSING, which makes producers drop their frees: only a slice that holds nothing (no
    // superblock can come back to it: its thread closes it, or is gone) has no live block to free.
    if (this.ownedSuperblocks(ownerId) !== 0 || !this.queueEmpty(slot)) {
      Atomics.compareExchange(w, stateAt, from, SLOT_ORPHANED);
      return false;
    }
    if (Atomics.compareExchange(w, stateAt, from, SLOT_CLOSING) !== from) return false;
    this.stepHook?.('close:closing');
    let busy = false;
    for (let r = 0; r < this.sliceSlots && !busy; r++) {
      busy =
        Atomics.load(w, producerIndex(this, r, PR_STATE)) !== 0 &&
        Atomics.load(w, producerIndex(this, r, PR_OWNER_ID)) === ownerId;
    }
    // After the records: a push that finished before this read left its entry on the queue.
    if (busy || !this.queueEmpty(slot)) {
      Atomics.store(w, stateAt, SLOT_ORPHANED);
      return false;
    }
    this.adoptedFrees.delete(ownerId);
    Atomics.store(w, stateAt, SLOT_FREE);
    return true;
  }

  // ---- superblocks ----

  /**
   * Claims `count` contiguous free superblocks for slot `slot` (owner `ownerId`), scanning from
   * `hint`. Returns the first index, or -1 if no such run is free. Lock-free: a lost race moves on
   * to the next candidate. On success the claim stays open in the slot's op log (OP_CLAIM) until
   * the caller maps the run and calls endOp(), or undoClaim() if the map fails: a thread that ends
   * before then has its claim undone by its adopter (no block came out of the run yet).
   */
  claimRun(count: number, ownerId: number, hint: number, slot: number): number {
    const w = this.words;
    const n = this.superblockCount;
    if (count > n) return -1;
    for (let i = 0; i < n; i++) {
      const first = (hint + i) % n;
      if (first + count > n) continue;
      let ok = true;
      for (let k = 0; k < count; k++) {
        if (Atomics.load(w, directoryIndex(first + k, SB_OWNER)) !== OWNER_FREE) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      // Logged after the check above: every superblock of [first, first + count) that this slice
      // owns from here on was taken by this claim (its other runs lie elsewhere).
      this.beginRunOp(slot, OP_CLAIM, first, count);
      let won = 0;
      while (
        won < count &&
        Atomics.compareExchange(w, directoryIndex(first + won, SB_OWNER), OWNER_FREE, ownerId) === OWNER_FREE
      )
        won++;
      if (won < count) {
        // Lost a race part-way: give back what this call took, untouched (never mapped).
        for (let k = 0; k < won; k++) Atomics.store(w, directoryIndex(first + k, SB_OWNER), OWNER_FREE);
        continue;
      }
      this.stepHook?.('claim:won');
      for (let k = 0; k < count; k++) Atomics.store(w, directoryIndex(first + k, SB_RUN_FIRST), first);
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_BLOCKS), 0);
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_SUM), 0);
      Atomics.store(w, directoryIndex(first, SB_MAP_STATE), MAP_UNMAPPED);
      Atomics.add(w, sliceIndex(this, slot, SL_SUPERBLOCKS), count);
      Atomics.add(w, sliceIndex(this, slot, SL_CLAIMS), 1);
      return first;
    }
    this.endOp(slot);
    return -1;
  }

  /** Owner: undoes the open claim of `slot` (its map failed): the run goes back, counters as before. */
  undoClaim(slot: number): void {
    this.finishOp(slot, Atomics.load(this.words, sliceIndex(this, slot, SL_OWNER_ID)), false);
  }

  /** Owner: the op logged for `slot` is complete. */
  endOp(slot: number): void {
    Atomics.store(this.words, sliceIndex(this, slot, SL_OP_STATE), 0);
  }

  /** Records that a claim found no free run (the other slices give back their empty superblocks); returns the count before. */
  noteClaimFailure(): number {
    return Atomics.add(this.words, HDR_CLAIM_FAILURES, 1);
  }

  /** Changes whenever some slice's claim failed (compare with an earlier value). */
  claimFailures(): number {
    return Atomics.load(this.words, HDR_CLAIM_FAILURES);
  }

  /** Maps a claimed run's pages through this thread's device. On failure the run stays claimed and unmapped. */
  mapRun(first: number, count: number): void {
    const at = directoryIndex(first, SB_MAP_STATE);
    Atomics.store(this.words, at, MAP_MAPPING);
    try {
      this.device.map(this.range, first * this.superblockBytes, count * this.superblockBytes);
    } catch (error) {
      Atomics.store(this.words, at, MAP_UNMAPPED);
      throw error;
    }
    Atomics.store(this.words, at, MAP_MAPPED);
  }

  /**
   * Owner: gives its run [first, first + count) back to the arena (unmapped, then freed) and counts
   * it in the slice's books, as one op logged in `slot`'s op log (OP_RETURN): the adopter of a
   * thread that ends midway completes it. A refused unmap leaves the run owned and mapped.
   */
  returnOwnRun(slot: number, first: number, count: number): void {
    const w = this.words;
    this.beginRunOp(slot, OP_RETURN, first, count);
    try {
      this.returnRun(first, count);
    } catch (error) {
      this.endOp(slot);
      throw error;
    }
    this.stepHook?.('return:freed');
    Atomics.sub(w, sliceIndex(this, slot, SL_SUPERBLOCKS), count);
    Atomics.add(w, sliceIndex(this, slot, SL_RETURNS), 1);
    this.endOp(slot);
  }

  /** Unmaps (if mapped) and frees the run [first, first + count), whose owner is not changing it. */
  returnRun(first: number, count: number): void {
    this.unmapRun(first, count);
    this.freeSuperblocks(first, count, this.ownerOf(first));
  }

  /**
   * Unmaps the run [first, first + count) as its map state says (the run's owner, or its adopter,
   * calls this). A refused unmap of a mapped run throws and leaves it mapped.
   */
  private unmapRun(first: number, count: number): void {
    const w = this.words;
    const at = directoryIndex(first, SB_MAP_STATE);
    const state = Atomics.load(w, at);
    if (state === MAP_UNMAPPED) return;
    if (state === MAP_MAPPED) {
      Atomics.store(w, at, MAP_UNMAPPING);
      try {
        this.device.unmap(this.range, first * this.superblockBytes, count * this.superblockBytes);
      } catch (error) {
        // Refused: the run stays owned and mapped (a later call tries again).
        Atomics.store(w, at, MAP_MAPPED);
        throw error;
      }
    } else {
      // MAP_MAPPING or MAP_UNMAPPING: a thread died inside (or just after) map() or unmap(): the
      // call either did the whole run or nothing.
      try {
        this.device.unmap(this.range, first * this.superblockBytes, count * this.superblockBytes);
      } catch (error) {
        // By code: a CudaDevice opened in a worker is CommonJS, and its errors another copy of the class.
        if (!isDeviceError(error)) throw error;
      }
    }
    Atomics.store(w, at, MAP_UNMAPPED);
  }

  /**
   * Frees every superblock of [first, first + count) that `ownerId` still owns (all unmapped by
   * now): run words first, the owner word last, so a claimer that reads FREE sees the rest.
   * Returns how many it freed.
   */
  private freeSuperblocks(first: number, count: number, ownerId: number): number {
    const w = this.words;
    for (let k = 0; k < count; k++)
      if (this.ownerOf(first + k) === ownerId) Atomics.store(w, directoryIndex(first + k, SB_RUN_FIRST), -1);
    this.stepHook?.('return:detached');
    let freed = 0;
    for (let k = 0; k < count; k++) {
      // FREE last, after the unmap: the next claimer maps pages that are certainly unmapped.
      if (Atomics.compareExchange(w, directoryIndex(first + k, SB_OWNER), ownerId, OWNER_FREE) === ownerId)
        freed++;
    }
    return freed;
  }

  runFirstOf(superblock: number): number {
    return Atomics.load(this.words, directoryIndex(superblock, SB_RUN_FIRST));
  }

  ownerOf(superblock: number): number {
    return Atomics.load(this.words, directoryIndex(superblock, SB_OWNER));
  }

  /**
   * Counts a block exported (delta 1) or no longer exported (delta -1) in the run starting at
   * `first`, with its key in the run's checksum (SB_EXPORTED_SUM). Unlogged: the merge of a remote
   * free calls it under its own log (SL_MERGE_STATE), the adopter in its own thread.
   */
  addExported(first: number, delta: 1 | -1, offsetBytes: number, blockId: number): void {
    const key = exportKey(offsetBytes / GRANULE_BYTES, blockId);
    // Sum first, count second: the adopter loads the count, then the sum, so a count it reads
    // after this change comes with this change's sum.
    Atomics.add(this.words, directoryIndex(first, SB_EXPORTED_SUM), delta === 1 ? key : -key | 0);
    Atomics.add(this.words, directoryIndex(first, SB_EXPORTED_BLOCKS), delta);
  }

  /**
   * Owner: counts a block exported by toDescriptor (OP_EXPORT) or released in its own thread after
   * it was (OP_UNEXPORT), as addExported, logged in `slot`'s op log: the adopter of a thread that
   * ends midway undoes an export (its descriptor was never returned) and completes an unexport.
   */
  changeExported(
    slot: number,
    op: typeof OP_EXPORT | typeof OP_UNEXPORT,
    first: number,
    offsetBytes: number,
    blockId: number,
  ): void {
    const w = this.words;
    const at = (f: number) => sliceIndex(this, slot, f);
    const key = exportKey(offsetBytes / GRANULE_BYTES, blockId);
    const sumAt = directoryIndex(first, SB_EXPORTED_SUM);
    const countAt = directoryIndex(first, SB_EXPORTED_BLOCKS);
    w[at(SL_OP_FIRST)] = first;
    w[at(SL_OP_KEY)] = key;
    w[at(SL_OP_SUM)] = Atomics.load(w, sumAt);
    w[at(SL_OP_EXPORTED)] = Atomics.load(w, countAt);
    Atomics.store(w, at(SL_OP_STATE), op);
    Atomics.add(w, sumAt, op === OP_EXPORT ? key : -key | 0);
    this.stepHook?.(op === OP_EXPORT ? 'export:sum' : 'unexport:sum');
    Atomics.add(w, countAt, op === OP_EXPORT ? 1 : -1);
    this.endOp(slot);
  }

  /** Opens a claim or return of [first, first + count) in `slot`'s op log, with the counters it changes. */
  private beginRunOp(
    slot: number,
    op: typeof OP_CLAIM | typeof OP_RETURN,
    first: number,
    count: number,
  ): void {
    const w = this.words;
    const at = (f: number) => sliceIndex(this, slot, f);
    w[at(SL_OP_FIRST)] = first;
    w[at(SL_OP_COUNT)] = count;
    w[at(SL_OP_SUPERBLOCKS)] = Atomics.load(w, at(SL_SUPERBLOCKS));
    w[at(SL_OP_TALLY)] = Atomics.load(w, at(op === OP_CLAIM ? SL_CLAIMS : SL_RETURNS));
    w[at(SL_OP_PEAK)] = Atomics.load(w, at(SL_SUPERBLOCKS_PEAK));
    // Published last: the adopter that reads the op sees the fields above.
    Atomics.store(w, at(SL_OP_STATE), op);
  }

  /**
   * Finishes the op `slot`'s owner logged and did not complete (its thread ended, or, for a claim,
   * its map failed): a claim is undone (its superblocks go back, the counters get their logged
   * values, the peak too), a return completed; an export undone, an unexport completed (only the owner changed
   * the run's count and checksum while it lived, so the logged values are exact). Returns the
   * superblocks given back, or -1 when the device refused to unmap the run (nothing changed).
   */
  private finishOp(slot: number, ownerId: number, dead: boolean): number {
    const w = this.words;
    const at = (f: number) => sliceIndex(this, slot, f);
    const op = Atomics.load(w, at(SL_OP_STATE));
    if (op === 0) return 0;
    const first = w[at(SL_OP_FIRST)]!;
    let freed = 0;
    if (op === OP_CLAIM || op === OP_RETURN) {
      const count = w[at(SL_OP_COUNT)]!;
      // The map state is this run's while the slice owns its first superblock (FREE ones are unmapped).
      if (this.ownerOf(first) === ownerId) {
        try {
          this.unmapRun(first, count);
        } catch (error) {
          // Refused: the op stays logged and the run owned and mapped; the next pass tries again.
          if (!isDeviceError(error)) throw error;
          return -1;
        }
      }
      freed = this.freeSuperblocks(first, count, ownerId);
      const before = w[at(SL_OP_SUPERBLOCKS)]!;
      if (op === OP_CLAIM) {
        Atomics.store(w, at(SL_SUPERBLOCKS), before);
        Atomics.store(w, at(SL_CLAIMS), w[at(SL_OP_TALLY)]!);
        Atomics.store(w, at(SL_SUPERBLOCKS_PEAK), w[at(SL_OP_PEAK)]!);
      } else {
        Atomics.store(w, at(SL_SUPERBLOCKS), before - count);
        Atomics.store(w, at(SL_RETURNS), w[at(SL_OP_TALLY)]! + 1);
      }
      if (dead && freed > 0) Atomics.add(w, HDR_RECLAIMED_SUPERBLOCKS, freed);
    } else if (op === OP_EXPORT || op === OP_UNEXPORT) {
      const back = op === OP_EXPORT ? 0 : 1;
      const key = w[at(SL_OP_KEY)]!;
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_SUM), (w[at(SL_OP_SUM)]! - back * key) | 0);
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_BLOCKS), w[at(SL_OP_EXPORTED)]! - back);
    }
    Atomics.store(w, at(SL_OP_STATE), 0);
    return freed;
  }

  exportedOf(first: number): number {
    return Atomics.load(this.words, directoryIndex(first, SB_EXPORTED_BLOCKS));
  }

  ownedSuperblocks(ownerId: number): number {
    let n = 0;
    for (let b = 0; b < this.superblockCount; b++) if (this.ownerOf(b) === ownerId) n++;
    return n;
  }

  /** Length of the run starting at `first` owned by `ownerId`. */
  runLength(first: number, ownerId: number): number {
    let n = 0;
    while (
      first + n < this.superblockCount &&
      this.ownerOf(first + n) === ownerId &&
      this.runFirstOf(first + n) === first
    )
      n++;
    return n;
  }

  // ---- remote-free queues ----

  /**
   * A producer record for thread `threadId` (kept for the thread's life; freed by its adopter), or
   * -1 if every record is taken: that thread then hands its frees to the creating thread.
   */
  takeProducerRecord(threadId: number): number {
    if (this.creator) return CREATOR_RECORD;
    for (let r = CREATOR_RECORD + 1; r < this.sliceSlots; r++) {
      const at = producerIndex(this, r, PR_THREAD);
      if (
        Atomics.load(this.words, at) === 0 &&
        Atomics.compareExchange(this.words, at, 0, threadId + 1) === 0
      )
        return r;
    }
    return -1;
  }

  /**
   * Pushes a free of block (`offsetBytes`, `blockId`) of `ownerId` onto that slice's queue, through
   * producer record `record` (this thread's, see PR_STATE): PUSHED; FULL (the caller keeps the free
   * and retries later); or DROPPED, counted in droppedRemoteFrees, when `ownerId` is not the
   * slot's owner any more or its slice is being freed (it holds nothing: the free is stale).
   * Lock-free, never waits. A thread that ends at any step leaves its record to its adopter.
   */
  pushRemoteFree(record: number, ownerId: number, offsetBytes: number, blockId: number): PushResult {
    const w = this.words;
    const slot = slotOfOwnerId(ownerId, this.sliceSlots);
    const r = (f: number) => producerIndex(this, record, f);
    const tailAt = sliceIndex(this, slot, SL_QUEUE_TAIL);
    w[r(PR_OWNER_ID)] = ownerId;
    w[r(PR_OFFSET_GRANULES)] = offsetBytes / GRANULE_BYTES;
    w[r(PR_BLOCK_ID)] = blockId | 0;
    w[r(PR_POS)] = Atomics.load(w, tailAt);
    // The record first, then the owner check (see SLOT_CLOSING): state, then ownerId, as openSlot
    // stores the ownerId before ACTIVE.
    Atomics.store(w, r(PR_STATE), PUSH_PENDING);
    const state = Atomics.load(w, sliceIndex(this, slot, SL_STATE));
    if (
      (state !== SLOT_ACTIVE && state !== SLOT_ORPHANED) ||
      Atomics.load(w, sliceIndex(this, slot, SL_OWNER_ID)) !== ownerId
    ) {
      Atomics.store(w, r(PR_STATE), 0);
      Atomics.add(w, HDR_DROPPED_REMOTE_FREES, 1);
      return PUSH_DROPPED;
    }
    this.stepHook?.('push:checked');
    const mask = this.queueCells - 1;
    for (;;) {
      const pos = Atomics.load(w, tailAt);
      const dif = (Atomics.load(w, cellIndex(this, slot, pos & mask, CELL_SEQ)) - pos) | 0;
      if (dif === 0) {
        // The position tried for, before trying: the adopter of a thread that ends after winning
        // it, before saying so, finds it here.
        Atomics.store(w, r(PR_POS), pos);
        this.stepHook?.('push:trying');
        if (Atomics.compareExchange(w, tailAt, pos, (pos + 1) | 0) !== pos) continue;
        // Counted: remoteFreesPushed is the tail less SL_QUEUE_BASE (no step of its own to end before).
        this.stepHook?.('push:claimed');
        Atomics.store(w, r(PR_STATE), PUSH_WON);
        this.stepHook?.('push:won');
        this.publishCell(slot, pos, ownerId, offsetBytes / GRANULE_BYTES, blockId);
        this.stepHook?.('push:published');
        Atomics.store(w, r(PR_STATE), 0);
        return PUSH_PUSHED;
      }
      if (dif < 0) {
        Atomics.store(w, r(PR_STATE), 0);
        return PUSH_FULL;
      }
    }
  }

  /** Writes the entry at queue position `pos` of `slot` (won by its producer) and publishes it. */
  private publishCell(
    slot: number,
    pos: number,
    ownerId: number,
    offsetGranules: number,
    blockId: number,
  ): void {
    const w = this.words;
    const cell = pos & (this.queueCells - 1);
    w[cellIndex(this, slot, cell, CELL_OFFSET_GRANULES)] = offsetGranules;
    w[cellIndex(this, slot, cell, CELL_BLOCK_ID)] = blockId | 0;
    w[cellIndex(this, slot, cell, CELL_OWNER_ID)] = ownerId;
    // Publishes the payload written above to the consumer.
    Atomics.store(w, cellIndex(this, slot, cell, CELL_SEQ), (pos + 1) | 0);
  }

  /**
   * Adopter: resolves the producer records of threads that ended (PR_THREAD < 0). A push that won
   * its position is published (if it was not); one that may or may not have won it
   * (PUSH_PENDING) is delivered anew, and if its position is taken but unpublished and every record
   * naming it is of an ended thread (one of them won it, which one is unknowable), a tombstone fills
   * it and all their frees are delivered anew. A position a live producer may hold is left for a
   * later call. Each free is delivered once: through `redeliver`.
   */
  private resolveDeadProducers(): void {
    const w = this.words;
    const mask = this.queueCells - 1;
    for (let r = 0; r < this.sliceSlots; r++) {
      const at = (f: number) => producerIndex(this, r, f);
      if (Atomics.load(w, at(PR_THREAD)) >= 0) continue;
      const state = Atomics.load(w, at(PR_STATE));
      const ownerId = w[at(PR_OWNER_ID)]!;
      const slot = slotOfOwnerId(ownerId, this.sliceSlots);
      const pos = Atomics.load(w, at(PR_POS));
      const seqAt = cellIndex(this, slot, pos & mask, CELL_SEQ);
      const unpublished = Atomics.load(w, seqAt) === pos;
      if (state === PUSH_WON) {
        if (unpublished)
          this.publishCell(slot, pos, ownerId, w[at(PR_OFFSET_GRANULES)]!, w[at(PR_BLOCK_ID)]!);
      } else if (state === PUSH_PENDING) {
        const taken = ((Atomics.load(w, sliceIndex(this, slot, SL_QUEUE_TAIL)) - pos) | 0) > 0;
        if (taken && unpublished) {
          // Taken and not yet published: by this producer, or by another whose record names it.
          this.stepHook?.('resolve:pending');
          const others: number[] = [];
          let wait = false;
          let wonElsewhere = false;
          for (let q = 0; q < this.sliceSlots; q++) {
            const qs = Atomics.load(w, producerIndex(this, q, PR_STATE));
            if (q === r || qs === 0) continue;
            if (slotOfOwnerId(w[producerIndex(this, q, PR_OWNER_ID)]!, this.sliceSlots) !== slot) continue;
            if (Atomics.load(w, producerIndex(this, q, PR_POS)) !== pos) continue;
            if (qs !== PUSH_PENDING) wonElsewhere = true;
            else if (Atomics.load(w, producerIndex(this, q, PR_THREAD)) > 0) wait = true;
            else others.push(q);
          }
          if (!wonElsewhere) {
            if (wait) continue; // a live producer may hold it: it publishes, or moves on
            // Read again after the records: a live winner that published (and moved on) between
            // the read above and the scan named no position there. One that had not published by
            // now named this position all through the scan (its PR_POS before its compareExchange,
            // which came before the tail read above; PR_STATE 0 only after publishing).
            if (Atomics.load(w, seqAt) === pos) {
              // Every candidate ended before saying whether it won: fill the position with a
              // tombstone and deliver all their frees anew (none was published).
              w[cellIndex(this, slot, pos & mask, CELL_OWNER_ID)] = TOMBSTONE_OWNER_ID;
              // Not a free: remoteFreesPushed (the tail less this base) does not count it.
              Atomics.add(w, sliceIndex(this, slot, SL_QUEUE_BASE), 1);
              Atomics.store(w, seqAt, (pos + 1) | 0);
              for (const q of others) this.redeliverAndFree(q);
            }
          }
        }
        this.redeliverAndFree(r);
        continue;
      }
      this.freeProducerRecord(r);
    }
  }

  /** Adopter: delivers the free in ended producer record `r` (not pushed) anew, then frees the record. */
  private redeliverAndFree(r: number): void {
    const w = this.words;
    const at = (f: number) => producerIndex(this, r, f);
    const ownerId = w[at(PR_OWNER_ID)]!;
    const offsetBytes = w[at(PR_OFFSET_GRANULES)]! * GRANULE_BYTES;
    const blockId = w[at(PR_BLOCK_ID)]!;
    // Through this thread's own record: the owner check and the queue as for any free.
    if (this.redeliver !== null) this.redeliver(ownerId, offsetBytes, blockId);
    else if (this.pushRemoteFree(CREATOR_RECORD, ownerId, offsetBytes, blockId) === PUSH_FULL)
      this.undelivered.push(ownerId, offsetBytes, blockId);
    this.freeProducerRecord(r);
  }

  private freeProducerRecord(r: number): void {
    Atomics.store(this.words, producerIndex(this, r, PR_STATE), 0);
    Atomics.store(this.words, producerIndex(this, r, PR_THREAD), 0);
  }

  queueEmpty(slot: number): boolean {
    const w = this.words;
    const head = Atomics.load(w, sliceIndex(this, slot, SL_QUEUE_HEAD));
    return Atomics.load(w, sliceIndex(this, slot, SL_QUEUE_TAIL)) === head;
  }

  /**
   * Takes up to `limit` entries off `slot`'s queue (single consumer: the owner, or the creator for
   * an orphaned slot). Stops at a cell whose producer has not finished writing. Each entry is
   * visited before it leaves the queue (see SL_MERGE_STATE: a thread that ends in between leaves
   * it for the adopter), and leaves it even if `visit` throws.
   */
  drainQueue(
    slot: number,
    limit: number,
    visit: (offsetBytes: number, blockId: number, ownerId: number, pos: number) => void,
  ): number {
    const w = this.words;
    const headAt = sliceIndex(this, slot, SL_QUEUE_HEAD);
    const mask = this.queueCells - 1;
    let head = Atomics.load(w, headAt);
    let n = 0;
    while (n < limit) {
      const cell = head & mask;
      if (Atomics.load(w, cellIndex(this, slot, cell, CELL_SEQ)) !== ((head + 1) | 0)) break;
      const offsetBytes = w[cellIndex(this, slot, cell, CELL_OFFSET_GRANULES)]! * GRANULE_BYTES;
      const blockId = w[cellIndex(this, slot, cell, CELL_BLOCK_ID)]!;
      const ownerId = w[cellIndex(this, slot, cell, CELL_OWNER_ID)]!;
      n++;
      try {
        visit(offsetBytes, blockId, ownerId, head);
      } finally {
        this.popQueue(slot, head);
      }
      head = (head + 1) | 0;
    }
    return n;
  }

  /** Takes the entry at position `pos` (the head) off `slot`'s queue. */
  private popQueue(slot: number, pos: number): void {
    const w = this.words;
    // Hands the cell back to producers one lap later.
    Atomics.store(
      w,
      cellIndex(this, slot, pos & (this.queueCells - 1), CELL_SEQ),
      (pos + this.queueCells) | 0,
    );
    Atomics.store(w, sliceIndex(this, slot, SL_QUEUE_HEAD), (pos + 1) | 0);
  }

  /**
   * Owner only, before it applies (or rejects) the remote free at queue position `pos`: records
   * what that changes as it is now (SL_MERGE_STATE), for the adopter if this thread ends midway.
   */
  logMerge(slot: number, pos: number, verdict: number, first: number, key: number): void {
    const w = this.words;
    const at = (f: number) => sliceIndex(this, slot, f);
    Atomics.store(w, at(SL_MERGE_STATE), 0);
    w[at(SL_MERGE_POS)] = pos;
    if (verdict === MERGE_APPLY) {
      w[at(SL_MERGE_FIRST)] = first;
      w[at(SL_MERGE_KEY)] = key;
      w[at(SL_MERGE_SUM)] = Atomics.load(w, directoryIndex(first, SB_EXPORTED_SUM));
      w[at(SL_MERGE_COUNT)] = Atomics.load(w, directoryIndex(first, SB_EXPORTED_BLOCKS));
      w[at(SL_MERGE_TALLY)] = Atomics.load(w, at(SL_REMOTE_FREES_MERGED));
    } else {
      w[at(SL_MERGE_TALLY)] = Atomics.load(w, at(SL_REMOTE_FREES_REJECTED));
    }
    // Published last: the adopter that reads a verdict sees the fields above.
    Atomics.store(w, at(SL_MERGE_STATE), verdict);
  }

  /** Owner only: no merge in progress (after its last entry left the queue). */
  clearMergeLog(slot: number): void {
    Atomics.store(this.words, sliceIndex(this, slot, SL_MERGE_STATE), 0);
  }

  /**
   * Adopter: finishes the remote free the owner was merging when its thread ended. Only the owner
   * changed these words while it lived, so each one still equal to its logged value is a step not
   * taken yet: the adopter takes it, then takes the entry off the queue if it is still on it.
   */
  private finishMerge(slot: number): void {
    const w = this.words;
    const at = (f: number) => sliceIndex(this, slot, f);
    const verdict = Atomics.load(w, at(SL_MERGE_STATE));
    if (verdict === 0) return;
    const pos = w[at(SL_MERGE_POS)]!;
    if (Atomics.load(w, at(SL_QUEUE_HEAD)) === pos) {
      if (verdict === MERGE_APPLY) {
        const first = w[at(SL_MERGE_FIRST)]!;
        const sumAt = directoryIndex(first, SB_EXPORTED_SUM);
        const countAt = directoryIndex(first, SB_EXPORTED_BLOCKS);
        if (Atomics.load(w, sumAt) === w[at(SL_MERGE_SUM)]) Atomics.sub(w, sumAt, w[at(SL_MERGE_KEY)]!);
        if (Atomics.load(w, countAt) === w[at(SL_MERGE_COUNT)]) Atomics.sub(w, countAt, 1);
        if (Atomics.load(w, at(SL_REMOTE_FREES_MERGED)) === w[at(SL_MERGE_TALLY)])
          Atomics.add(w, at(SL_REMOTE_FREES_MERGED), 1);
      } else if (verdict === MERGE_REJECT) {
        if (Atomics.load(w, at(SL_REMOTE_FREES_REJECTED)) === w[at(SL_MERGE_TALLY)])
          Atomics.add(w, at(SL_REMOTE_FREES_REJECTED), 1);
      }
      this.popQueue(slot, pos);
    }
    Atomics.store(w, at(SL_MERGE_STATE), 0);
  }

  // ---- adoption of dead slices (creator only) ----

  /**
   * Adopts every slice and producer record of thread `threadId` (which has exited): finishes what
   * it was in the middle of, and returns what no other thread holds a block of. Returns the
   * superblocks given back now.
   */
  adoptDeadThread(threadId: number): number {
    this.requireCreator('adoptDeadThread');
    const w = this.words;
    for (let r = 0; r < this.sliceSlots; r++) {
      const at = producerIndex(this, r, PR_THREAD);
      if (Atomics.load(w, at) === threadId + 1) Atomics.store(w, at, -(threadId + 1));
    }
    const slots: number[] = [];
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      const stateAt = sliceIndex(this, slot, SL_STATE);
      // It ended inside openSlot: the slot holds nothing of it yet (SL_THREAD_ID may not be set).
      if (Atomics.compareExchange(w, stateAt, slotOpening(threadId), SLOT_FREE) === slotOpening(threadId))
        continue;
      if (Atomics.load(w, sliceIndex(this, slot, SL_THREAD_ID)) !== threadId) continue;
      // CLOSING: it ended inside closeSlot.
      if (
        Atomics.compareExchange(w, stateAt, SLOT_ACTIVE, SLOT_ORPHANED) !== SLOT_ACTIVE &&
        Atomics.compareExchange(w, stateAt, SLOT_CLOSING, SLOT_ORPHANED) !== SLOT_CLOSING
      )
        continue;
      Atomics.add(w, HDR_RECLAIMED_SLICES, 1);
      Atomics.store(w, sliceIndex(this, slot, SL_DEAD), 1);
      slots.push(slot);
    }
    // Its pushes first: what it was pushing may be for its own slices' queues.
    this.resolveDeadProducers();
    let returned = 0;
    for (const slot of slots) returned += this.adoptSlot(slot);
    return returned;
  }

  /**
   * Makes progress on every orphaned slice (merges queued frees, returns runs no longer exported)
   * and on the records of ended producers. Returns the superblocks given back.
   */
  adoptOrphans(): number {
    this.requireCreator('adoptOrphans');
    if (this.undelivered.length > 0) {
      const frees = this.undelivered.splice(0);
      for (let i = 0; i < frees.length; i += 3) {
        if (this.pushRemoteFree(CREATOR_RECORD, frees[i]!, frees[i + 1]!, frees[i + 2]!) === PUSH_FULL)
          this.undelivered.push(frees[i]!, frees[i + 1]!, frees[i + 2]!);
      }
    }
    this.resolveDeadProducers();
    let returned = 0;
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      if (Atomics.load(this.words, sliceIndex(this, slot, SL_STATE)) === SLOT_ORPHANED)
        returned += this.adoptSlot(slot);
    }
    return returned;
  }

  /** Orphaned slices still holding superblocks (exported blocks not yet freed). */
  orphanCount(): number {
    let n = 0;
    for (let slot = 0; slot < this.sliceSlots; slot++)
      if (Atomics.load(this.words, sliceIndex(this, slot, SL_STATE)) === SLOT_ORPHANED) n++;
    return n;
  }

  /**
   * Returns every owned run and frees every slot, exported or not (the worker pool is going away).
   * A run whose unmap the device refuses stays owned, the rest go back, and the first refusal is
   * thrown, with the slots left as they are: calling this again gives back what is left.
   */
  forceReturnAll(): void {
    this.requireCreator('forceReturnAll');
    const w = this.words;
    let refused: unknown;
    for (let b = 0; b < this.superblockCount; b++) {
      const owner = this.ownerOf(b);
      if (owner === OWNER_FREE || this.runFirstOf(b) !== b) continue;
      const count = this.runLength(b, owner);
      try {
        this.returnRun(b, count);
      } catch (error) {
        // A refused unmap: the run stays owned and mapped; the others still go back.
        if (!isDeviceError(error)) throw error;
        refused ??= error;
        continue;
      }
      Atomics.sub(w, sliceIndex(this, slotOfOwnerId(owner, this.sliceSlots), SL_SUPERBLOCKS), count);
    }
    // Before the slots are freed: their runs still owned are what a later call gives back.
    if (refused !== undefined) throw refused;
    // Owned without a run (none after adoption; kept for a thread still inside a claim or return).
    for (let b = 0; b < this.superblockCount; b++) {
      const owner = this.ownerOf(b);
      if (owner === OWNER_FREE) continue;
      if (this.freeSuperblocks(b, 1, owner) === 1)
        Atomics.sub(w, sliceIndex(this, slotOfOwnerId(owner, this.sliceSlots), SL_SUPERBLOCKS), 1);
    }
    for (let slot = 0; slot < this.sliceSlots; slot++)
      Atomics.store(w, sliceIndex(this, slot, SL_STATE), SLOT_FREE);
    for (let r = CREATOR_RECORD + 1; r < this.sliceSlots; r++) this.freeProducerRecord(r);
    this.adoptedFrees.clear();
    this.undelivered.length = 0;
  }

  /**
   * Finishes what the orphaned slot's owner was in the middle of (its op and merge logs), merges
   * its queued frees into its runs' exported counts and returns the runs that no other thread holds
   * a block of; frees the slot once it holds nothing. The owner's table of exported blocks died
   * with it: a free is applied at most once per (offset, id), and a run goes back only when its
   * count and checksum are both 0. A free naming no exported block (a stale descriptor) then leaves
   * the checksum off, and that run stays owned until destroy(): kept too long, never handed out
   * while a block in it is live (README, "Limits").
   */
  private adoptSlot(slot: number): number {
    const w = this.words;
    const ownerId = Atomics.load(w, sliceIndex(this, slot, SL_OWNER_ID));
    const dead = Atomics.load(w, sliceIndex(this, slot, SL_DEAD)) === 1;
    let applied = this.adoptedFrees.get(ownerId);
    let returned = this.finishOp(slot, ownerId, dead);
    // A refused unmap (this runs on a timer and in a worker's exit handler, where a throw would end
    // the process): the slot stays orphaned, and the next pass starts here again.
    if (returned < 0) return 0;
    let merged = 0;
    let rejected = 0;
    this.finishMerge(slot);
    this.drainQueue(slot, this.queueCells, (offsetBytes, blockId, entryOwner) => {
      if (entryOwner === TOMBSTONE_OWNER_ID) return;
      const first = this.runFirstOf(Math.floor(offsetBytes / this.superblockBytes));
      const key = `${offsetBytes}:${blockId}`;
      // Rejected, as the owner would: a free for a run this owner no longer holds, or one applied
      // already. (Entries name the slot's current owner: see SLOT_CLOSING.)
      if (entryOwner !== ownerId || first < 0 || this.ownerOf(first) !== ownerId || applied?.has(key)) {
        rejected++;
        return;
      }
      if (applied === undefined) {
        applied = new Set();
        this.adoptedFrees.set(ownerId, applied);
      }
      applied.add(key);
      this.addExported(first, -1, offsetBytes, blockId);
      merged++;
    });
    if (merged > 0) Atomics.add(w, sliceIndex(this, slot, SL_REMOTE_FREES_MERGED), merged);
    if (rejected > 0) Atomics.add(w, sliceIndex(this, slot, SL_REMOTE_FREES_REJECTED), rejected);
    if (dead && merged > 0) Atomics.add(w, HDR_RECLAIMED_REMOTE_FREES, merged);
    for (let b = 0; b < this.superblockCount; b++) {
      if (this.ownerOf(b) !== ownerId || this.runFirstOf(b) !== b) continue;
      if (this.exportedOf(b) !== 0 || Atomics.load(w, directoryIndex(b, SB_EXPORTED_SUM)) !== 0) continue;
      const count = this.runLength(b, ownerId);
      try {
        this.returnRun(b, count);
      } catch (error) {
        // A refused unmap: the run stays owned and mapped; the next adoption tries again (this runs
        // on a timer and in a worker's exit handler, where a throw would end the process).
        if (isDeviceError(error)) continue;
        throw error;
      }
      Atomics.sub(w, sliceIndex(this, slot, SL_SUPERBLOCKS), count);
      returned += count;
      if (dead) Atomics.add(w, HDR_RECLAIMED_SUPERBLOCKS, count);
    }
    if (this.ownedSuperblocks(ownerId) === 0 && this.queueEmpty(slot))
      this.tryFreeSlot(slot, ownerId, SLOT_ORPHANED);
    return returned;
  }

  private requireCreator(call: string): void {
    if (!this.creator)
      throw new DeviceError(call, 'only the thread that created the arena adopts dead slices');
  }

  // ---- statistics ----

  sliceStats(slot: number): SliceStats {
    const r = (f: number) => Atomics.load(this.words, sliceIndex(this, slot, f));
    const state = r(SL_STATE);
    return {
      slot,
      ownerId: r(SL_OWNER_ID),
      threadId: r(SL_THREAD_ID),
      state:
        state === SLOT_ACTIVE
          ? 'active'
          : state === SLOT_ORPHANED || state === SLOT_CLOSING
            ? 'orphaned'
            : 'free',
      superblocks: r(SL_SUPERBLOCKS),
      superblocksPeak: r(SL_SUPERBLOCKS_PEAK),
      claims: r(SL_CLAIMS),
      returns: r(SL_RETURNS),
      remoteFreesPushed: (r(SL_QUEUE_TAIL) - r(SL_QUEUE_BASE)) | 0,
      remoteFreesMerged: r(SL_REMOTE_FREES_MERGED),
      remoteFreesRejected: r(SL_REMOTE_FREES_REJECTED),
    };
  }

  stats(): ArenaStats {
    const slices: SliceStats[] = [];
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      if (Atomics.load(this.words, sliceIndex(this, slot, SL_GENERATION)) === 0) continue;
      slices.push(this.sliceStats(slot));
    }
    const h = (f: number) => Atomics.load(this.words, f);
    const free = this.freeSuperblockCount();
    const total = { superblocks: 0, claims: 0, returns: 0, remoteFreesPushed: 0, remoteFreesMerged: 0 };
    for (const s of slices) {
      total.superblocks += s.state === 'free' ? 0 : s.superblocks;
      total.claims += s.claims;
      total.returns += s.returns;
      total.remoteFreesPushed += s.remoteFreesPushed;
      total.remoteFreesMerged += s.remoteFreesMerged;
    }
    return {
      arenaId: this.arenaId,
      arenaBytes: this.arenaBytes,
      superblockBytes: this.superblockBytes,
      superblockCount: this.superblockCount,
      freeSuperblocks: free,
      ownedSuperblocks: this.superblockCount - free,
      reclaimedSlices: h(HDR_RECLAIMED_SLICES),
      reclaimedSuperblocks: h(HDR_RECLAIMED_SUPERBLOCKS),
      reclaimedRemoteFrees: h(HDR_RECLAIMED_REMOTE_FREES),
      droppedRemoteFrees: h(HDR_DROPPED_REMOTE_FREES),
      total,
      slices,
    };
  }

  /**
   * Checks the directory against the slices' books; throws InvariantError on the first mismatch.
   * Every superblock is FREE (run words cleared) or owned by a slot that holds that ownerId, inside
   * one mapped run whose words agree; every slot's `superblocks` statistic is what the directory
   * says it owns. Run it when no thread is inside an arena call.
   * `adopted`: also, after `reclaim()`, every run an orphaned slice still holds has an exported
   * block out (count or checksum not 0), and an orphaned slice that holds nothing was freed.
   */
  checkDirectory(options: { adopted?: boolean } = {}): void {
    const w = this.words;
    const owned = new Map<number, number>();
    for (let b = 0; b < this.superblockCount; b++) {
      const owner = this.ownerOf(b);
      const first = this.runFirstOf(b);
      if (owner === OWNER_FREE) {
        if (first !== -1) throw new InvariantError(`free superblock ${b} names run ${first}`);
        if (Atomics.load(w, directoryIndex(b, SB_MAP_STATE)) !== MAP_UNMAPPED)
          throw new InvariantError(`free superblock ${b} is not marked unmapped`);
        continue;
      }
      owned.set(owner, (owned.get(owner) ?? 0) + 1);
      const slot = slotOfOwnerId(owner, this.sliceSlots);
      const { ownerId, state } = this.slotOwner(slot);
      if (ownerId !== owner || state === SLOT_FREE)
        throw new InvariantError(`superblock ${b} is owned by stale owner ${owner}`);
      if (first < 0 || first > b || this.ownerOf(first) !== owner || this.runFirstOf(first) !== first)
        throw new InvariantError(
          `superblock ${b} (owner ${owner}) names run ${first}, not a run of its owner`,
        );
      if (first === b && Atomics.load(w, directoryIndex(b, SB_MAP_STATE)) !== MAP_MAPPED)
        throw new InvariantError(`run ${b} (owner ${owner}) is owned but not mapped`);
    }
    for (let r = 0; options.adopted && r < this.sliceSlots; r++) {
      if (Atomics.load(w, producerIndex(this, r, PR_THREAD)) < 0)
        throw new InvariantError(`producer record ${r} of an ended thread was not resolved`);
    }
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      const { ownerId, state } = this.slotOwner(slot);
      if (state === SLOT_FREE) continue;
      if (options.adopted && state === SLOT_CLOSING)
        throw new InvariantError(`slice ${slot} (owner ${ownerId}) was left closing`);
      const books = Atomics.load(w, sliceIndex(this, slot, SL_SUPERBLOCKS));
      if (books !== (owned.get(ownerId) ?? 0))
        throw new InvariantError(
          `slice ${slot} (owner ${ownerId}) counts ${books} superblocks but owns ${owned.get(ownerId) ?? 0}`,
        );
      if (!options.adopted || state !== SLOT_ORPHANED) continue;
      if (Atomics.load(w, sliceIndex(this, slot, SL_OP_STATE)) !== 0)
        throw new InvariantError(
          `orphaned slice ${slot} (owner ${ownerId}) has an op its adopter did not finish`,
        );
      if (!owned.has(ownerId) && this.queueEmpty(slot))
        throw new InvariantError(`orphaned slice ${slot} (owner ${ownerId}) holds nothing but was not freed`);
      for (let b = 0; b < this.superblockCount; b++) {
        if (this.ownerOf(b) !== ownerId || this.runFirstOf(b) !== b) continue;
        if (this.exportedOf(b) === 0 && Atomics.load(w, directoryIndex(b, SB_EXPORTED_SUM)) === 0)
          throw new InvariantError(`orphaned slice ${slot} keeps run ${b} with no exported block`);
      }
    }
  }

  /** Superblocks no slice owns (counted in the directory). */
  freeSuperblockCount(): number {
    let free = 0;
    for (let b = 0; b < this.superblockCount; b++) if (this.ownerOf(b) === OWNER_FREE) free++;
    return free;
  }
}
