/**
 * HostDevice: "device memory" is one SharedArrayBuffer, so bytes are real (copyIn, copyOut,
 * fill) and shared with worker threads. Its address space is the buffer itself: ranges and
 * segments are carved from it, and mapped pages count against `capacityBytes`.
 *
 * Threads: `share()` gives a structured-cloneable handle; `HostDevice.attach(handle)` in a worker
 * gives a view over the same memory and the same mapping state (shared, updated with Atomics), so
 * capacity is enforced across threads. Only the creating instance carves ranges and segments.
 */
import { constants as bufferConstants } from 'node:buffer';
import type { BlockLike, DeviceData } from '../device.js';
import {
  ArgumentRangeError,
  InvalidArgumentError,
  PoolDestroyedError,
  ReleasedBlockError,
} from '../errors.js';
import { alignUp, MiB } from '../units.js';
import { checkCapacity, StandInDevice, type StandInDeviceOptions } from './stand-in-device.js';

export interface HostDeviceOptions extends Omit<StandInDeviceOptions, 'capacityBytes'> {
  /** Default 256 MiB; at most MAX_VIEW_BYTES (4 GiB on Node 20), the longest typed array. */
  capacityBytes?: number;
  /** Fill unmapped/freed memory with this byte (default 0xDD) so use-after-free shows in tests. */
  scrubByte?: number | null;
}

/** What crosses to a worker thread (postMessage / workerData). */
export interface HostDeviceHandle {
  readonly kind: 'host';
  readonly memory: SharedArrayBuffer;
  readonly pageMapped: SharedArrayBuffer;
  readonly used: SharedArrayBuffer;
  readonly capacityBytes: number;
  readonly pageBytes: number;
  readonly vmm: boolean;
  readonly allocationBytes: number;
  readonly name: string;
}

const HOST_BASE_ADDRESS = 0x1_0000_0000n;
/** The longest typed array V8 makes here (Node 20: 4 GiB): the whole memory is viewed as one. */
const MAX_VIEW_BYTES = bufferConstants.MAX_LENGTH;

export class HostDevice extends StandInDevice {
  readonly kind = 'host';
  readonly data: DeviceData;
  protected readonly baseAddress = HOST_BASE_ADDRESS;
  readonly memory: SharedArrayBuffer;
  private readonly bytesView: Uint8Array;
  private readonly scrubByte: number | null;
  private readonly handle: HostDeviceHandle;

  constructor(options: HostDeviceOptions = {}, attachTo?: HostDeviceHandle) {
    const capacityBytes = attachTo?.capacityBytes ?? options.capacityBytes ?? 256 * MiB;
    const { pageBytes } = checkCapacity({ ...options, capacityBytes }, 'HostDevice');
    const addressSpaceBytes = alignUp(capacityBytes, pageBytes);
    if (addressSpaceBytes > MAX_VIEW_BYTES) {
      // Every byte is viewed through one Uint8Array, and V8 limits a typed array's length.
      throw new ArgumentRangeError(
        'capacityBytes',
        `must be at most ${MAX_VIEW_BYTES} bytes (the longest typed array this Node.js makes), rounded up to whole pages`,
        capacityBytes,
      );
    }
    const memory = attachTo?.memory ?? new SharedArrayBuffer(addressSpaceBytes);
    const pageMapped = attachTo?.pageMapped ?? new SharedArrayBuffer(addressSpaceBytes / pageBytes);
    const used = attachTo?.used ?? new SharedArrayBuffer(8);
    super(
      { name: attachTo?.name ?? `HostDevice(${capacityBytes} B)`, ...options, capacityBytes, pageBytes },
      'HostDevice',
      {
        state: { pageMapped: new Uint8Array(pageMapped), used: new BigInt64Array(used) },
        addressSpaceBytes,
        carves: attachTo === undefined,
        eventsCompleteAtOnce: true,
      },
    );
    this.memory = memory;
    this.bytesView = new Uint8Array(memory);
    const scrub = options.scrubByte === undefined ? 0xdd : options.scrubByte;
    if (scrub !== null && (!Number.isInteger(scrub) || scrub < 0 || scrub > 255)) {
      throw new ArgumentRangeError('scrubByte', 'must be an integer in 0..255 or null', scrub);
    }
    this.scrubByte = scrub;
    this.handle = Object.freeze({
      kind: 'host',
      memory,
      pageMapped,
      used,
      capacityBytes,
      pageBytes,
      vmm: this.vmm,
      allocationBytes: this.allocationBytes,
      name: this.name,
    });
    this.data = {
      copyIn: (block, source, byteOffset = 0) => {
        const src = bytesOf(source, 'source');
        const at = this.locate(block, src.byteLength, byteOffset, 'copyIn');
        this.bytesView.set(src, at);
      },
      copyOut: (block, target, byteOffset = 0) => {
        const dst = bytesOf(target, 'target');
        const at = this.locate(block, dst.byteLength, byteOffset, 'copyOut');
        dst.set(this.bytesView.subarray(at, at + dst.byteLength));
      },
      fill: (block, byteValue) => {
        if (!Number.isInteger(byteValue) || byteValue < 0 || byteValue > 255) {
          throw new ArgumentRangeError('byteValue', 'must be an integer in 0..255', byteValue);
        }
        const at = this.locate(block, block.bytes, 0, 'fill');
        this.bytesView.fill(byteValue, at, at + block.bytes);
      },
    };
  }

  /** A handle for `HostDevice.attach` in another thread. */
  share(): HostDeviceHandle {
    return this.handle;
  }

  static attach(handle: HostDeviceHandle): HostDevice {
    if (
      typeof handle !== 'object' ||
      handle === null ||
      handle.kind !== 'host' ||
      !(handle.memory instanceof SharedArrayBuffer)
    ) {
      throw new InvalidArgumentError('handle', 'must come from HostDevice.share()', handle);
    }
    return new HostDevice(
      { pageBytes: handle.pageBytes, vmm: handle.vmm, allocationBytes: handle.allocationBytes },
      handle,
    );
  }

  /** A view of the bytes of a block (no copy): for kernels written in JavaScript. */
  view(block: BlockLike, byteOffset = 0, byteLength?: number): Uint8Array {
    // Without a length, the rest of the block (none past its end: locate() then names byteOffset).
    const rest = typeof block === 'object' && block !== null ? block.bytes - byteOffset : 0;
    const length = byteLength ?? Math.max(0, rest);
    const at = this.locate(block, length, byteOffset, 'view');
    return new Uint8Array(this.memory, at, length);
  }

  protected override onUnmapped(offset: number, bytes: number): void {
    if (this.scrubByte !== null) this.bytesView.fill(this.scrubByte, offset, offset + bytes);
  }

  /** Bounds-checks [byteOffset, +length) against the block; returns the offset in `memory`. */
  private locate(block: BlockLike, length: number, byteOffset: number, call: string): number {
    this.live(call);
    if (typeof block !== 'object' || block === null) {
      throw new InvalidArgumentError('block', 'must be a block (an object with ptr and bytes)', block);
    }
    let ptr: bigint;
    try {
      ptr = block.ptr;
    } catch (error) {
      // A released block, or one whose pool was destroyed: say so rather than "not a block".
      if (error instanceof ReleasedBlockError || error instanceof PoolDestroyedError) throw error;
      throw new InvalidArgumentError('block', 'must be a block (an object with ptr and bytes)', block);
    }
    if (typeof ptr !== 'bigint' || !Number.isSafeInteger(block.bytes) || block.bytes < 0) {
      throw new InvalidArgumentError('block', 'must be a block (an object with ptr and bytes)', block);
    }
    if (!Number.isSafeInteger(byteOffset) || byteOffset < 0) {
      throw new ArgumentRangeError('byteOffset', 'must be a non-negative integer', byteOffset);
    }
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new ArgumentRangeError('byteLength', 'must be a non-negative integer', length);
    }
    if (byteOffset + length > block.bytes) {
      throw new ArgumentRangeError(
        'byteOffset',
        `plus the ${length}-byte length must fit in the ${block.bytes}-byte block`,
        byteOffset,
      );
    }
    const at = Number(ptr - this.baseAddress) + byteOffset;
    if (at < 0 || at + length > this.memory.byteLength) {
      throw new ArgumentRangeError('block', 'does not lie in this device’s memory', block);
    }
    return at;
  }
}

function bytesOf(view: ArrayBufferView, argument: string): Uint8Array {
  if (!ArrayBuffer.isView(view))
    throw new InvalidArgumentError(argument, 'must be a TypedArray, DataView or Buffer', view);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}
