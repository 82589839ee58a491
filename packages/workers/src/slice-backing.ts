/**
 * SliceBacking: core's Backing over the superblocks one thread owns in a SharedArena. The pool's
 * policy sees each claimed run of superblocks as one range (pool-space address = arena offset), so
 * a block never spans two runs and a run can be handed back whole once no block occupies it.
 *
 * Hot path: occupy/vacate touch only this thread's counters. `grow` claims a run (CAS in shared
 * memory, then one device map call); a run that becomes empty is kept while at most
 * `emptySuperblocksMax` superblocks sit empty, else the oldest empty run is returned (unmapped and
 * freed in the directory). After another slice failed to claim (the arena's claim-failure count
 * changed: no free run, or the device refused to map one), none is kept: memory this thread does
 * not use goes to the thread that needs it.
 * Invariant: every run in `runs` is owned by `ownerId` and mapped; the slice's superblock,
 * claim and return counts in shared memory change with the directory, in the arena's logged ops.
 */
import {
  type ArenaRef,
  type ArenaSnapshot,
  type Backing,
  DeviceOutOfMemoryError,
  isDeviceError,
  isDeviceRefusal,
  type Policy,
} from '@gpupool/core';
import type { SharedArena } from './arena.js';
import { SL_SUPERBLOCKS_PEAK } from './layout.js';

interface Run {
  first: number;
  count: number;
  /** Occupied blocks in the run (the pool's occupy/vacate). */
  occupied: number;
}

export interface SliceBackingOptions {
  arena: SharedArena;
  slot: number;
  ownerId: number;
  /** Empty superblocks kept before the oldest empty run is returned (default 2). */
  emptySuperblocksMax?: number;
}

export class SliceBacking implements Backing {
  readonly kind = 'superblock';
  readonly pageBytes: number;
  readonly arena: SharedArena;
  readonly slot: number;
  readonly ownerId: number;
  private readonly superblockBytes: number;
  private readonly emptySuperblocksMax: number;
  private policy: Policy | null = null;
  /** Run by first superblock; `runOf[sb]` gives the run's first superblock or -1. */
  private readonly runs = new Map<number, Run>();
  private readonly runOf: Int32Array;
  /** Empty runs, oldest first (a run leaves it when occupied again). */
  private emptyRuns: Run[] = [];
  private emptySuperblocks = 0;
  private ownedSuperblocks = 0;
  private calls = 0;
  private hint: number;
  private closed = false;
  /** The arena's claim-failure count this slice last answered by giving back its empty runs. */
  private claimFailuresSeen: number;

  constructor(options: SliceBackingOptions) {
    this.arena = options.arena;
    this.slot = options.slot;
    this.ownerId = options.ownerId;
    this.pageBytes = this.arena.device.pageBytes;
    this.superblockBytes = this.arena.superblockBytes;
    this.emptySuperblocksMax = options.emptySuperblocksMax ?? 2;
    this.runOf = new Int32Array(this.arena.superblockCount).fill(-1);
    // Threads start scanning at different places, so they rarely race for the same superblock.
    this.hint = Math.floor((this.slot * this.arena.superblockCount) / this.arena.sliceSlots);
    this.claimFailuresSeen = this.arena.claimFailures();
  }

  get reservedBytes(): number {
    return this.ownedSuperblocks * this.superblockBytes;
  }

  get deviceCalls(): number {
    return this.calls;
  }

  get superblocks(): number {
    return this.ownedSuperblocks;
  }

  attach(policy: Policy): void {
    this.policy = policy;
  }

  grow(sizeBytes: number, alignmentBytes: number): boolean {
    const need = sizeBytes + (alignmentBytes > 256 ? alignmentBytes : 0);
    const count = Math.ceil(need / this.superblockBytes);
    // The claim stays open in the slot's op log until the run is mapped and in the books here: a
    // thread that ends before has it undone by its adopter.
    const first = this.arena.claimRun(count, this.ownerId, this.hint, this.slot);
    if (first < 0) {
      // Other slices may sit on empty superblocks (their allowance): ask them to give those back
      // (unless no arena could ever hold the request).
      if (count <= this.arena.superblockCount) this.askForEmptySuperblocks();
      throw new DeviceOutOfMemoryError(
        'claimSuperblocks',
        count * this.superblockBytes,
        `the shared arena has no free run of ${count} superblock(s) of ${this.superblockBytes} bytes`,
      );
    }
    try {
      this.arena.mapRun(first, count);
    } catch (error) {
      this.arena.undoClaim(this.slot);
      // The run was free but the device's memory ran out (a GPU's memory can be smaller than the
      // arena's address space): other slices' empty superblocks hold memory too.
      if (isDeviceRefusal(error)) this.askForEmptySuperblocks();
      throw error;
    }
    this.calls++;
    this.hint = (first + count) % this.arena.superblockCount;
    const run: Run = { first, count, occupied: 0 };
    this.runs.set(first, run);
    this.runOf.fill(first, first, first + count);
    this.ownedSuperblocks += count;
    this.emptyRuns.push(run);
    this.emptySuperblocks += count;
    this.notePeak();
    this.policy!.addRange(first * this.superblockBytes, count * this.superblockBytes);
    this.arena.stepHook?.('claim:mapped');
    this.arena.endOp(this.slot);
    return true;
  }

  occupy(address: number): void {
    const run = this.runs.get(this.runOf[Math.floor(address / this.superblockBytes)]!)!;
    if (run.occupied++ === 0) {
      const i = this.emptyRuns.indexOf(run);
      if (i >= 0) this.emptyRuns.splice(i, 1);
      this.emptySuperblocks -= run.count;
    }
  }

  vacate(address: number): void {
    const run = this.runs.get(this.runOf[Math.floor(address / this.superblockBytes)]!)!;
    if (--run.occupied === 0) {
      this.emptyRuns.push(run);
      this.emptySuperblocks += run.count;
      const keep = this.claimFailedElsewhere() ? 0 : this.emptySuperblocksMax;
      while (this.emptySuperblocks > keep && this.emptyRuns.length > 0) {
        if (!this.giveBack(this.emptyRuns[0]!)) break;
      }
    }
  }

  /** Makes the other slices give back their empty superblocks (see HDR_CLAIM_FAILURES). */
  private askForEmptySuperblocks(): void {
    // This slice's own failure is no news to it (the pool's recovery trims it anyway).
    const before = this.arena.noteClaimFailure();
    if (before === this.claimFailuresSeen) this.claimFailuresSeen = (before + 1) | 0; // int32, as the shared word
  }

  /**
   * True once per change of the arena's claim-failure count (some slice found no free run since
   * this slice last looked): the caller then gives back what it keeps empty.
   */
  claimFailedElsewhere(): boolean {
    const now = this.arena.claimFailures();
    if (now === this.claimFailuresSeen) return false;
    this.claimFailuresSeen = now;
    return true;
  }

  trim(): number {
    let released = 0;
    for (const run of [...this.emptyRuns])
      if (this.giveBack(run)) released += run.count * this.superblockBytes;
    return released;
  }

  /** The run's first superblock for a block at `address` (for exported-block counts). */
  runFirstOf(address: number): number {
    return this.runOf[Math.floor(address / this.superblockBytes)]!;
  }

  arenaOf(): ArenaRef {
    return this.arena.ref;
  }

  snapshot(): ArenaSnapshot[] {
    const pagesPerSuperblock = this.superblockBytes / this.pageBytes;
    return [...this.runs.values()]
      .sort((a, b) => a.first - b.first)
      .map((run) => ({
        id: this.arena.arenaId,
        kind: 'superblock' as const,
        base: `0x${(this.arena.ref.base + BigInt(run.first * this.superblockBytes)).toString(16)}`,
        start: run.first * this.superblockBytes,
        bytes: run.count * this.superblockBytes,
        pageBytes: this.pageBytes,
        mappedBytes: run.count * this.superblockBytes,
        mappedRuns: [[run.first * pagesPerSuperblock, run.count * pagesPerSuperblock]],
      }));
  }

  /**
   * Gives back every run that holds no exported block; runs with blocks still held by other
   * threads stay owned, and the slot is left to the arena's creator to adopt.
   */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    for (const run of [...this.runs.values()]) {
      if (this.arena.exportedOf(run.first) > 0) continue;
      // A refused unmap keeps the run owned: the slot is then left to the creator, which retries.
      if (this.returnRun(run)) this.forget(run);
    }
    this.emptyRuns = [];
    this.arena.closeSlot(this.slot, this.ownerId);
  }

  /** Returns an empty run to the arena if the policy lets go of it. */
  private giveBack(run: Run): boolean {
    if (run.occupied !== 0 || this.arena.exportedOf(run.first) > 0) return false;
    const address = run.first * this.superblockBytes;
    const bytes = run.count * this.superblockBytes;
    if (!this.policy!.removeRange(address, bytes)) return false;
    if (!this.returnRun(run)) {
      // Still owned and mapped: the policy gets it back, so it serves blocks again and a later
      // give-back (the next run that empties, trim(), destroy()) tries it again. Not thrown: this
      // runs inside a block's release(), which has released the block already.
      this.policy!.addRange(address, bytes);
      return false;
    }
    const i = this.emptyRuns.indexOf(run);
    if (i >= 0) this.emptyRuns.splice(i, 1);
    this.emptySuperblocks -= run.count;
    this.forget(run);
    return true;
  }

  /** Returns the run to the arena; false if the device refused the unmap (the run stays owned and mapped). */
  private returnRun(run: Run): boolean {
    try {
      this.arena.returnOwnRun(this.slot, run.first, run.count);
      return true;
    } catch (error) {
      // By code: a CudaDevice opened in a worker is CommonJS, and its errors another copy of the class.
      if (!isDeviceError(error)) throw error;
      return false;
    }
  }

  private forget(run: Run): void {
    this.runs.delete(run.first);
    this.runOf.fill(-1, run.first, run.first + run.count);
    this.ownedSuperblocks -= run.count;
  }

  private notePeak(): void {
    const s = this.arena.sliceStats(this.slot);
    if (s.superblocks > s.superblocksPeak)
      this.arena.count(this.slot, SL_SUPERBLOCKS_PEAK, s.superblocks - s.superblocksPeak);
  }
}
