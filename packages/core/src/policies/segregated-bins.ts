/**
 * SegregatedBins: the machinery that TLSF and best fit share. Free blocks sit in bins indexed by
 * (first level = log2 of size, second level = the next SL_LOG2 bits); two bitmaps find the
 * smallest non-empty bin at or above a size in a few bit operations. Blocks split on allocate and
 * merge with free physical neighbours on free, at once. Subclasses decide which free block a
 * request takes (`findFit`).
 *
 * Records live in typed arrays (struct of arrays) so the hot path allocates no objects. A free
 * block keeps its record through splits and merges (the placed part, or the freed block, is the
 * record that comes and goes), so a large free block that small requests nibble at stays in its
 * bin without any list update: a pool's acquire+release pair of an uncached size took ~120 ns and
 * now ~105 ns here. Bins stay LIFO, as TLSF needs: a record whose bin changes, or that was not its
 * bin's head, moves to the head.
 * Invariants (checkInvariants): physically adjacent free blocks never exist (they are merged at
 * once); each free block is in exactly the bin of its size; freeTotal is the sum of free sizes.
 */
import { ArgumentRangeError } from '../errors.js';
import { grown } from '../typed-arrays.js';
import { log2Floor } from '../units.js';
import { POLICY_GRANULE_BYTES, type Policy } from './policy.js';

export const SL_LOG2 = 5;
export const SL_COUNT = 1 << SL_LOG2;
/** Sizes up to 2^48 bytes: 2^40 granules, first levels 0..36. */
export const FL_COUNT = 37;
export const NONE = -1;
const UNUSED = 0;
const USED = 1;
const FREE = 2;

/** The smallest size that bin (fl, sl) holds: the inverse of mapInsert. */
export function binMinBytes(fl: number, sl: number): number {
  const units = fl === 0 ? sl : (SL_COUNT + sl) * 2 ** (fl - 1);
  return units * POLICY_GRANULE_BYTES;
}

function ctz32(x: number): number {
  return 31 - Math.clz32(x & -x);
}

export abstract class SegregatedBins implements Policy {
  abstract readonly name: string;
  readonly cachesBlocks: boolean = false;

  private capacity = 0;
  protected addr = new Float64Array(0);
  protected size = new Float64Array(0);
  private prevPhys = new Int32Array(0);
  private nextPhys = new Int32Array(0);
  private prevFree = new Int32Array(0);
  protected nextFree = new Int32Array(0);
  private state = new Uint8Array(0);
  /** Bin index of each free record, so removal needs no size-to-bin mapping. */
  private binOf = new Int32Array(0);
  protected readonly heads = new Int32Array(FL_COUNT * SL_COUNT).fill(NONE);
  protected readonly slBitmap = new Int32Array(FL_COUNT);
  private flBitmapLow = 0;
  private flBitmapHigh = 0;
  private recycled: number[] = [];
  private nextRecord = 0;
  private freeTotal = 0;
  // Bin index results, kept in fields to avoid allocating a tuple per call.
  protected fl = 0;
  protected sl = 0;

  constructor(initialRecords = 1024) {
    this.grow(initialRecords);
  }

  addRange(address: number, bytes: number): void {
    if (bytes < POLICY_GRANULE_BYTES || bytes % POLICY_GRANULE_BYTES !== 0) {
      throw new ArgumentRangeError('bytes', `must be a positive multiple of ${POLICY_GRANULE_BYTES}`, bytes);
    }
    const r = this.newRecord();
    this.addr[r] = address;
    this.size[r] = bytes;
    this.prevPhys[r] = NONE;
    this.nextPhys[r] = NONE;
    this.state[r] = FREE;
    this.freeTotal += bytes;
    this.insertFree(r);
  }

  removeRange(address: number, bytes: number): boolean {
    for (let r = 0; r < this.nextRecord; r++) {
      if (
        this.state[r] === FREE &&
        this.addr[r] === address &&
        this.size[r] === bytes &&
        this.prevPhys[r] === NONE &&
        this.nextPhys[r] === NONE
      ) {
        this.removeFree(r);
        this.freeTotal -= bytes;
        this.recycle(r);
        return true;
      }
    }
    return false;
  }

  allocate(sizeBytes: number, alignmentBytes: number, _key?: string): number {
    if (alignmentBytes > POLICY_GRANULE_BYTES) return this.allocateAligned(sizeBytes, alignmentBytes);
    const b = this.findFit(sizeBytes);
    return b === NONE ? NONE : this.takeFront(b, sizeBytes);
  }

  /** allocate() with an alignment above the granule: the bytes before the aligned start stay free. */
  private allocateAligned(sizeBytes: number, alignmentBytes: number): number {
    const b = this.findFit(sizeBytes + alignmentBytes - POLICY_GRANULE_BYTES);
    if (b === NONE) return NONE;
    const front = Math.ceil(this.addr[b]! / alignmentBytes) * alignmentBytes - this.addr[b]!;
    if (front > 0) {
      // Its physical predecessor is in use (free neighbours merge), so the front stays a block.
      const f = this.splitFront(b, front);
      this.state[f] = FREE;
      this.insertFree(f);
    }
    return this.takeFront(b, sizeBytes);
  }

  /**
   * Places `sizeBytes` at the start of listed free record b: all of b if little would be left,
   * else a new record for the front, b staying free as the remainder — in its bin when its bin
   * does not change (a large free block split by small requests: no list is touched).
   */
  private takeFront(b: number, sizeBytes: number): number {
    if (this.size[b]! - sizeBytes < POLICY_GRANULE_BYTES) {
      this.removeFree(b);
      this.state[b] = USED;
      this.freeTotal -= this.size[b]!;
      return b;
    }
    const u = this.splitFront(b, sizeBytes);
    this.state[u] = USED;
    this.freeTotal -= sizeBytes;
    this.rebin(b);
    return u;
  }

  /** A new record for the first `bytes` of record b, linked before it; b keeps the rest. */
  private splitFront(b: number, bytes: number): number {
    const f = this.newRecord(); // may grow the arrays: read them after this
    const start = this.addr[b]!;
    const prev = this.prevPhys[b]!;
    this.addr[f] = start;
    this.size[f] = bytes;
    this.prevPhys[f] = prev;
    this.nextPhys[f] = b;
    if (prev !== NONE) this.nextPhys[prev] = f;
    this.prevPhys[b] = f;
    this.addr[b] = start + bytes;
    this.size[b]! -= bytes;
    return f;
  }

  addressOf(slot: number): number {
    return this.addr[slot]!;
  }

  sizeOf(slot: number): number {
    return this.size[slot]!;
  }

  free(slot: number): boolean {
    let b = slot;
    this.state[b] = FREE;
    this.freeTotal += this.size[b]!;
    // The merged block keeps the record of a free neighbour where there is one: that record is in
    // a bin list already, and stays there when the bin does not change (see rebin).
    let listed = false;
    const prev = this.prevPhys[b]!;
    if (prev !== NONE && this.state[prev] === FREE) {
      this.size[prev]! += this.size[b]!;
      const next = this.nextPhys[b]!;
      this.nextPhys[prev] = next;
      if (next !== NONE) this.prevPhys[next] = prev;
      this.recycle(b);
      b = prev;
      listed = true;
    }
    const next = this.nextPhys[b]!;
    if (next !== NONE && this.state[next] === FREE) {
      const after = this.nextPhys[next]!;
      if (listed) {
        this.removeFree(next);
        this.size[b]! += this.size[next]!;
        this.nextPhys[b] = after;
        if (after !== NONE) this.prevPhys[after] = b;
        this.recycle(next);
      } else {
        // b is in no list: next absorbs it.
        const before = this.prevPhys[b]!;
        this.addr[next] = this.addr[b]!;
        this.size[next]! += this.size[b]!;
        this.prevPhys[next] = before;
        if (before !== NONE) this.nextPhys[before] = next;
        this.recycle(b);
        b = next;
        listed = true;
      }
    }
    if (listed) this.rebin(b);
    else this.insertFree(b);
    return true;
  }

  flush(_visit: (slot: number, address: number, bytes: number) => void): void {}

  freeBytes(): number {
    return this.freeTotal;
  }

  largestFreeBytes(): number {
    let largest = 0;
    for (let fl = FL_COUNT - 1; fl >= 0; fl--) {
      if (this.slBitmap[fl] === 0) continue;
      for (let sl = SL_COUNT - 1; sl >= 0; sl--) {
        for (let r = this.heads[fl * SL_COUNT + sl]!; r !== NONE; r = this.nextFree[r]!) {
          if (this.size[r]! > largest) largest = this.size[r]!;
        }
        if (largest > 0) return largest;
      }
    }
    return largest;
  }

  forEachFree(visit: (address: number, bytes: number) => void): void {
    for (let r = 0; r < this.nextRecord; r++) if (this.state[r] === FREE) visit(this.addr[r]!, this.size[r]!);
  }

  /**
   * Recounts the books: every free record is listed once, in the bin of its size (and binOf says
   * so); lists link both ways; the bitmaps mark exactly the non-empty bins; physical neighbours
   * link both ways, touch, and are never both free; freeTotal is the sum of free sizes.
   */
  checkInvariants(): string | undefined {
    const listed = new Uint8Array(this.nextRecord);
    let free = 0;
    for (let fl = 0; fl < FL_COUNT; fl++) {
      let bits = 0;
      for (let sl = 0; sl < SL_COUNT; sl++) {
        const bin = fl * SL_COUNT + sl;
        let prev = NONE;
        for (let r = this.heads[bin]!; r !== NONE; r = this.nextFree[r]!) {
          if (this.state[r] !== FREE) return `record ${r} in bin ${bin} is not free`;
          if (listed[r] === 1) return `record ${r} is listed twice`;
          listed[r] = 1;
          if (this.prevFree[r] !== prev) return `record ${r}: prevFree ${this.prevFree[r]}, expected ${prev}`;
          if (this.binOf[r] !== bin) return `record ${r} in bin ${bin} says bin ${this.binOf[r]}`;
          this.mapInsert(this.size[r]!);
          if (this.fl * SL_COUNT + this.sl !== bin)
            return `record ${r} of ${this.size[r]} bytes is in bin ${bin}`;
          free += this.size[r]!;
          prev = r;
        }
        if (this.heads[bin] !== NONE) bits |= 1 << sl;
      }
      if (this.slBitmap[fl] !== bits) return `second-level bitmap ${fl} is stale`;
      const flBit = fl < 32 ? (this.flBitmapLow >>> fl) & 1 : (this.flBitmapHigh >>> (fl - 32)) & 1;
      if (flBit !== (bits !== 0 ? 1 : 0)) return `first-level bit ${fl} is stale`;
    }
    for (let r = 0; r < this.nextRecord; r++) {
      if (this.state[r] === UNUSED) continue;
      if (this.state[r] === FREE && listed[r] !== 1) return `free record ${r} is in no bin`;
      const next = this.nextPhys[r]!;
      if (next === NONE) continue;
      if (this.prevPhys[next] !== r) return `records ${r} and ${next} do not link back`;
      if (this.addr[r]! + this.size[r]! !== this.addr[next])
        return `record ${r} does not end where ${next} starts`;
      if (this.state[r] === FREE && this.state[next] === FREE)
        return `free records ${r} and ${next} are adjacent`;
    }
    if (free !== this.freeTotal) return `free records sum to ${free}, counted ${this.freeTotal}`;
    return undefined;
  }

  /** Sets this.fl / this.sl to the bin of a block of `bytes`. */
  protected mapInsert(bytes: number): void {
    const units = bytes / POLICY_GRANULE_BYTES;
    if (units < SL_COUNT) {
      this.fl = 0;
      this.sl = units;
    } else if (units < 0x8000_0000) {
      // Integer fast path (blocks under 512 GiB).
      const log2 = 31 - Math.clz32(units);
      this.fl = log2 - (SL_LOG2 - 1);
      this.sl = (units >>> (log2 - SL_LOG2)) - SL_COUNT;
    } else {
      const log2 = log2Floor(units);
      this.fl = log2 - (SL_LOG2 - 1);
      this.sl = Math.floor(units / 2 ** (log2 - SL_LOG2)) - SL_COUNT;
    }
  }

  /** Returns a free record of at least `bytes`, or NONE. Must not modify anything. */
  protected abstract findFit(bytes: number): number;

  /** Index of the first non-empty bin at or after (fl, sl), or NONE. */
  protected firstNonEmpty(fl: number, sl: number): number {
    if (fl >= FL_COUNT) return NONE;
    let bits = sl < 32 ? this.slBitmap[fl]! & (~0 << sl) : 0;
    if (bits === 0) {
      const nextFl = this.firstFlFrom(fl + 1);
      if (nextFl === NONE) return NONE;
      fl = nextFl;
      bits = this.slBitmap[fl]!;
    }
    return fl * SL_COUNT + ctz32(bits);
  }

  private firstFlFrom(fl: number): number {
    if (fl < 32) {
      const low = fl === 0 ? this.flBitmapLow : this.flBitmapLow & (~0 << fl);
      if (low !== 0) return ctz32(low);
      if (this.flBitmapHigh !== 0) return 32 + ctz32(this.flBitmapHigh);
      return NONE;
    }
    const high = this.flBitmapHigh & (~0 << (fl - 32));
    return high !== 0 ? 32 + ctz32(high) : NONE;
  }

  private insertFree(r: number): void {
    this.mapInsert(this.size[r]!);
    this.insertFreeAt(r, this.fl, this.sl);
  }

  /** insertFree with the record's bin (fl, sl) known already. */
  private insertFreeAt(r: number, fl: number, sl: number): void {
    const bin = fl * SL_COUNT + sl;
    this.binOf[r] = bin;
    const head = this.heads[bin]!;
    this.prevFree[r] = NONE;
    this.nextFree[r] = head;
    if (head !== NONE) this.prevFree[head] = r;
    this.heads[bin] = r;
    this.slBitmap[fl]! |= 1 << sl;
    if (fl < 32) this.flBitmapLow |= 1 << fl;
    else this.flBitmapHigh |= 1 << (fl - 32);
  }

  /**
   * A listed free record whose size changed: moved to the head of its (new) bin, as insertFree
   * would put it — unless it is that head already (a large free block that small requests nibble
   * at), which costs no list update. Bins are LIFO either way (TLSF takes a bin's head).
   */
  private rebin(r: number): void {
    this.mapInsert(this.size[r]!);
    const bin = this.fl * SL_COUNT + this.sl;
    if (bin === this.binOf[r] && this.heads[bin] === r) return;
    const fl = this.fl;
    const sl = this.sl;
    this.removeFree(r);
    this.insertFreeAt(r, fl, sl);
  }

  private removeFree(r: number): void {
    const prev = this.prevFree[r]!;
    const next = this.nextFree[r]!;
    if (next !== NONE) this.prevFree[next] = prev;
    if (prev !== NONE) {
      this.nextFree[prev] = next;
      return;
    }
    const bin = this.binOf[r]!;
    const fl = (bin / SL_COUNT) | 0;
    const sl = bin & (SL_COUNT - 1);
    this.heads[bin] = next;
    if (next === NONE) {
      this.slBitmap[fl]! &= ~(1 << sl);
      if (this.slBitmap[fl] === 0) {
        if (fl < 32) this.flBitmapLow &= ~(1 << fl);
        else this.flBitmapHigh &= ~(1 << (fl - 32));
      }
    }
  }

  private newRecord(): number {
    const r = this.recycled.length > 0 ? this.recycled.pop()! : this.nextRecord++;
    if (r >= this.capacity) this.grow(this.capacity * 2);
    return r;
  }

  private recycle(r: number): void {
    this.state[r] = UNUSED;
    this.recycled.push(r);
  }

  private grow(capacity: number): void {
    this.addr = grown(this.addr, capacity);
    this.size = grown(this.size, capacity);
    this.prevPhys = grown(this.prevPhys, capacity);
    this.nextPhys = grown(this.nextPhys, capacity);
    this.prevFree = grown(this.prevFree, capacity);
    this.nextFree = grown(this.nextFree, capacity);
    this.state = grown(this.state, capacity);
    this.binOf = grown(this.binOf, capacity);
    this.capacity = capacity;
  }
}
