/**
 * First-fit allocator of address ranges, used by the stand-in devices to hand out reserved ranges
 * and segments. Device calls are rare (the pool exists to make them rare), so a sorted array of
 * free runs is plenty. Invariant: free runs are sorted, disjoint and never adjacent (merged).
 */
export class AddressSpace {
  private readonly starts: number[] = [];
  private readonly lengths: number[] = [];

  constructor(readonly sizeBytes: number) {
    this.starts.push(0);
    this.lengths.push(sizeBytes);
  }

  /** Returns the offset of a run of `bytes` aligned to `alignmentBytes`, or -1. */
  take(bytes: number, alignmentBytes: number): number {
    for (let i = 0; i < this.starts.length; i++) {
      const start = this.starts[i]!;
      const length = this.lengths[i]!;
      const aligned = Math.ceil(start / alignmentBytes) * alignmentBytes;
      const end = start + length;
      if (aligned + bytes > end) continue;
      const before = aligned - start;
      const after = end - (aligned + bytes);
      if (before > 0 && after > 0) {
        this.lengths[i] = before;
        this.starts.splice(i + 1, 0, aligned + bytes);
        this.lengths.splice(i + 1, 0, after);
      } else if (before > 0) {
        this.lengths[i] = before;
      } else if (after > 0) {
        this.starts[i] = aligned + bytes;
        this.lengths[i] = after;
      } else {
        this.starts.splice(i, 1);
        this.lengths.splice(i, 1);
      }
      return aligned;
    }
    return -1;
  }

  /** Returns a run taken earlier. */
  give(offset: number, bytes: number): void {
    let i = 0;
    while (i < this.starts.length && this.starts[i]! < offset) i++;
    const prevEnd = i > 0 ? this.starts[i - 1]! + this.lengths[i - 1]! : -1;
    const nextStart = i < this.starts.length ? this.starts[i]! : -1;
    if (prevEnd > offset || (nextStart !== -1 && offset + bytes > nextStart)) {
      throw new RangeError(`AddressSpace.give: [${offset}, +${bytes}) overlaps free space`);
    }
    if (prevEnd === offset && nextStart === offset + bytes) {
      this.lengths[i - 1]! += bytes + this.lengths[i]!;
      this.starts.splice(i, 1);
      this.lengths.splice(i, 1);
    } else if (prevEnd === offset) {
      this.lengths[i - 1]! += bytes;
    } else if (nextStart === offset + bytes) {
      this.starts[i] = offset;
      this.lengths[i]! += bytes;
    } else {
      this.starts.splice(i, 0, offset);
      this.lengths.splice(i, 0, bytes);
    }
  }

  freeBytes(): number {
    let sum = 0;
    for (const length of this.lengths) sum += length;
    return sum;
  }
}
