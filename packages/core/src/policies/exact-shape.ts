/**
 * exactShape: the original design, kept honestly as the baseline. One FIFO of cached blocks per
 * (dtype, shape) — or per byte size for blocks acquired by size — holding at most
 * `maxPerBucket` (default 10) blocks. A request is served from its own bucket or not at all:
 * no splitting, no coalescing, no sharing between shapes. A released block goes back into its
 * bucket unless the bucket is full, in which case it is freed.
 *
 * Below the cache, fresh blocks come from a first-level allocator standing where the seed had
 * the framework's allocator (here a TLSF over the same arena), so the baseline differs from the
 * other policies only in what the seed's design decided: exact-key caching.
 */
import { ArgumentRangeError } from '../errors.js';
import type { Policy } from './policy.js';
import { TlsfPolicy } from './tlsf.js';

export interface ExactShapeOptions {
  maxPerBucket?: number;
}

export class ExactShapePolicy implements Policy {
  readonly name = 'exactShape';
  readonly cachesBlocks = true;
  private readonly upstream = new TlsfPolicy();
  private readonly buckets = new Map<string, number[]>();
  /** Bucket key of each slot the upstream handed out (live or cached). */
  private readonly keys: (string | undefined)[] = [];
  private readonly maxPerBucket: number;

  constructor(options: ExactShapeOptions = {}) {
    const maxPerBucket = options.maxPerBucket ?? 10;
    if (!Number.isSafeInteger(maxPerBucket) || maxPerBucket < 0) {
      throw new ArgumentRangeError('maxPerBucket', 'must be a non-negative integer', maxPerBucket);
    }
    this.maxPerBucket = maxPerBucket;
  }

  addRange(address: number, bytes: number): void {
    this.upstream.addRange(address, bytes);
  }

  removeRange(address: number, bytes: number): boolean {
    return this.upstream.removeRange(address, bytes);
  }

  allocate(sizeBytes: number, alignmentBytes: number, key: string | undefined): number {
    const k = key ?? `#${sizeBytes}`;
    const bucket = this.buckets.get(k);
    if (bucket !== undefined && bucket.length > 0) {
      for (let i = 0; i < bucket.length; i++) {
        const slot = bucket[i]!;
        if (this.upstream.addressOf(slot) % alignmentBytes === 0 && this.upstream.sizeOf(slot) >= sizeBytes) {
          bucket.splice(i, 1);
          return slot;
        }
      }
    }
    const slot = this.upstream.allocate(sizeBytes, alignmentBytes);
    if (slot >= 0) this.keys[slot] = k;
    return slot;
  }

  addressOf(slot: number): number {
    return this.upstream.addressOf(slot);
  }

  sizeOf(slot: number): number {
    return this.upstream.sizeOf(slot);
  }

  free(slot: number): boolean {
    const k = this.keys[slot]!;
    let bucket = this.buckets.get(k);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(k, bucket);
    }
    if (bucket.length < this.maxPerBucket) {
      bucket.push(slot);
      return false;
    }
    this.keys[slot] = undefined;
    return this.upstream.free(slot);
  }

  flush(visit: (slot: number, address: number, bytes: number) => void): void {
    for (const bucket of this.buckets.values()) {
      for (const slot of bucket) {
        visit(slot, this.upstream.addressOf(slot), this.upstream.sizeOf(slot));
        this.keys[slot] = undefined;
        this.upstream.free(slot);
      }
    }
    this.buckets.clear();
  }

  /** Bytes held in bucket caches: neither live nor free. */
  cachedBytes(): number {
    let sum = 0;
    for (const bucket of this.buckets.values()) for (const slot of bucket) sum += this.upstream.sizeOf(slot);
    return sum;
  }

  freeBytes(): number {
    return this.upstream.freeBytes();
  }

  largestFreeBytes(): number {
    return this.upstream.largestFreeBytes();
  }

  checkInvariants(): string | undefined {
    const upstream = this.upstream.checkInvariants();
    return upstream === undefined ? undefined : `upstream: ${upstream}`;
  }

  forEachFree(visit: (address: number, bytes: number) => void): void {
    this.upstream.forEachFree(visit);
  }
}
