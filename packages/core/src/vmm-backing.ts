/**
 * VmmBacking: one arena reserved once; pages are mapped when a block first touches them and
 * unmapped when no block has touched them for a while (hysteresis), so reserved memory follows
 * live memory closely without paying a device call per block.
 *
 * Per page: `live[p]` counts occupied blocks touching page p; `mapped[p]` says whether memory
 * backs it. Invariants: live[p] > 0 implies mapped[p]; emptyMappedPages counts pages with
 * mapped && live == 0; reservedBytes = mapped pages × pageBytes ≤ limitBytes.
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
   * Empty mapped pages kept for reuse before unmapping, as a fraction of reserved bytes
   * (default 1/32); at least `retainMinBytes` (default 2 pages) is always kept.
   */
  retainFraction?: number;
  retainMinBytes?: number;
}

export class VmmBacking implements Backing {
  readonly kind = 'vmm';
  readonly pageBytes: number;
  private readonly device: Device;
  private readonly range: AddressRange;
  private readonly arena: ArenaRef;
  private readonly live: Int32Array;
  private readonly mapped: Uint8Array;
  private readonly limitBytes: number;
  private readonly retainFraction: number;
  private readonly retainMinBytesOption: number;
  private retainMinBytes: number;
  /** Pages that became empty, oldest first; stale entries are skipped when popped. */
  private emptyQueue: number[] = [];
  private emptyHead = 0;
  private mappedPages = 0;
  private emptyMappedPages = 0;
  private calls = 0;

  constructor(options: VmmBackingOptions) {
    this.device = options.device;
    this.pageBytes = options.device.pageBytes;
    this.limitBytes = options.limitBytes;
    this.retainFraction = options.retainFraction ?? 1 / 32;
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
    if (needed > 0) this.mapMissing(first, last, needed);
    for (let p = first; p <= last; p++) {
      if (this.live[p]!++ === 0) this.emptyMappedPages--;
    }
  }

  vacate(address: number, bytes: number): void {
    const pageBytes = this.pageBytes;
    const first = Math.floor(address / pageBytes);
    const last = Math.floor((address + bytes - 1) / pageBytes);
    for (let p = first; p <= last; p++) {
      if (--this.live[p]! === 0) {
        this.emptyMappedPages++;
        this.emptyQueue.push(p);
      }
    }
    if (this.emptyQueue.length - this.emptyHead > 2 * this.live.length + 1024) this.compactQueue();
    const retain = Math.max(this.retainMinBytes, this.mappedPages * pageBytes * this.retainFraction);
    if (this.emptyMappedPages * pageBytes > retain)
      this.releaseEmpty(this.emptyMappedPages - Math.floor(retain / pageBytes));
  }

  trim(): number {
    let released = 0;
    let runStart = -1;
    const pages = this.live.length;
    for (let p = 0; p <= pages; p++) {
      const empty = p < pages && this.mapped[p] === 1 && this.live[p] === 0;
      if (empty && runStart < 0) runStart = p;
      if (!empty && runStart >= 0) {
        released += this.unmapRun(runStart, p - runStart);
        runStart = -1;
      }
    }
    this.emptyQueue = [];
    this.emptyHead = 0;
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
    this.mappedPages = 0;
    this.emptyMappedPages = 0;
    this.device.releaseRange(this.range);
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
        // A refusal here leaves the runs mapped so far as empty cached pages: still accounted for.
        this.device.map(this.range, runStart * pageBytes, (p - runStart) * pageBytes);
        this.calls++;
        for (let q = runStart; q < p; q++) {
          this.mapped[q] = 1;
          this.emptyMappedPages++;
          this.emptyQueue.push(q);
        }
        this.mappedPages += p - runStart;
        runStart = -1;
      }
    }
  }

  /** Unmaps up to `count` empty pages, oldest emptied first. */
  private releaseEmpty(count: number): void {
    let released = 0;
    const queue = this.emptyQueue;
    while (released < count && this.emptyHead < queue.length) {
      const p = queue[this.emptyHead++]!;
      if (this.mapped[p] === 1 && this.live[p] === 0) {
        this.unmapRun(p, 1);
        released++;
      }
    }
    if (this.emptyHead > 4096 && this.emptyHead * 2 > queue.length) {
      this.emptyQueue = queue.slice(this.emptyHead);
      this.emptyHead = 0;
    }
  }

  /** Drops stale and repeated entries so the queue stays bounded by the page count. */
  private compactQueue(): void {
    const seen = new Uint8Array(this.live.length);
    const kept: number[] = [];
    for (let i = this.emptyHead; i < this.emptyQueue.length; i++) {
      const p = this.emptyQueue[i]!;
      if (seen[p] === 0 && this.mapped[p] === 1 && this.live[p] === 0) {
        seen[p] = 1;
        kept.push(p);
      }
    }
    this.emptyQueue = kept;
    this.emptyHead = 0;
  }

  private unmapRun(first: number, count: number): number {
    try {
      this.device.unmap(this.range, first * this.pageBytes, count * this.pageBytes);
    } catch (error) {
      throw new DeviceError('unmap', 'the device refused to unmap empty pages', { cause: error });
    }
    for (let q = first; q < first + count; q++) this.mapped[q] = 0;
    this.mappedPages -= count;
    this.emptyMappedPages -= count;
    return count * this.pageBytes;
  }
}
