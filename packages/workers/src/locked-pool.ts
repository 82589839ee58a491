/**
 * LockedSharedPool: the baseline the scaling benchmark compares slices against. One allocator
 * whose whole state lives in a SharedArrayBuffer, guarded by one lock, so every thread allocates
 * from the same books: power-of-two size classes (256 B … the arena), a free stack per class, and
 * a bump pointer for memory never used. No splitting, no coalescing; the arena is mapped once at
 * creation. It is deliberately simple: a fair "one lock-protected shared pool", not a product.
 *
 * Lock: Atomics.compareExchange(0 → 1) to take, Atomics.store(0) + notify to release; waiters
 * spin briefly then Atomics.wait (not allowed on the main thread in browsers; Node allows it).
 * Invariant: free stacks and the bump pointer change only while the lock is held.
 */
import {
  type AddressRange,
  ArgumentRangeError,
  type BlockLike,
  type Device,
  DoubleReleaseError,
  HostDevice,
  InvalidArgumentError,
  OutOfMemoryError,
  ReleasedBlockError,
} from '@gpupool/core';
import { canAdoptRanges, type DeviceShare, openSharedDevice, shareDevice } from './device-link.js';
import { UnshareableDeviceError } from './errors.js';
import { GRANULE_BYTES } from './layout.js';

// Shared words (int32 indices).
/** 0 free, 1 held, 2 held with waiters. compareExchange to take; exchange(0) + notify to release. */
const LK_LOCK = 0;
/** Next never-used granule (under the lock). */
const LK_BUMP = 1;
/** Counters (under the lock; read with Atomics.load for stats). */
const LK_LIVE_BLOCKS = 2;
const LK_ACQUIRES = 3;
const LK_CONTENDED = 4;
const LK_CLASS_HEADS = 8;
const CLASS_COUNT = 32;
const LK_HEADER_INT32S = LK_CLASS_HEADS + CLASS_COUNT;
const SPIN_LIMIT = 64;

export interface LockedSharedPoolHandle {
  readonly words: SharedArrayBuffer;
  readonly next: SharedArrayBuffer;
  readonly device: DeviceShare;
  readonly range: { readonly id: number; readonly base: bigint; readonly bytes: number };
}

export interface LockedBlock extends BlockLike, Disposable {
  readonly offset: number;
  release(): void;
}

export interface LockedSharedPoolStats {
  liveBlocks: number;
  acquires: number;
  /** Acquisitions of the lock that found it held. */
  contended: number;
  usedBytes: number;
  arenaBytes: number;
}

export class LockedSharedPool {
  readonly device: Device;
  readonly range: AddressRange;
  private readonly words: Int32Array;
  /** Per granule: next free block in its class stack (granule index), or -1. */
  private readonly next: Int32Array;
  private readonly handle: LockedSharedPoolHandle;
  private readonly creator: boolean;

  private constructor(handle: LockedSharedPoolHandle, device: Device, range: AddressRange, creator: boolean) {
    this.handle = handle;
    this.device = device;
    this.range = range;
    this.words = new Int32Array(handle.words);
    this.next = new Int32Array(handle.next);
    this.creator = creator;
  }

  static create(options: { device: Device; arenaBytes: number }): LockedSharedPool {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', 'must be an object { device, arenaBytes }', options);
    }
    const { device, arenaBytes } = options;
    if (typeof device !== 'object' || device === null || !device.vmm) {
      throw new InvalidArgumentError(
        'device',
        'must be a Device with vmm (HostDevice or CudaDevice)',
        device,
      );
    }
    if (
      !Number.isSafeInteger(arenaBytes) ||
      arenaBytes <= 0 ||
      arenaBytes % device.pageBytes !== 0 ||
      arenaBytes / GRANULE_BYTES > 2 ** 31 - 1
    ) {
      throw new ArgumentRangeError(
        'arenaBytes',
        `must be a positive multiple of the page size (${device.pageBytes}) below 512 GiB`,
        arenaBytes,
      );
    }
    // Before reserving: a device other threads cannot reach is refused with nothing left behind.
    const deviceShare = shareDevice(device);
    const range = device.reserve(arenaBytes);
    try {
      device.map(range, 0, arenaBytes);
    } catch (error) {
      device.releaseRange(range);
      throw error;
    }
    const words = new SharedArrayBuffer(4 * LK_HEADER_INT32S);
    const next = new SharedArrayBuffer(4 * (arenaBytes / GRANULE_BYTES));
    new Int32Array(words).fill(-1, LK_CLASS_HEADS);
    const handle: LockedSharedPoolHandle = {
      words,
      next,
      device: deviceShare,
      range: { id: range.id, base: range.base, bytes: range.bytes },
    };
    return new LockedSharedPool(handle, device, range, true);
  }

  /** Opens the pool in another thread (HostDevice; CudaDevice needs adoptRange). */
  static attach(handle: LockedSharedPoolHandle): LockedSharedPool {
    if (
      typeof handle !== 'object' ||
      handle === null ||
      !(handle.words instanceof SharedArrayBuffer) ||
      !(handle.next instanceof SharedArrayBuffer) ||
      typeof handle.device !== 'object' ||
      handle.device === null
    ) {
      throw new InvalidArgumentError('handle', 'must come from LockedSharedPool.share()', handle);
    }
    const device = openSharedDevice(handle.device);
    let range: AddressRange = Object.freeze({ ...handle.range });
    if (canAdoptRanges(device)) range = device.adoptRange(range);
    else if (!(device instanceof HostDevice))
      throw new UnshareableDeviceError(`'${device.kind}' device cannot adopt a range reserved elsewhere`);
    return new LockedSharedPool(handle, device, range, false);
  }

  share(): LockedSharedPoolHandle {
    return this.handle;
  }

  acquire(bytes: number): LockedBlock {
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > this.range.bytes) {
      throw new ArgumentRangeError('bytes', `must be an integer in 0..${this.range.bytes}`, bytes);
    }
    const granules = Math.max(1, Math.ceil(bytes / GRANULE_BYTES));
    const cls = 32 - Math.clz32(granules - 1);
    const classGranules = 2 ** cls;
    const w = this.words;
    this.lock();
    let at: number;
    try {
      at = w[LK_CLASS_HEADS + cls]!;
      if (at >= 0) {
        w[LK_CLASS_HEADS + cls] = this.next[at]!;
      } else {
        at = w[LK_BUMP]!;
        if ((at + classGranules) * GRANULE_BYTES > this.range.bytes) {
          throw new OutOfMemoryError({
            requestedBytes: bytes,
            liveBytes: Number.NaN,
            reservedBytes: this.range.bytes,
            limitBytes: this.range.bytes,
            deviceFreeBytes: Number.NaN,
            deviceTotalBytes: this.device.totalBytes,
            largestFreeBytes: this.range.bytes - at * GRANULE_BYTES,
          });
        }
        w[LK_BUMP] = at + classGranules;
      }
      w[LK_LIVE_BLOCKS]!++;
      w[LK_ACQUIRES]!++;
    } finally {
      this.unlock();
    }
    return this.makeBlock(at, cls, bytes);
  }

  stats(): LockedSharedPoolStats {
    return {
      liveBlocks: Atomics.load(this.words, LK_LIVE_BLOCKS),
      acquires: Atomics.load(this.words, LK_ACQUIRES),
      contended: Atomics.load(this.words, LK_CONTENDED),
      usedBytes: Atomics.load(this.words, LK_BUMP) * GRANULE_BYTES,
      arenaBytes: this.range.bytes,
    };
  }

  /** Unmaps and releases the arena (creating thread only). */
  destroy(): void {
    if (!this.creator) return;
    this.device.unmap(this.range, 0, this.range.bytes);
    this.device.releaseRange(this.range);
  }

  private makeBlock(granule: number, cls: number, bytes: number): LockedBlock {
    let released = false;
    const ptr = this.range.base + BigInt(granule * GRANULE_BYTES);
    const release = () => {
      if (released) throw new DoubleReleaseError(`locked block at ${granule * GRANULE_BYTES}`);
      released = true;
      this.lock();
      try {
        this.next[granule] = this.words[LK_CLASS_HEADS + cls]!;
        this.words[LK_CLASS_HEADS + cls] = granule;
        this.words[LK_LIVE_BLOCKS]!--;
      } finally {
        this.unlock();
      }
    };
    return {
      get ptr() {
        if (released) throw new ReleasedBlockError('locked block ptr');
        return ptr;
      },
      bytes,
      offset: granule * GRANULE_BYTES,
      release,
      [Symbol.dispose]: () => {
        if (!released) release();
      },
    };
  }

  private lock(): void {
    const w = this.words;
    if (Atomics.compareExchange(w, LK_LOCK, 0, 1) === 0) return;
    Atomics.add(w, LK_CONTENDED, 1);
    for (let spin = 0; ; spin++) {
      if (spin < SPIN_LIMIT) {
        if (Atomics.compareExchange(w, LK_LOCK, 0, 1) === 0) return;
        continue;
      }
      // Mark "waiters" and sleep until the holder's notify.
      if (Atomics.exchange(w, LK_LOCK, 2) === 0) return;
      Atomics.wait(w, LK_LOCK, 2);
    }
  }

  private unlock(): void {
    if (Atomics.exchange(this.words, LK_LOCK, 0) === 2) Atomics.notify(this.words, LK_LOCK, 1);
  }
}

/** A lock-protected pool in shared memory, usable from every thread (bench baseline). */
export function createLockedSharedPool(options: { device: Device; arenaBytes: number }): LockedSharedPool {
  return LockedSharedPool.create(options);
}
