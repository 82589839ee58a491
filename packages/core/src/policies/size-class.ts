/**
 * sizeClass: segregated size classes for small blocks. Requests up to MAX_SMALL_BYTES (8 KiB)
 * are rounded to a class (multiples of 256 B) and served from slabs: SLAB_BYTES (64 KiB) runs,
 * taken from an inner best-fit policy and cut into equal objects. Small blocks of one size then sit
 * side by side instead of scattering through the arena, so they touch few pages; a slab goes back
 * to the inner policy once empty (one empty slab per class is kept, so a class that breathes does
 * not churn). Larger requests go straight to the inner best fit.
 *
 * Slots: this policy has its own slot numbers; each says whether it is a small object
 * (slab + index) or a large block (an inner slot). Invariant: a slab's used count equals its
 * objects not on its free stack; a slab is on its class's partial list iff it has a free object.
 */
import { grown } from '../typed-arrays.js';
import { BestFitPolicy } from './best-fit.js';
import { POLICY_GRANULE_BYTES, type Policy } from './policy.js';

export const MAX_SMALL_BYTES = 8 * 1024;
export const SLAB_BYTES = 64 * 1024;
const CLASSES = MAX_SMALL_BYTES / POLICY_GRANULE_BYTES + 1;
const MAX_OBJECTS = SLAB_BYTES / POLICY_GRANULE_BYTES;
const KIND_FREE = 0;
const KIND_LARGE = 1;
const KIND_SMALL = 2;

export class SizeClassPolicy implements Policy {
  readonly name = 'sizeClass';
  readonly cachesBlocks = false;
  private readonly inner: Policy;

  // Slots.
  private slotKind = new Uint8Array(1024);
  private slotRef = new Int32Array(1024);
  private slotIndex = new Int32Array(1024);
  private freeSlots: number[] = [];
  private nextSlot = 0;

  // Slabs (struct of arrays, indexed by slab id).
  private slabBase = new Float64Array(64);
  private slabClass = new Int32Array(64);
  private slabUsed = new Int32Array(64);
  private slabInner = new Int32Array(64);
  private slabFree = new Int32Array(64 * MAX_OBJECTS);
  private slabFreeCount = new Int32Array(64);
  private freeSlabIds: number[] = [];
  private nextSlab = 0;
  /** Per class: slabs with at least one free object. */
  private readonly partial: number[][] = Array.from({ length: CLASSES }, () => []);
  /** Bytes in slab objects not handed out (counted as free). */
  private slabFreeBytes = 0;

  /** `inner` places large blocks and slabs (default: best fit). */
  constructor(inner: Policy = new BestFitPolicy()) {
    this.inner = inner;
  }

  addRange(address: number, bytes: number): void {
    this.inner.addRange(address, bytes);
  }

  removeRange(address: number, bytes: number): boolean {
    return this.inner.removeRange(address, bytes);
  }

  allocate(sizeBytes: number, alignmentBytes: number, key: string | undefined): number {
    if (sizeBytes > MAX_SMALL_BYTES || alignmentBytes > POLICY_GRANULE_BYTES) {
      const innerSlot = this.inner.allocate(sizeBytes, alignmentBytes, key);
      if (innerSlot < 0) return -1;
      const slot = this.newSlot();
      this.slotKind[slot] = KIND_LARGE;
      this.slotRef[slot] = innerSlot;
      return slot;
    }
    const cls = sizeBytes / POLICY_GRANULE_BYTES;
    const list = this.partial[cls]!;
    const slab = list.length > 0 ? list[list.length - 1]! : this.newSlab(cls);
    if (slab < 0) return -1;
    const n = --this.slabFreeCount[slab]!;
    const index = this.slabFree[slab * MAX_OBJECTS + n]!;
    this.slabUsed[slab]!++;
    if (n === 0) list.pop();
    this.slabFreeBytes -= sizeBytes;
    const slot = this.newSlot();
    this.slotKind[slot] = KIND_SMALL;
    this.slotRef[slot] = slab;
    this.slotIndex[slot] = index;
    return slot;
  }

  addressOf(slot: number): number {
    if (this.slotKind[slot] === KIND_SMALL) {
      const slab = this.slotRef[slot]!;
      return this.slabBase[slab]! + this.slotIndex[slot]! * this.slabClass[slab]! * POLICY_GRANULE_BYTES;
    }
    return this.inner.addressOf(this.slotRef[slot]!);
  }

  sizeOf(slot: number): number {
    if (this.slotKind[slot] === KIND_SMALL)
      return this.slabClass[this.slotRef[slot]!]! * POLICY_GRANULE_BYTES;
    return this.inner.sizeOf(this.slotRef[slot]!);
  }

  free(slot: number): boolean {
    if (this.slotKind[slot] === KIND_LARGE) {
      this.inner.free(this.slotRef[slot]!);
    } else {
      const slab = this.slotRef[slot]!;
      const cls = this.slabClass[slab]!;
      const n = this.slabFreeCount[slab]!;
      this.slabFree[slab * MAX_OBJECTS + n] = this.slotIndex[slot]!;
      this.slabFreeCount[slab] = n + 1;
      this.slabUsed[slab]!--;
      this.slabFreeBytes += cls * POLICY_GRANULE_BYTES;
      const list = this.partial[cls]!;
      if (n === 0) list.push(slab);
      if (this.slabUsed[slab] === 0 && list.length > 1) this.releaseSlab(slab, list);
    }
    this.slotKind[slot] = KIND_FREE;
    this.freeSlots.push(slot);
    return true;
  }

  flush(_visit: (slot: number, address: number, bytes: number) => void): void {
    // Return every empty slab, so trim() can unmap its pages.
    for (const list of this.partial) {
      for (let i = list.length - 1; i >= 0; i--) {
        const slab = list[i]!;
        if (this.slabUsed[slab] === 0) this.releaseSlab(slab, list);
      }
    }
  }

  freeBytes(): number {
    return this.inner.freeBytes() + this.slabFreeBytes;
  }

  largestFreeBytes(): number {
    return this.inner.largestFreeBytes();
  }

  checkInvariants(): string | undefined {
    const inner = this.inner.checkInvariants?.();
    return inner === undefined ? undefined : `inner: ${inner}`;
  }

  forEachFree(visit: (address: number, bytes: number) => void): void {
    this.inner.forEachFree(visit);
    for (let cls = 1; cls < CLASSES; cls++) {
      for (const slab of this.partial[cls]!) {
        const objectBytes = cls * POLICY_GRANULE_BYTES;
        for (let i = 0; i < this.slabFreeCount[slab]!; i++) {
          visit(this.slabBase[slab]! + this.slabFree[slab * MAX_OBJECTS + i]! * objectBytes, objectBytes);
        }
      }
    }
  }

  private newSlab(cls: number): number {
    const objectBytes = cls * POLICY_GRANULE_BYTES;
    const objects = Math.floor(SLAB_BYTES / objectBytes);
    const innerSlot = this.inner.allocate(objects * objectBytes, POLICY_GRANULE_BYTES, undefined);
    if (innerSlot < 0) return -1;
    const slab = this.freeSlabIds.length > 0 ? this.freeSlabIds.pop()! : this.nextSlab++;
    if (slab >= this.slabBase.length) this.growSlabs();
    this.slabBase[slab] = this.inner.addressOf(innerSlot);
    this.slabClass[slab] = cls;
    this.slabUsed[slab] = 0;
    this.slabInner[slab] = innerSlot;
    // Free stack holds indices so that the lowest index is handed out first.
    for (let i = 0; i < objects; i++) this.slabFree[slab * MAX_OBJECTS + i] = objects - 1 - i;
    this.slabFreeCount[slab] = objects;
    this.slabFreeBytes += objects * objectBytes;
    this.partial[cls]!.push(slab);
    return slab;
  }

  private releaseSlab(slab: number, list: number[]): void {
    const at = list.indexOf(slab);
    if (at >= 0) list.splice(at, 1);
    this.slabFreeBytes -= this.slabFreeCount[slab]! * this.slabClass[slab]! * POLICY_GRANULE_BYTES;
    this.slabFreeCount[slab] = 0;
    this.inner.free(this.slabInner[slab]!);
    this.freeSlabIds.push(slab);
  }

  private newSlot(): number {
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.nextSlot++;
    if (slot >= this.slotKind.length) {
      const n = this.slotKind.length * 2;
      this.slotKind = grown(this.slotKind, n);
      this.slotRef = grown(this.slotRef, n);
      this.slotIndex = grown(this.slotIndex, n);
    }
    return slot;
  }

  private growSlabs(): void {
    const n = this.slabBase.length * 2;
    this.slabBase = grown(this.slabBase, n);
    this.slabClass = grown(this.slabClass, n);
    this.slabUsed = grown(this.slabUsed, n);
    this.slabInner = grown(this.slabInner, n);
    this.slabFreeCount = grown(this.slabFreeCount, n);
    this.slabFree = grown(this.slabFree, n * MAX_OBJECTS);
  }
}
