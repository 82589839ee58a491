/**
 * SharedArena: one device address range split into superblocks, with its directory, slice table
 * and remote-free queues in one SharedArrayBuffer (see layout.ts). The creating thread reserves
 * the range; every thread of the worker pool attaches to the same arena and claims superblocks
 * with compare-and-swap, never a lock and never a wait.
 *
 * Invariants: a superblock has at most one owner; it is mapped exactly while it is owned (between
 * the owner's map and its unmap); slice slots are reused only after every superblock of their last
 * owner is back, with a new generation so stale descriptors and queue entries are recognised.
 * Adoption of dead slices (`adoptDeadThread`, `adoptOrphans`) runs only in the creating thread,
 * whose device reserved the range and may unmap any page of it.
 */
import { randomInt } from 'node:crypto';
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
  HDR_FREE_SUPERBLOCKS,
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
  OWNER_FREE,
  ownerIdOf,
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
  SL_OWNER_ID,
  SL_QUEUE_HEAD,
  SL_QUEUE_TAIL,
  SL_REMOTE_FREES_MERGED,
  SL_REMOTE_FREES_PUSHED,
  SL_REMOTE_FREES_REJECTED,
  SL_RETURNS,
  SL_STATE,
  SL_SUPERBLOCKS,
  SL_SUPERBLOCKS_PEAK,
  SL_THREAD_ID,
  SLOT_ACTIVE,
  SLOT_FREE,
  SLOT_OPENING,
  SLOT_ORPHANED,
  sliceIndex,
  slotOfOwnerId,
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
    words[HDR_FREE_SUPERBLOCKS] = superblockCount;
    for (let s = 0; s < sliceSlots; s++) {
      for (let c = 0; c < queueCells; c++) words[cellIndex(shape, s, c, CELL_SEQ)] = c;
    }
    for (let b = 0; b < superblockCount; b++) words[directoryIndex(b, SB_RUN_FIRST)] = -1;
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
      // Take the slot first (OPENING: no one else touches it), then fill it in and publish.
      if (Atomics.compareExchange(w, state, SLOT_FREE, SLOT_OPENING) !== SLOT_FREE) continue;
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
      Atomics.store(w, sliceIndex(this, slot, SL_REMOTE_FREES_PUSHED), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_SUPERBLOCKS_PEAK), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_DEAD), 0);
      Atomics.store(w, sliceIndex(this, slot, SL_MERGE_STATE), 0);
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

  /** Marks a slice closed by its own thread: what it still holds (exported runs) is adopted by the creator. */
  closeSlot(slot: number, ownerId: number): void {
    if (this.ownedSuperblocks(ownerId) === 0 && this.queueEmpty(slot)) {
      Atomics.store(this.words, sliceIndex(this, slot, SL_STATE), SLOT_FREE);
    } else {
      Atomics.store(this.words, sliceIndex(this, slot, SL_STATE), SLOT_ORPHANED);
    }
  }

  // ---- superblocks ----

  /**
   * Claims `count` contiguous free superblocks for `ownerId`, scanning from `hint`. Returns the first
   * index, or -1 if no such run is free. Lock-free: a lost race moves on to the next candidate.
   */
  claimRun(count: number, ownerId: number, hint: number): number {
    const w = this.words;
    const n = this.superblockCount;
    if (count > n || Atomics.load(w, HDR_FREE_SUPERBLOCKS) < count) return -1;
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
      Atomics.sub(w, HDR_FREE_SUPERBLOCKS, count);
      for (let k = 0; k < count; k++) Atomics.store(w, directoryIndex(first + k, SB_RUN_FIRST), first);
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_BLOCKS), 0);
      Atomics.store(w, directoryIndex(first, SB_EXPORTED_SUM), 0);
      Atomics.store(w, directoryIndex(first, SB_MAP_STATE), MAP_UNMAPPED);
      return first;
    }
    return -1;
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

  /** Unmaps (if mapped) and frees a run owned by `ownerId`. */
  returnRun(first: number, count: number): void {
    const w = this.words;
    const at = directoryIndex(first, SB_MAP_STATE);
    const state = Atomics.load(w, at);
    if (state === MAP_MAPPED) {
      Atomics.store(w, at, MAP_UNMAPPING);
      try {
        this.device.unmap(this.range, first * this.superblockBytes, count * this.superblockBytes);
      } catch (error) {
        // Refused: the run stays owned and mapped (a later call tries again).
        Atomics.store(w, at, MAP_MAPPED);
        throw error;
      }
    } else if (state === MAP_MAPPING || state === MAP_UNMAPPING) {
      // A thread died inside (or just after) map() or unmap(): the call either did the whole run
      // or nothing.
      try {
        this.device.unmap(this.range, first * this.superblockBytes, count * this.superblockBytes);
      } catch (error) {
        // By code: a CudaDevice opened in a worker is CommonJS, and its errors another copy of the class.
        if (!isDeviceError(error)) throw error;
      }
    }
    Atomics.store(w, at, MAP_UNMAPPED);
    for (let k = 0; k < count; k++) Atomics.store(w, directoryIndex(first + k, SB_RUN_FIRST), -1);
    // FREE last, after the unmap: the next claimer maps pages that are certainly unmapped.
    for (let k = 0; k < count; k++) Atomics.store(w, directoryIndex(first + k, SB_OWNER), OWNER_FREE);
    Atomics.add(w, HDR_FREE_SUPERBLOCKS, count);
  }

  runFirstOf(superblock: number): number {
    return Atomics.load(this.words, directoryIndex(superblock, SB_RUN_FIRST));
  }

  ownerOf(superblock: number): number {
    return Atomics.load(this.words, directoryIndex(superblock, SB_OWNER));
  }

  /**
   * Counts a block exported (delta 1) or no longer exported (delta -1) in the run starting at
   * `first`, with its key in the run's checksum (SB_EXPORTED_SUM).
   */
  addExported(first: number, delta: 1 | -1, offsetBytes: number, blockId: number): void {
    const key = exportKey(offsetBytes / GRANULE_BYTES, blockId);
    // Sum first, count second: the adopter loads the count, then the sum, so a count it reads
    // after this change comes with this change's sum.
    Atomics.add(this.words, directoryIndex(first, SB_EXPORTED_SUM), delta === 1 ? key : -key | 0);
    Atomics.add(this.words, directoryIndex(first, SB_EXPORTED_BLOCKS), delta);
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
   * Pushes a free of the block at `offsetBytes` onto the queue of `ownerId`'s slot. Returns false if
   * the queue is full (the caller keeps the free and retries later). Lock-free, never waits.
   */
  pushRemoteFree(ownerId: number, offsetBytes: number, blockId: number): boolean {
    const w = this.words;
    const slot = slotOfOwnerId(ownerId, this.sliceSlots);
    const tailAt = sliceIndex(this, slot, SL_QUEUE_TAIL);
    const mask = this.queueCells - 1;
    for (;;) {
      const pos = Atomics.load(w, tailAt);
      const cell = pos & mask;
      const seq = Atomics.load(w, cellIndex(this, slot, cell, CELL_SEQ));
      const dif = (seq - pos) | 0;
      if (dif === 0) {
        if (Atomics.compareExchange(w, tailAt, pos, (pos + 1) | 0) !== pos) continue;
        w[cellIndex(this, slot, cell, CELL_OFFSET_GRANULES)] = offsetBytes / GRANULE_BYTES;
        w[cellIndex(this, slot, cell, CELL_BLOCK_ID)] = blockId | 0;
        w[cellIndex(this, slot, cell, CELL_OWNER_ID)] = ownerId;
        // Publishes the payload written above to the consumer.
        Atomics.store(w, cellIndex(this, slot, cell, CELL_SEQ), (pos + 1) | 0);
        Atomics.add(w, sliceIndex(this, slot, SL_REMOTE_FREES_PUSHED), 1);
        return true;
      }
      if (dif < 0) return false;
    }
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

  noteDroppedRemoteFree(): void {
    Atomics.add(this.words, HDR_DROPPED_REMOTE_FREES, 1);
  }

  // ---- adoption of dead slices (creator only) ----

  /** Adopts every slice of thread `threadId` (which has exited). Returns the superblocks given back now. */
  adoptDeadThread(threadId: number): number {
    this.requireCreator('adoptDeadThread');
    let returned = 0;
    for (let slot = 0; slot < this.sliceSlots; slot++) {
      const w = this.words;
      if (Atomics.load(w, sliceIndex(this, slot, SL_THREAD_ID)) !== threadId) continue;
      const stateAt = sliceIndex(this, slot, SL_STATE);
      if (Atomics.compareExchange(w, stateAt, SLOT_ACTIVE, SLOT_ORPHANED) !== SLOT_ACTIVE) continue;
      Atomics.add(w, HDR_RECLAIMED_SLICES, 1);
      Atomics.store(w, sliceIndex(this, slot, SL_DEAD), 1);
      returned += this.adoptSlot(slot);
    }
    return returned;
  }

  /** Makes progress on every orphaned slice: merges queued frees, returns runs no longer exported. */
  adoptOrphans(): number {
    this.requireCreator('adoptOrphans');
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

  /** Returns every owned run and frees every slot, exported or not (the worker pool is going away). */
  forceReturnAll(): void {
    this.requireCreator('forceReturnAll');
    const w = this.words;
    for (let b = 0; b < this.superblockCount; b++) {
      const owner = this.ownerOf(b);
      if (owner === OWNER_FREE || this.runFirstOf(b) !== b) continue;
      const count = this.runLength(b, owner);
      this.returnRun(b, count);
      Atomics.sub(w, sliceIndex(this, slotOfOwnerId(owner, this.sliceSlots), SL_SUPERBLOCKS), count);
    }
    for (let slot = 0; slot < this.sliceSlots; slot++)
      Atomics.store(w, sliceIndex(this, slot, SL_STATE), SLOT_FREE);
    this.adoptedFrees.clear();
  }

  /**
   * Merges the queued frees of an orphaned slot into its runs' exported counts and returns the
   * runs that no other thread holds a block of. The owner's table of exported blocks died with it:
   * a free is applied at most once per (offset, id), and a run goes back only when its count and
   * checksum are both 0. A free naming no exported block (a stale descriptor) then leaves the
   * checksum off, and that run stays owned until destroy(): kept too long, never handed out while
   * a block in it is live.
   */
  private adoptSlot(slot: number): number {
    const w = this.words;
    const ownerId = Atomics.load(w, sliceIndex(this, slot, SL_OWNER_ID));
    const dead = Atomics.load(w, sliceIndex(this, slot, SL_DEAD)) === 1;
    let applied = this.adoptedFrees.get(ownerId);
    let returned = 0;
    let merged = 0;
    let rejected = 0;
    this.finishMerge(slot);
    this.drainQueue(slot, this.queueCells, (offsetBytes, blockId, entryOwner) => {
      const first = this.runFirstOf(Math.floor(offsetBytes / this.superblockBytes));
      const key = `${offsetBytes}:${blockId}`;
      // Rejected, as the owner would: an entry for an earlier generation of the slot (its memory is
      // back), for a run this owner no longer holds, or a free applied already.
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
      this.returnRun(b, count);
      Atomics.sub(w, sliceIndex(this, slot, SL_SUPERBLOCKS), count);
      returned += count;
      if (dead) Atomics.add(w, HDR_RECLAIMED_SUPERBLOCKS, count);
    }
    if (this.ownedSuperblocks(ownerId) === 0 && this.queueEmpty(slot)) {
      this.adoptedFrees.delete(ownerId);
      Atomics.store(w, sliceIndex(this, slot, SL_STATE), SLOT_FREE);
    }
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
      state: state === SLOT_ACTIVE ? 'active' : state === SLOT_ORPHANED ? 'orphaned' : 'free',
      superblocks: r(SL_SUPERBLOCKS),
      superblocksPeak: r(SL_SUPERBLOCKS_PEAK),
      claims: r(SL_CLAIMS),
      returns: r(SL_RETURNS),
      remoteFreesPushed: r(SL_REMOTE_FREES_PUSHED),
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
      freeSuperblocks: h(HDR_FREE_SUPERBLOCKS),
      ownedSuperblocks: this.superblockCount - h(HDR_FREE_SUPERBLOCKS),
      reclaimedSlices: h(HDR_RECLAIMED_SLICES),
      reclaimedSuperblocks: h(HDR_RECLAIMED_SUPERBLOCKS),
      reclaimedRemoteFrees: h(HDR_RECLAIMED_REMOTE_FREES),
      droppedRemoteFrees: h(HDR_DROPPED_REMOTE_FREES),
      total,
      slices,
    };
  }

  /** Recounts the directory: every superblock FREE or owned by a live slot's ownerId. Throws on mismatch. */
  checkDirectory(): void {
    let free = 0;
    for (let b = 0; b < this.superblockCount; b++) {
      const owner = this.ownerOf(b);
      if (owner === OWNER_FREE) {
        free++;
        continue;
      }
      const slot = slotOfOwnerId(owner, this.sliceSlots);
      if (this.slotOwner(slot).ownerId !== owner)
        throw new InvariantError(`superblock ${b} is owned by stale owner ${owner}`);
    }
    if (free !== Atomics.load(this.words, HDR_FREE_SUPERBLOCKS))
      throw new InvariantError(
        `free count ${Atomics.load(this.words, HDR_FREE_SUPERBLOCKS)} but ${free} superblocks are free`,
      );
  }
}
