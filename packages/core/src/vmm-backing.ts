/**
 * VmmBacking: one arena reserved once; pages are mapped when a block first touches them, so
 * reserved memory follows the pages that live blocks touch.
 *
 * Release with hysteresis, keyed to the high-water mark: empty pages stay mapped (reuse costs no
 * device call) as long as holding them never raises reserved memory above the most that live
 * blocks have ever needed at once (plus `highWaterSlack`). When a block needs new pages and that
 * would lift reserved memory above that mark, empty pages are unmapped first — the highest
 * addresses first, since placement favours low addresses and will not miss them — so the peak
 * grows only when live blocks need it. Optionally (`retainFraction` < 1), when empty pages exceed
 * that fraction of reserved memory, they are unmapped down to half of it; `trim()` unmaps all.
 *
 * Per page: `live[p]` counts occupied blocks touching page p; `mapped[p]` says whether memory
 * backs it; bit p of `emptyBits` is set iff mapped[p] && live[p] == 0. Invariants:
 * live[p] > 0 implies mapped[p]; emptyMappedPages = popcount(emptyBits);
 * reservedBytes = mappedPages × pageBytes ≤ limitBytes.
 */
import type { ArenaRef, ArenaSnapshot, Backing } from './backing.js';
import type { AddressRange, Device } from './device.js';
import { DeviceError, DeviceOutOfMemoryError } from './errors.js';
import type { Policy } from './policies/policy.js';

export interface VmmBackingOptions {
  device: Device;
  arenaBytes: number;
  limitBytes: number;
  /**
   * Most empty mapped memory kept, as a fraction of reserved bytes (default 1: no cap, since the
   * high-water swap already bounds the peak). At least `retainMinBytes` (default 2 pages) is kept.
   */
  retainFraction?: number;
  retainMinBytes?: number;
  /**
   * Room above the peak of pages that live blocks have needed, as a fraction (default 0):
   * mapping may go that far before empty pages are swapped out. More room, fewer device calls.
   */
  highWaterSlack?: number;
  /**
   * Swaps allowed per rise of the high-water mark (default: unlimited — the lowest peak). A
   * workload that keeps landing on new pages at its high-water mark pays two device calls per such
   * block; with a budget of K, after K swaps the mark rises instead, bounding the cost of churn at
   * the price of a higher peak (0: never swap, PyTorch-expandable-like).
   */
  swapsPerRaise?: number;
}

export class VmmBacking implements Backing {
  readonly kind = 'vmm';
  readonly pageBytes: number;
  private readonly device: Device;
  private readonly range: AddressRange;
  private readonly arena: ArenaRef;
  private readonly live: Int32Array;
  /** The decay epoch in which each page last became empty (see decay()). */
  private readonly emptySince: Int32Array;
  private epoch = 0;
  private readonly mapped: Uint8Array;
  private readonly emptyBits: Int32Array;
  private readonly limitBytes: number;
  private readonly retainFraction: number;
  private readonly retainMinBytesOption: number;
  private readonly highWaterSlack: number;
  private readonly swapsPerRaise: number;
  private swapsSinceRaise = 0;
  private retainMinBytes: number;
  private mappedPages = 0;
  private emptyMappedPages = 0;
  /** Most pages mapped at once since the last trim. */
  private highWaterPages = 0;
  /** Most pages live blocks touched at once since the last trim. */
  private peakTouchedPages = 0;
  private calls = 0;
  /** No word of emptyBits above this index has a bit set (a search hint). */
  private emptyWordMax = -1;

  constructor(options: VmmBackingOptions) {
    this.device = options.device;
    this.pageBytes = options.device.pageBytes;
    this.limitBytes = options.limitBytes;
    this.retainFraction = options.retainFraction ?? 1;
    this.highWaterSlack = options.highWaterSlack ?? 0;
    this.swapsPerRaise = options.swapsPerRaise ?? Number.POSITIVE_INFINITY;
    this.retainMinBytesOption = options.retainMinBytes ?? 2 * this.pageBytes;
    this.retainMinBytes = this.retainMinBytesOption;
    this.range = options.device.reserve(options.arenaBytes);
    this.arena = Object.freeze({
      id: this.range.id,
      base: this.range.base,
      start: 0,
      bytes: this.range.bytes,
    });
    const pages = this.range.bytes / this.pageBytes;
    this.live = new Int32Array(pages);
    this.mapped = new Uint8Array(pages);
    this.emptySince = new Int32Array(pages);
    this.emptyBits = new Int32Array(Math.ceil(pages / 32));
  }

  get reservedBytes(): number {
    return this.mappedPages * this.pageBytes;
  }

  get deviceCalls(): number {
    return this.calls;
  }

  attach(policy: Policy): void {
    policy.addRange(0, this.range.bytes);
  }

  grow(): boolean {
    return false;
  }

  occupy(address: number, bytes: number): void {
    const pageBytes = this.pageBytes;
    const first = Math.floor(address / pageBytes);
    const last = Math.floor((address + bytes - 1) / pageBytes);
    // Map what is missing first, so a refusal leaves every live count untouched.
    let needed = 0;
    for (let p = first; p <= last; p++) if (this.mapped[p] === 0) needed++;
    if (needed > 0) {
      const over = this.mappedPages + needed - this.allowancePages();
      if (over > 0 && this.emptyMappedPages > 0) {
        if (this.swapsSinceRaise < this.swapsPerRaise) {
          this.releaseEmpty(over, first, last);
          this.swapsSinceRaise++;
        } else {
          this.swapsSinceRaise = 0; // let the mark rise this once
        }
      }
      this.mapMissing(first, last, needed);
      if (this.mappedPages > this.highWaterPages) this.highWaterPages = this.mappedPages;
    }
    const bits = this.emptyBits;
    for (let p = first; p <= last; p++) {
      if (this.live[p]!++ === 0) {
        this.emptyMappedPages--;
        bits[p >>> 5]! &= ~(1 << (p & 31));
      }
    }
    const touched = this.mappedPages - this.emptyMappedPages;
    if (touched > this.peakTouchedPages) this.peakTouchedPages = touched;
  }

  vacate(address: number, bytes: number): void {
    const pageBytes = this.pageBytes;
    const first = Math.floor(address / pageBytes);
    const last = Math.floor((address + bytes - 1) / pageBytes);
    const bits = this.emptyBits;
    for (let p = first; p <= last; p++) {
      if (--this.live[p]! === 0) {
        this.emptyMappedPages++;
        bits[p >>> 5]! |= 1 << (p & 31);
        this.emptySince[p] = this.epoch;
      }
    }
    if (last >>> 5 > this.emptyWordMax) this.emptyWordMax = last >>> 5;
    if (this.retainFraction < 1) {
      const retainBytes = Math.max(this.retainMinBytes, this.mappedPages * pageBytes * this.retainFraction);
      if (this.emptyMappedPages * pageBytes > retainBytes) {
        const keepPages = Math.floor(Math.max(this.retainMinBytes, retainBytes / 2) / pageBytes);
        this.releaseEmpty(this.emptyMappedPages - keepPages, -1, -1);
      }
    }
  }

  /**
   * Time-based release, called on a timer by the pool (`releaseAfterMs`): unmaps the pages that have
   * stayed empty since before the previous call, keeping `retainMinBytes` (prewarmed memory).
   * A long-running process whose workload shrank gives its memory back without calling trim().
   */
  decay(): number {
    const cutoff = this.epoch;
    this.epoch++;
    const keepPages = Math.floor(this.retainMinBytes / this.pageBytes);
    let budget = this.emptyMappedPages - keepPages;
    let released = 0;
    let runStart = -1;
    const pages = this.mapped.length;
    for (let p = 0; p <= pages; p++) {
      const stale =
        budget > 0 && p < pages && this.mapped[p] === 1 && this.live[p] === 0 && this.emptySince[p]! < cutoff;
      if (stale) {
        if (runStart < 0) runStart = p;
        budget--;
      } else if (runStart >= 0) {
        released += this.unmapRun(runStart, p - runStart);
        runStart = -1;
      }
    }
    return released;
  }

  trim(): number {
    const released = this.releaseEmpty(this.emptyMappedPages, -1, -1);
    this.highWaterPages = this.mappedPages;
    this.peakTouchedPages = this.mappedPages - this.emptyMappedPages;
    return released;
  }

  setRetainFloor(bytes: number): void {
    this.retainMinBytes = Math.max(this.retainMinBytesOption, bytes);
  }

  arenaOf(): ArenaRef {
    return this.arena;
  }

  snapshot(): ArenaSnapshot[] {
    const runs: [number, number][] = [];
    for (let p = 0; p < this.mapped.length; p++) {
      if (this.mapped[p] === 0) continue;
      const last = runs[runs.length - 1];
      if (last !== undefined && last[0] + last[1] === p) last[1]++;
      else runs.push([p, 1]);
    }
    return [
      {
        id: this.arena.id,
        kind: 'vmm',
        base: `0x${this.arena.base.toString(16)}`,
        start: 0,
        bytes: this.arena.bytes,
        pageBytes: this.pageBytes,
        mappedBytes: this.reservedBytes,
        mappedRuns: runs,
      },
    ];
  }

  destroy(): void {
    // Every page, occupied or not: the pool is going away.
    let runStart = -1;
    const pages = this.mapped.length;
    for (let p = 0; p <= pages; p++) {
      const isMapped = p < pages && this.mapped[p] === 1;
      if (isMapped && runStart < 0) runStart = p;
      if (!isMapped && runStart >= 0) {
        this.device.unmap(this.range, runStart * this.pageBytes, (p - runStart) * this.pageBytes);
        for (let q = runStart; q < p; q++) {
          this.mapped[q] = 0;
          this.live[q] = 0;
        }
        runStart = -1;
      }
    }
    this.emptyBits.fill(0);
    this.emptyWordMax = -1;
    this.mappedPages = 0;
    this.emptyMappedPages = 0;
    this.device.releaseRange(this.range);
  }

  /** Pages that may be mapped without swapping: the high-water mark, or the touched peak plus slack. */
  private allowancePages(): number {
    return Math.max(this.highWaterPages, Math.ceil(this.peakTouchedPages * (1 + this.highWaterSlack)));
  }

  /** Maps every unmapped page in [first, last], one device call per run. */
  private mapMissing(first: number, last: number, needed: number): void {
    const pageBytes = this.pageBytes;
    if ((this.mappedPages + needed) * pageBytes > this.limitBytes) {
      throw new DeviceOutOfMemoryError(
        'map',
        needed * pageBytes,
        `the pool's limitBytes (${this.limitBytes}) would be exceeded`,
      );
    }
    let runStart = -1;
    for (let p = first; p <= last + 1; p++) {
      const missing = p <= last && this.mapped[p] === 0;
      if (missing && runStart < 0) runStart = p;
      if (!missing && runStart >= 0) {
        // A refusal here leaves the runs mapped so far as empty pages: still accounted for.
        this.device.map(this.range, runStart * pageBytes, (p - runStart) * pageBytes);
        this.calls++;
        for (let q = runStart; q < p; q++) {
          this.mapped[q] = 1;
          this.emptyBits[q >>> 5]! |= 1 << (q & 31);
          this.emptySince[q] = this.epoch;
        }
        if ((p - 1) >>> 5 > this.emptyWordMax) this.emptyWordMax = (p - 1) >>> 5;
        this.mappedPages += p - runStart;
        this.emptyMappedPages += p - runStart;
        runStart = -1;
      }
    }
  }

  /**
   * Unmaps up to `count` empty pages, highest addresses first, sparing [spareFirst, spareLast];
   * adjacent pages go in one call. Returns the bytes unmapped.
   */
  private releaseEmpty(count: number, spareFirst: number, spareLast: number): number {
    const bits = this.emptyBits;
    let remaining = count;
    let released = 0;
    let runEnd = -1; // exclusive end of the run being collected (runs grow downward)
    let runStart = -1;
    let w = this.emptyWordMax;
    // Lower the hint past words that are empty now.
    while (w >= 0 && bits[w] === 0) w--;
    this.emptyWordMax = w;
    for (; w >= 0 && remaining > 0; w--) {
      let word = bits[w]!;
      while (word !== 0 && remaining > 0) {
        const bit = 31 - Math.clz32(word);
        word &= ~(1 << bit);
        const p = (w << 5) | bit;
        if (p >= spareFirst && p <= spareLast) continue;
        if (runStart === p + 1) {
          runStart = p;
        } else {
          if (runStart >= 0) released += this.unmapRun(runStart, runEnd - runStart);
          runStart = p;
          runEnd = p + 1;
        }
        remaining--;
      }
    }
    if (runStart >= 0) released += this.unmapRun(runStart, runEnd - runStart);
    return released;
  }

  private unmapRun(first: number, count: number): number {
    try {
      this.device.unmap(this.range, first * this.pageBytes, count * this.pageBytes);
    } catch (error) {
      throw new DeviceError('unmap', 'the device refused to unmap empty pages', { cause: error });
    }
    for (let q = first; q < first + count; q++) {
      this.mapped[q] = 0;
      this.emptyBits[q >>> 5]! &= ~(1 << (q & 31));
    }
    this.mappedPages -= count;
    this.emptyMappedPages -= count;
    return count * this.pageBytes;
  }
}
