/**
 * SegmentBacking: device memory as whole segments (cudaMalloc style), for devices without
 * virtual memory management and as a baseline. Each segment is its own arena; in pool space
 * segments are laid one after another with at least a one-page gap, so a policy can never merge
 * free space across two segments. Segment sizes follow PyTorch's caching allocator: 2 MiB for
 * requests up to 1 MiB, 20 MiB up to 10 MiB, else the request rounded up to 2 MiB.
 *
 * Segments that hold no occupied byte are kept (a cache) until `trim()` or OOM recovery.
 */
import type { ArenaRef, ArenaSnapshot, Backing } from './backing.js';
import type { Device, Segment } from './device.js';
import { DeviceError, DeviceOutOfMemoryError } from './errors.js';
import { POLICY_GRANULE_BYTES, type Policy } from './policies/policy.js';
import { alignUp, MiB } from './units.js';

export interface SegmentBackingOptions {
  device: Device;
  limitBytes: number;
}

interface SegmentArena extends ArenaRef {
  readonly segment: Segment;
  occupiedBlocks: number;
}

export class SegmentBacking implements Backing {
  readonly kind = 'segment';
  readonly pageBytes: number;
  private readonly device: Device;
  private readonly limitBytes: number;
  private policy: Policy | null = null;
  /** Sorted by start. */
  private arenas: SegmentArena[] = [];
  private nextStart = 0;
  private reserved = 0;
  private calls = 0;

  constructor(options: SegmentBackingOptions) {
    this.device = options.device;
    this.limitBytes = options.limitBytes;
    this.pageBytes = options.device.pageBytes;
  }

  get reservedBytes(): number {
    return this.reserved;
  }

  get deviceCalls(): number {
    return this.calls;
  }

  attach(policy: Policy): void {
    this.policy = policy;
  }

  grow(sizeBytes: number, alignmentBytes: number): boolean {
    // Room to align inside the segment: its device address may be aligned to no more than the granule.
    const need = sizeBytes + (alignmentBytes > POLICY_GRANULE_BYTES ? alignmentBytes : 0);
    let bytes = need <= 1 * MiB ? 2 * MiB : need <= 10 * MiB ? 20 * MiB : alignUp(need, 2 * MiB);
    // Near the limit the rounded-up segment may not fit although the block does (a 6 MiB block in
    // an empty 16 MiB pool): then ask for just what is needed.
    if (this.reserved + bytes > this.limitBytes) bytes = alignUp(need, this.pageBytes);
    if (this.reserved + bytes > this.limitBytes) {
      throw new DeviceOutOfMemoryError(
        'allocateSegment',
        bytes,
        `the pool's limitBytes (${this.limitBytes}) would be exceeded`,
      );
    }
    const segment = this.device.allocateSegment(bytes);
    this.calls++;
    // Devices align segments to less than a page (cudaMalloc promises 256 bytes), so the segment
    // starts in pool space at its device address modulo the page: an alignment the policy gives in
    // pool space (up to a page) then holds for the block's device address too.
    const start = this.nextStart + Number(segment.base % BigInt(this.pageBytes));
    const arena: SegmentArena = {
      id: segment.id,
      base: segment.base,
      start,
      bytes,
      segment,
      occupiedBlocks: 0,
    };
    this.nextStart = alignUp(start + bytes, this.pageBytes) + this.pageBytes;
    this.arenas.push(arena);
    this.reserved += bytes;
    this.policy!.addRange(arena.start, bytes);
    return true;
  }

  occupy(address: number): void {
    this.arenaOf(address).occupiedBlocks++;
  }

  vacate(address: number): void {
    this.arenaOf(address).occupiedBlocks--;
  }

  trim(): number {
    let released = 0;
    let refused: unknown;
    const kept: SegmentArena[] = [];
    for (const arena of this.arenas) {
      if (arena.occupiedBlocks === 0 && this.policy!.removeRange(arena.start, arena.bytes)) {
        try {
          this.device.freeSegment(arena.segment);
        } catch (error) {
          // Refused: the segment stays, free space again, and the other segments still go back.
          this.policy!.addRange(arena.start, arena.bytes);
          kept.push(arena);
          refused ??= error;
          continue;
        }
        this.reserved -= arena.bytes;
        released += arena.bytes;
      } else {
        kept.push(arena);
      }
    }
    this.arenas = kept;
    if (refused !== undefined) {
      throw new DeviceError('freeSegment', 'the device refused to free an empty segment', { cause: refused });
    }
    return released;
  }

  arenaOf(address: number): SegmentArena {
    const arenas = this.arenas;
    let lo = 0;
    let hi = arenas.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (arenas[mid]!.start <= address) lo = mid;
      else hi = mid - 1;
    }
    return arenas[lo]!;
  }

  snapshot(): ArenaSnapshot[] {
    return this.arenas.map((a) => ({
      id: a.id,
      kind: 'segment' as const,
      base: `0x${a.base.toString(16)}`,
      start: a.start,
      bytes: a.bytes,
      pageBytes: this.pageBytes,
      mappedBytes: a.bytes,
      mappedRuns: [[0, Math.ceil(a.bytes / this.pageBytes)]],
    }));
  }

  destroy(): void {
    // Every segment, even after one is refused: those refused stay held (and in reservedBytes),
    // so calling destroy() again finishes.
    let refused: unknown;
    const kept: SegmentArena[] = [];
    for (const arena of this.arenas) {
      try {
        this.device.freeSegment(arena.segment);
        this.reserved -= arena.bytes;
      } catch (error) {
        refused ??= error;
        kept.push(arena);
      }
    }
    this.arenas = kept;
    if (refused !== undefined) {
      throw new DeviceError(
        'freeSegment',
        `the device refused to free ${this.reserved} bytes of segments; destroy() again to retry`,
        { cause: refused },
      );
    }
  }
}
