/**
 * VmmBacking: one arena reserved once; pages are mapped when a block first touches them, so
 * reserved memory follows the pages that live blocks touch.
 *
 * Groups. A device backs each `map` call with one physical allocation per aligned window of its
 * `allocationBytes` (CudaDevice: 64 MiB windows over 2 MiB pages, since on an H100 each allocation
 * costs ~20 µs to create and release whatever its size, so a run pays that once per window
 * instead of once per page). Such an allocation — a group: the run's part in one window — is the
 * unit of release: unmapped only whole, once none of its pages holds an occupied byte. With the
 * default, one page per allocation, every mapped page is a group of its own.
 *
 * Release with hysteresis, keyed to the high-water mark: empty groups stay mapped (reuse costs no
 * device call) as long as holding them never raises reserved memory above the most that live
 * blocks have ever needed at once (plus `highWaterSlack`). When a block needs new pages and that
 * would lift reserved memory above that mark, empty groups are unmapped first — the highest
 * addresses first, since placement favours low addresses and will not miss them — so the peak
 * grows only when live blocks need it. Where groups span several pages, the policy is also told
 * which pages are mapped (`MappedFit`), so that it fills free space in mapped groups before
 * mapping more. Optionally (`retainFraction` < 1), when empty memory
 * exceeds that fraction of reserved memory, it is unmapped down to half of it; `trim()` unmaps all.
 *
 * Per page: `live[p]` counts occupied blocks that start or end on page p (a page wholly inside a
 * block belongs to it alone, so those are counted per group, not per page: occupy and vacate cost
 * O(groups), not O(pages)); `groupOf[p]` is the first page of p's group, -1 when unmapped. Per
 * group (indexed by its first page g): `groupPages[g]`, `groupBusy[g]` = its pages that hold an
 * occupied byte (kept for multi-page groups only: a single-page group's empty bit says it all),
 * and bit g of `emptyBits` is set iff the group is mapped and holds none. `mappedBits` has bit p
 * set iff page p is mapped. Invariants (checkInvariants recounts them from the occupied spans):
 * a busy page is mapped; emptyGroupPages = Σ groupPages over set bits; reservedBytes =
 * mappedPages × pageBytes ≤ limitBytes.
 */
import type { ArenaRef, ArenaSnapshot, Backing } from './backing.js';
import type { AddressRange, Device } from './device.js';
import { DeviceError, DeviceOutOfMemoryError, isDeviceError, isDeviceRefusal } from './errors.js';
import type { MappedFit, Policy } from './policies/policy.js';

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
   * Swaps allowed per rise of the high-water mark (default: unlimited — the lowest peak — where
   * allocations are single pages, DEFAULT_SWAPS_PER_RAISE_GROUPED where they span several). A
   * workload that keeps landing on new pages at its high-water mark pays two device calls per such
   * block; with a budget of K, after K swaps the mark rises instead, bounding the cost of churn at
   * the price of a higher peak — unless a whole allocation window of empty groups is there to swap
   * out (grouped devices). 0: never swap, PyTorch-expandable-like. At limitBytes the mark cannot rise:
   * whatever the budget or the slack, what would exceed the limit is swapped out.
   */
  swapsPerRaise?: number;
  /**
   * Mapped-aware placement: when the policy's choice would need pages mapped, it takes instead a
   * free block in mapped pages of at most this many times the request (0: off). Default
   * DEFAULT_MAPPED_FIT_FACTOR_GROUPED where allocations span several pages, 0 where they are single
   * pages (there any empty page can be unmapped, so mapped space is not worth a looser fit).
   */
  mappedFitFactor?: number;
  /**
   * Map ahead when the high-water mark rises (default 0: off): the run that lifts the mark goes on
   * past the block to the end of its allocation window, while empty mapped pages stay within this
   * fraction of the pages live blocks touch. A heap that grows block by block then pays one map
   * call per window instead of one per block; the peak moves by at most this fraction.
   */
  mapAheadFraction?: number;
}

/**
 * Default `swapsPerRaise` on devices whose allocations span several pages (CudaDevice): there each
 * swap costs two calls of 30–80 µs, and a workload whose live set wanders (pipeline) would otherwise
 * swap on almost every block at its peak. Unlimited where allocations are single pages.
 */
export const DEFAULT_SWAPS_PER_RAISE_GROUPED = 64;

/**
 * Default `mappedFitFactor` on devices whose allocations span several pages. On the four test
 * traces (2 MiB pages, 64 MiB allocations, 16 address layouts each: scripts/backing-perturbed.mjs)
 * 2 changed nothing, 4 to 64 cut transformer_varlen's map+unmap calls by a fifth and pipeline's
 * mean ratio by 0.03; 4 let transformer_varlen reach 1.027 on the unshifted layout, 8 did not.
 * Unbounded, small blocks split mapped holes that large ones needed (pipeline 1.16).
 */
export const DEFAULT_MAPPED_FIT_FACTOR_GROUPED = 8;

export class VmmBacking implements Backing, MappedFit {
  readonly kind = 'vmm';
  readonly pageBytes: number;
  private readonly device: Device;
  private readonly range: AddressRange;
  private readonly arena: ArenaRef;
  /** Pages per allocation window: a map run is one allocation per aligned window it touches. */
  private readonly groupWindow: number;
  private readonly live: Int32Array;
  private readonly groupOf: Int32Array;
  private readonly groupPages: Int32Array;
  private readonly groupBusy: Int32Array;
  /** The decay epoch in which each group last became empty (see decay()); by first page. */
  private readonly emptySince: Int32Array;
  private epoch = 0;
  private agesTracked = false;
  private readonly emptyBits: Int32Array;
  /** Bit p set iff page p is mapped: occupy checks a block's pages a word at a time. */
  private readonly mappedBits: Int32Array;
  private readonly limitBytes: number;
  private readonly retainFraction: number;
  private readonly retainMinBytesOption: number;
  private readonly highWaterSlack: number;
  private readonly swapsPerRaise: number;
  /**
   * Empty-group pages at which a swap is taken whatever the budget: one allocation window where
   * allocations span several pages (never on single-page devices, whose budget is unlimited by
   * default, nor with swapsPerRaise 0).
   * The budget is for churn at the mark, where little is empty and what a swap releases is mapped
   * again soon; with a whole window empty the mark would rise over memory that holds nothing.
   */
  private readonly swapAlwaysPages: number;
  readonly mappedFitFactor: number;
  private readonly mapAheadFraction: number;
  private swapsSinceRaise = 0;
  private retainMinBytes: number;
  private mappedPages = 0;
  /** Mapped pages that no occupied block touches (in empty or busy groups). */
  private emptyMappedPages = 0;
  /** Pages of wholly empty groups: what may be unmapped. */
  private emptyGroupPages = 0;
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
    this.groupWindow = Math.max(
      1,
      Math.floor((options.device.allocationBytes ?? this.pageBytes) / this.pageBytes),
    );
    this.limitBytes = options.limitBytes;
    this.retainFraction = options.retainFraction ?? 1;
    this.highWaterSlack = options.highWaterSlack ?? 0;
    this.swapsPerRaise =
      options.swapsPerRaise ??
      (this.groupWindow > 1 ? DEFAULT_SWAPS_PER_RAISE_GROUPED : Number.POSITIVE_INFINITY);
    this.swapAlwaysPages =
      this.groupWindow > 1 && this.swapsPerRaise > 0 ? this.groupWindow : Number.POSITIVE_INFINITY;
    this.mappedFitFactor =
      options.mappedFitFactor ?? (this.groupWindow > 1 ? DEFAULT_MAPPED_FIT_FACTOR_GROUPED : 0);
    this.mapAheadFraction = options.mapAheadFraction ?? 0;
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
    this.groupOf = new Int32Array(pages).fill(-1);
    this.groupPages = new Int32Array(pages);
    this.groupBusy = new Int32Array(pages);
    this.emptySince = new Int32Array(pages);
    this.emptyBits = new Int32Array(Math.ceil(pages / 32));
    this.mappedBits = new Int32Array(Math.ceil(pages / 32));
  }

  get reservedBytes(): number {
    return this.mappedPages * this.pageBytes;
  }

  get deviceCalls(): number {
    return this.calls;
  }

  attach(policy: Policy): void {
    // A policy may divide an arena into regions (bestFitPools: halves) only where each can still
    // hold any block: the arena is at least twice the most the pool may hold. A smaller one (an
    // explicit arenaBytes, or a device that refused the double reservation, as a HostDevice does)
    // is one range, or a block above half of it would find no room in an empty pool.
    const largestBlockBytes = Math.min(this.limitBytes, this.device.totalBytes);
    if (policy.addArena !== undefined && this.range.bytes >= 2 * largestBlockBytes)
      policy.addArena(0, this.range.bytes);
    else policy.addRange(0, this.range.bytes);
    if (this.mappedFitFactor > 0) policy.preferMapped?.(this);
  }

  isMapped(address: number, bytes: number): boolean {
    const pageBytes = this.pageBytes;
    return this.allMapped(Math.floor(address / pageBytes), Math.floor((address + bytes - 1) / pageBytes));
  }

  grow(): boolean {
    return false;
  }

  occupy(address: number, bytes: number): void {
    const pageBytes = this.pageBytes;
    const first = Math.floor(address / pageBytes);
    const last = Math.floor((address + bytes - 1) / pageBytes);
    // Map what is missing first, so a refusal leaves every live count untouched.
    if (!this.allMapped(first, last)) this.mapFor(first, last);
    if (this.groupWindow === 1) this.occupyPages(first, last);
    else this.occupyGroups(first, last);
    const touched = this.mappedPages - this.emptyMappedPages;
    if (touched > this.peakTouchedPages) this.peakTouchedPages = touched;
  }

  vacate(address: number, bytes: number): void {
    const pageBytes = this.pageBytes;
    const first = Math.floor(address / pageBytes);
    const last = Math.floor((address + bytes - 1) / pageBytes);
    if (this.groupWindow === 1) this.vacatePages(first, last);
    else this.vacateGroups(first, last);
    if (this.retainFraction < 1) {
      const retainBytes = Math.max(this.retainMinBytes, this.mappedPages * pageBytes * this.retainFraction);
      if (this.emptyGroupPages * pageBytes > retainBytes) this.shrinkTo(retainBytes);
    }
  }

  /**
   * retainFraction: unmaps empty groups down to half of `retainBytes`. Best effort: the block is
   * vacated already, so a device that refuses to unmap must not fail its release (the caller would
   * see a release that threw, and a second release would count the block twice). The refused
   * groups stay mapped and counted as empty; trim() or a later release tries again.
   */
  private shrinkTo(retainBytes: number): void {
    const keepPages = Math.floor(Math.max(this.retainMinBytes, retainBytes / 2) / this.pageBytes);
    // Groups go whole: one that would take empty memory below retainMinBytes (prewarmed memory) stays.
    const floorPages = Math.floor(this.retainMinBytes / this.pageBytes);
    try {
      this.releaseEmpty(this.emptyGroupPages - keepPages, -1, -1, this.emptyGroupPages - floorPages);
    } catch (error) {
      if (!isDeviceError(error)) throw error;
    }
  }

  /**
   * Time-based release, called on a timer by the pool (`releaseAfterMs`): unmaps the groups that
   * have stayed empty since before the previous call, keeping `retainMinBytes` (prewarmed memory).
   * A long-running process whose workload shrank gives its memory back without calling trim().
   */
  decay(): number {
    // Ages matter only once decay runs: until then every empty page counts as old (epoch 0).
    this.agesTracked = true;
    const cutoff = this.epoch;
    this.epoch++;
    let budget = this.emptyGroupPages - Math.floor(this.retainMinBytes / this.pageBytes);
    let released = 0;
    // Highest addresses first, as releaseEmpty: placement favours low addresses, so the empty pages
    // kept (retainMinBytes, prewarmed memory) are those the next blocks land on.
    for (let p = this.groupOf.length - 1; p >= 0 && budget > 0; ) {
      const g = this.groupOf[p]!;
      if (g < 0) {
        p--;
        continue;
      }
      const length = this.groupPages[g]!;
      const empty = ((this.emptyBits[g >>> 5]! >>> (g & 31)) & 1) === 1;
      if (empty && this.emptySince[g]! < cutoff) {
        if (length > budget) break; // it stays, and so do the groups below it (see releaseEmpty)
        budget -= length;
        released += this.unmapGroups(g, length);
      }
      p = g - 1;
    }
    return released;
  }

  trim(): number {
    const released = this.releaseEmpty(this.emptyGroupPages, -1, -1);
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
    // 'run' devices: one entry per group (map call), since groups are what can be released.
    const runs: [number, number][] = [];
    for (let p = 0; p < this.groupOf.length; p++) {
      const g = this.groupOf[p]!;
      if (g < 0) continue;
      const last = runs[runs.length - 1];
      if (last !== undefined && last[0] + last[1] === p && (this.groupWindow === 1 || g !== p)) last[1]++;
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

  /**
   * Recounts the books from the occupied spans the pool knows ([address, bytes] each): `live` at
   * boundary pages, busy pages per group (inside pages included), the empty bits and counters.
   */
  checkInvariants(occupied: readonly (readonly [number, number])[]): string | undefined {
    const pages = this.groupOf.length;
    const boundary = new Int32Array(pages);
    const busy = new Uint8Array(pages);
    for (const [address, bytes] of occupied) {
      const first = Math.floor(address / this.pageBytes);
      const last = Math.floor((address + bytes - 1) / this.pageBytes);
      boundary[first]!++;
      if (last > first) boundary[last]!++;
      busy.fill(1, first, last + 1);
    }
    let mapped = 0;
    let emptyPages = 0;
    let emptyGroupPages = 0;
    for (let p = 0; p < pages; p++) {
      if (this.live[p] !== boundary[p])
        return `page ${p}: live ${this.live[p]}, but ${boundary[p]} blocks start or end there`;
      if (busy[p] === 1 && this.groupOf[p]! < 0) return `page ${p} holds a block but is not mapped`;
      const mappedBit = (this.mappedBits[p >>> 5]! >>> (p & 31)) & 1;
      if (mappedBit !== (this.groupOf[p]! >= 0 ? 1 : 0)) return `page ${p}: mapped bit ${mappedBit} is stale`;
      if ((this.emptyBits[p >>> 5]! >>> (p & 31)) & 1 && this.groupOf[p] !== p)
        return `page ${p}: an empty bit, but no mapped group starts there`;
    }
    for (let g = 0; g < pages; ) {
      if (this.groupOf[g]! < 0) {
        g++;
        continue;
      }
      if (this.groupOf[g] !== g) return `page ${g} starts no group but follows an unmapped page`;
      const length = this.groupPages[g]!;
      let busyPages = 0;
      for (let p = g; p < g + length; p++) {
        if (this.groupOf[p] !== g) return `page ${p} should belong to the group at ${g}`;
        busyPages += busy[p]!;
      }
      emptyPages += length - busyPages;
      const bit = (this.emptyBits[g >>> 5]! >>> (g & 31)) & 1;
      if (bit !== (busyPages === 0 ? 1 : 0))
        return `group ${g}: empty bit ${bit} with ${busyPages} busy pages`;
      if (this.groupWindow > 1 && busyPages !== this.groupBusy[g])
        return `group ${g}: ${busyPages} busy pages, counted ${this.groupBusy[g]}`;
      if (busyPages === 0) emptyGroupPages += length;
      mapped += length;
      g += length;
    }
    for (let w = this.emptyWordMax + 1; w < this.emptyBits.length; w++)
      if (this.emptyBits[w] !== 0)
        return `empty bits in word ${w}, above the search hint ${this.emptyWordMax}`;
    if (mapped !== this.mappedPages) return `${mapped} pages mapped, counted ${this.mappedPages}`;
    if (emptyPages !== this.emptyMappedPages)
      return `${emptyPages} empty pages, counted ${this.emptyMappedPages}`;
    if (emptyGroupPages !== this.emptyGroupPages)
      return `${emptyGroupPages} pages in empty groups, counted ${this.emptyGroupPages}`;
    return undefined;
  }

  destroy(): void {
    // Every group, occupied or not: the pool is going away. Adjacent groups go in one call. A run
    // the device refuses stays mapped (and in reservedBytes) while the others are unmapped all the
    // same; the range is released once no page is mapped, so calling destroy() again finishes.
    const pages = this.groupOf.length;
    let refused: unknown;
    let refusedPages = 0;
    let runStart = -1;
    for (let p = 0; p <= pages; p++) {
      const isMapped = p < pages && this.groupOf[p]! >= 0;
      if (isMapped && runStart < 0) runStart = p;
      if (!isMapped && runStart >= 0) {
        try {
          this.device.unmap(this.range, runStart * this.pageBytes, (p - runStart) * this.pageBytes);
          for (let q = runStart; q < p; q++) {
            this.groupOf[q] = -1;
            this.live[q] = 0;
          }
          this.mappedPages -= p - runStart;
        } catch (error) {
          refused ??= error;
          refusedPages += p - runStart;
        }
        runStart = -1;
      }
    }
    if (refused !== undefined) {
      throw new DeviceError(
        'unmap',
        `the device refused to unmap ${refusedPages * this.pageBytes} bytes; destroy() again to retry`,
        { cause: refused },
      );
    }
    this.emptyBits.fill(0);
    this.mappedBits.fill(0);
    this.emptyWordMax = -1;
    this.mappedPages = 0;
    this.emptyMappedPages = 0;
    this.emptyGroupPages = 0;
    this.device.releaseRange(this.range);
  }

  private allMapped(first: number, last: number): boolean {
    const bits = this.mappedBits;
    const a = first >>> 5;
    const b = last >>> 5;
    for (let w = a; w <= b; w++) {
      const mask = wordMask(w === a ? first & 31 : 0, w === b ? last & 31 : 31);
      if ((bits[w]! & mask) !== mask) return false;
    }
    return true;
  }

  /**
   * occupy() where every page is its own group: all of [first, last] becomes busy, so its empty
   * bits are cleared in one sweep (clearing a clear bit is harmless); only the boundary pages,
   * which other blocks may share, decide how many pages were empty before.
   */
  private occupyPages(first: number, last: number): void {
    const live = this.live;
    let newlyBusy = live[first]!++ === 0 ? 1 : 0;
    if (last > first) {
      newlyBusy += last - first - 1;
      if (live[last]!++ === 0) newlyBusy++;
    }
    setBitRange(this.emptyBits, first, last, false);
    this.emptyMappedPages -= newlyBusy;
    this.emptyGroupPages -= newlyBusy;
  }

  /**
   * vacate() where every page is its own group (see occupyPages): a boundary page empties as any
   * group does (markEmpty); the inside, which no other block touches, in one sweep.
   */
  private vacatePages(first: number, last: number): void {
    const live = this.live;
    if (--live[first]! === 0) {
      this.emptyMappedPages++;
      this.markEmpty(first);
    }
    if (last === first) return;
    if (last > first + 1) {
      const inside = last - first - 1;
      this.emptyMappedPages += inside;
      this.emptyGroupPages += inside;
      setBitRange(this.emptyBits, first + 1, last - 1, true);
      if (this.agesTracked) this.emptySince.fill(this.epoch, first + 1, last);
      // A hint that may run high: releaseEmpty lowers it past words that are empty.
      if ((last - 1) >>> 5 > this.emptyWordMax) this.emptyWordMax = (last - 1) >>> 5;
    }
    if (--live[last]! === 0) {
      this.emptyMappedPages++;
      this.markEmpty(last);
    }
  }

  /**
   * occupy() where allocations span several pages. Blocks never overlap, so the pages strictly
   * inside this one are empty now and only its boundary pages may be shared: those are counted one
   * by one (`live`), the inside group by group.
   */
  private occupyGroups(first: number, last: number): void {
    this.touch(first);
    if (last > first) {
      if (last > first + 1) this.fillBusy(first + 1, last - 1);
      this.touch(last);
    }
  }

  /** vacate() where allocations span several pages (see occupyGroups). */
  private vacateGroups(first: number, last: number): void {
    this.untouch(first);
    if (last > first) {
      if (last > first + 1) this.fillEmpty(first + 1, last - 1);
      this.untouch(last);
    }
  }

  /** One more block touches mapped page p (multi-page groups). */
  private touch(p: number): void {
    if (this.live[p]!++ !== 0) return;
    this.emptyMappedPages--;
    const g = this.groupOf[p]!;
    if (this.groupBusy[g]!++ === 0) {
      this.emptyGroupPages -= this.groupPages[g]!;
      this.emptyBits[g >>> 5]! &= ~(1 << (g & 31));
    }
  }

  /** One block fewer touches page p (multi-page groups). */
  private untouch(p: number): void {
    if (--this.live[p]! !== 0) return;
    this.emptyMappedPages++;
    const g = this.groupOf[p]!;
    if (--this.groupBusy[g]! === 0) this.markEmpty(g);
  }

  /**
   * Pages [a, b], mapped and empty, become busy: the inside of one block. No other block can touch
   * them while it lives, so `live` stays 0 there (it counts blocks at their boundary pages) and only
   * the group counts change, group by group.
   */
  private fillBusy(a: number, b: number): void {
    this.emptyMappedPages -= b - a + 1;
    for (let p = a; p <= b; ) {
      const g = this.groupOf[p]!;
      const end = Math.min(b + 1, g + this.groupPages[g]!);
      if (this.groupBusy[g] === 0) {
        this.emptyGroupPages -= this.groupPages[g]!;
        this.emptyBits[g >>> 5]! &= ~(1 << (g & 31));
      }
      this.groupBusy[g]! += end - p;
      p = end;
    }
  }

  /** Pages [a, b], the inside of one block (see fillBusy), become empty. */
  private fillEmpty(a: number, b: number): void {
    this.emptyMappedPages += b - a + 1;
    for (let p = a; p <= b; ) {
      const g = this.groupOf[p]!;
      const end = Math.min(b + 1, g + this.groupPages[g]!);
      this.groupBusy[g]! -= end - p;
      if (this.groupBusy[g] === 0) this.markEmpty(g);
      p = end;
    }
  }

  /** Pages that may be mapped without swapping: the high-water mark, or the touched peak plus slack. */
  private allowancePages(): number {
    return Math.max(this.highWaterPages, Math.ceil(this.peakTouchedPages * (1 + this.highWaterSlack)));
  }

  /**
   * Maps every unmapped run of [first, last], one device call each; swaps empty groups out first
   * if that would lift reserved memory above the allowance.
   */
  private mapFor(first: number, last: number): void {
    const groupOf = this.groupOf;
    let needed = 0;
    for (let p = first; p <= last; p++) if (groupOf[p]! < 0) needed++;
    // The mark never rises past limitBytes, so neither the slack nor the swap budget lets mapping
    // go there: what would exceed the limit is swapped out now, rather than through the pool's OOM
    // recovery (which flushes caches, waits for other streams' frees and unmaps every empty group).
    const limitPages = Math.floor(this.limitBytes / this.pageBytes);
    const over = this.mappedPages + needed - Math.min(this.allowancePages(), limitPages);
    if (over > 0 && this.emptyGroupPages > 0) {
      if (this.swapsSinceRaise < this.swapsPerRaise || this.emptyGroupPages >= this.swapAlwaysPages) {
        this.releaseEmpty(over, first, last);
        this.swapsSinceRaise++;
      } else {
        this.swapsSinceRaise = 0; // let the mark rise this once, up to the limit
        const overLimit = this.mappedPages + needed - limitPages;
        if (overLimit > 0) this.releaseEmpty(overLimit, first, last);
      }
    }
    if ((this.mappedPages + needed) * this.pageBytes > this.limitBytes) {
      throw new DeviceOutOfMemoryError(
        'map',
        needed * this.pageBytes,
        `the pool's limitBytes (${this.limitBytes}) would be exceeded`,
      );
    }
    const rising = this.mappedPages + needed > this.highWaterPages;
    for (let p = first; p <= last; p++) {
      if (groupOf[p]! >= 0) continue;
      let end = p + 1;
      while (end <= last && groupOf[end]! < 0) end++;
      const ahead = end > last && rising ? this.mapAheadEnd(end, needed) : end;
      if (ahead > end && this.tryMapRun(p, ahead)) end = ahead;
      else this.mapRun(p, end);
      p = end;
    }
    if (this.mappedPages > this.highWaterPages) this.highWaterPages = this.mappedPages;
  }

  /**
   * Where the last run of a block that lifts the high-water mark may end (`end`: one past the
   * block's last page): up to its allocation window's end, over unmapped pages, as far as
   * mapAheadFraction of the touched pages allows once the block is placed, and within limitBytes.
   */
  private mapAheadEnd(end: number, needed: number): number {
    if (this.mapAheadFraction <= 0) return end;
    const touchedAfter = this.mappedPages - this.emptyMappedPages + needed;
    const roomPages = Math.floor(touchedAfter * this.mapAheadFraction) - this.emptyMappedPages;
    const limitPages = Math.floor(this.limitBytes / this.pageBytes) - this.mappedPages - needed;
    const windowEnd = end - 1 - ((end - 1) % this.groupWindow) + this.groupWindow;
    const stop = Math.min(windowEnd, this.groupOf.length, end + Math.min(roomPages, limitPages));
    let extended = end;
    while (extended < stop && this.groupOf[extended]! < 0) extended++;
    return extended;
  }

  /** mapRun, but false where the device lacks memory: pages mapped ahead are never worth an OOM. */
  private tryMapRun(start: number, end: number): boolean {
    try {
      this.mapRun(start, end);
      return true;
    } catch (error) {
      if (isDeviceRefusal(error)) return false;
      throw error;
    }
  }

  /** One device call for [start, end); its pages form one group ('run' devices) or one each. */
  private mapRun(start: number, end: number): void {
    // A refusal here leaves the runs mapped so far as empty groups: still accounted for.
    this.device.map(this.range, start * this.pageBytes, (end - start) * this.pageBytes);
    this.calls++;
    const window = this.groupWindow;
    for (let q = start; q < end; q++) {
      const g = Math.max(start, q - (q % window));
      this.groupOf[q] = g;
      if (g === q) {
        this.groupPages[q] = Math.min(end, q - (q % window) + window) - q;
        this.groupBusy[q] = 0;
        this.markEmpty(q);
      }
    }
    setBitRange(this.mappedBits, start, end - 1, true);
    this.mappedPages += end - start;
    this.emptyMappedPages += end - start;
  }

  private markEmpty(g: number): void {
    this.emptyGroupPages += this.groupPages[g]!;
    this.emptyBits[g >>> 5]! |= 1 << (g & 31);
    this.emptySince[g] = this.epoch;
    if (g >>> 5 > this.emptyWordMax) this.emptyWordMax = g >>> 5;
  }

  /**
   * Unmaps empty groups, highest addresses first, until at least `count` pages are gone (or none
   * is left), sparing groups that touch [spareFirst, spareLast]; the first group that would take the
   * total past `mostPages` stops it; adjacent groups go in one call. Returns the bytes unmapped.
   */
  private releaseEmpty(
    count: number,
    spareFirst: number,
    spareLast: number,
    mostPages = Number.POSITIVE_INFINITY,
  ): number {
    const bits = this.emptyBits;
    let remaining = count;
    let allowed = mostPages;
    let released = 0;
    let runStart = -1; // the run being collected grows downward: [runStart, runEnd)
    let runEnd = -1;
    let w = this.emptyWordMax;
    // Lower the hint past words that are empty now.
    while (w >= 0 && bits[w] === 0) w--;
    this.emptyWordMax = w;
    for (; w >= 0 && remaining > 0; w--) {
      let word = bits[w]!;
      while (word !== 0 && remaining > 0) {
        const bit = 31 - Math.clz32(word);
        word &= ~(1 << bit);
        const g = (w << 5) | bit;
        const length = this.groupPages[g]!;
        if (g <= spareLast && g + length - 1 >= spareFirst) continue;
        if (length > allowed) {
          // This group stays, so the lower ones do too: the empty pages kept (the floor) are then
          // the lowest, where placement looks first, not whatever groups happened to fit.
          remaining = 0;
          break;
        }
        allowed -= length;
        if (runStart === g + length) {
          runStart = g;
        } else {
          if (runStart >= 0) released += this.unmapGroups(runStart, runEnd - runStart);
          runStart = g;
          runEnd = g + length;
        }
        remaining -= length;
      }
    }
    if (runStart >= 0) released += this.unmapGroups(runStart, runEnd - runStart);
    return released;
  }

  /** Unmaps [first, first + count): whole empty groups, adjacent. */
  private unmapGroups(first: number, count: number): number {
    try {
      this.device.unmap(this.range, first * this.pageBytes, count * this.pageBytes);
    } catch (error) {
      throw new DeviceError('unmap', 'the device refused to unmap empty pages', { cause: error });
    }
    for (let q = first; q < first + count; q++) {
      if (this.groupOf[q] === q) {
        this.emptyGroupPages -= this.groupPages[q]!;
        this.emptyBits[q >>> 5]! &= ~(1 << (q & 31));
      }
      this.groupOf[q] = -1;
    }
    setBitRange(this.mappedBits, first, first + count - 1, false);
    this.mappedPages -= count;
    this.emptyMappedPages -= count;
    return count * this.pageBytes;
  }
}

/** Bits lo..hi (0 ≤ lo ≤ hi ≤ 31) of a word. */
function wordMask(lo: number, hi: number): number {
  return ((0xffffffff >>> (31 - (hi - lo))) << lo) | 0;
}

/** Sets or clears bits [a, b] of a bitmap, a word at a time. */
function setBitRange(bits: Int32Array, a: number, b: number, on: boolean): void {
  for (let w = a >>> 5; w <= b >>> 5; w++) {
    const mask = wordMask(w === a >>> 5 ? a & 31 : 0, w === b >>> 5 ? b & 31 : 31);
    if (on) bits[w]! |= mask;
    else bits[w]! &= ~mask;
  }
}
