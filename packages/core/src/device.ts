/**
 * The Device contract: what a pool needs from a GPU or a stand-in for one.
 *
 * Two ways to obtain memory, and a device says which it supports:
 * - virtual memory management (`vmm: true`): `reserve` an address range once, then `map` and
 *   `unmap` page-aligned parts of it on demand. A `map` call is backed by one physical allocation
 *   per aligned window of `allocationBytes` that its run touches (windows counted from the range's
 *   start), and `unmap` must cover whole allocations, one or several adjacent ones. With the
 *   default, one page per allocation, any page-aligned run of mapped pages unmaps.
 * - segments: `allocateSegment` / `freeSegment` whole allocations (cudaMalloc style). Every
 *   device supports segments; pools use them when `vmm` is false or when asked to.
 *
 * Failure rules: a refused request for memory throws `DeviceOutOfMemoryError`; any other
 * failure throws `DeviceError` (or a subclass); a failed call changes no device state.
 * Devices validate their inputs with typed errors and never crash the process.
 */
import { ArgumentRangeError } from './errors.js';

/** Counts of device calls, since creation. `map + allocateSegment` is what benchmarks call deviceCalls. */
export interface DeviceCallCounts {
  reserve: number;
  releaseRange: number;
  map: number;
  unmap: number;
  allocateSegment: number;
  freeSegment: number;
  memInfo: number;
}

/** A reserved range of device addresses (VMM). Pages inside are unmapped until `map`. */
export interface AddressRange {
  readonly id: number;
  /** Device address of the first byte. */
  readonly base: bigint;
  readonly bytes: number;
}

/** A whole allocation from a device without VMM (or in segment mode). Always fully backed. */
export interface Segment {
  readonly id: number;
  readonly base: bigint;
  readonly bytes: number;
}

export interface MemInfo {
  freeBytes: number;
  totalBytes: number;
}

/** The smallest thing data calls need: an address and a length. Blocks satisfy it. */
export interface BlockLike {
  readonly ptr: bigint;
  readonly bytes: number;
}

/** Stream 0 is the device's default stream. */
export type StreamHandle = number;
export type EventHandle = number;

/** Optional: devices that run work asynchronously (CUDA) or simulate it. */
export interface DeviceStreams {
  createStream(): StreamHandle;
  destroyStream(stream: StreamHandle): void;
  synchronizeStream(stream: StreamHandle): void;
  /** Records an event at the current end of `stream`'s work. */
  recordEvent(stream: StreamHandle): EventHandle;
  /** True once all work before the event has finished. */
  eventDone(event: EventHandle): boolean;
  synchronizeEvent(event: EventHandle): void;
  destroyEvent(event: EventHandle): void;
  /**
   * Optional: whether `stream` is one of this device's live streams (0, the default stream,
   * always is). The pool checks it at acquire: a block on a stream that is not there could
   * never be released (recordEvent refuses it).
   */
  hasStream?(stream: StreamHandle): boolean;
}

/** Optional: devices whose memory can be written and read from JavaScript. Bounds-checked. */
export interface DeviceData {
  copyIn(block: BlockLike, source: ArrayBufferView, byteOffset?: number): void;
  copyOut(block: BlockLike, target: ArrayBufferView, byteOffset?: number): void;
  fill(block: BlockLike, byteValue: number): void;
}

export interface Device {
  /** 'simulated' | 'host' | 'cuda' | … */
  readonly kind: string;
  /** Human-readable name, e.g. 'NVIDIA H100 80GB HBM3' or 'SimulatedDevice(80 GiB)'. */
  readonly name: string;
  /** Mapping granularity in bytes (2 MiB on CUDA VMM). Also the segment rounding unit. */
  readonly pageBytes: number;
  /** Whether reserve/map/unmap are supported. */
  readonly vmm: boolean;
  /**
   * Most bytes one physical allocation covers (a multiple of pageBytes; default pageBytes when
   * absent). Larger allocations mean fewer, cheaper device calls (CUDA: each allocation costs
   * ~20 µs to create and release, whatever its size), but only whole allocations unmap.
   */
  readonly allocationBytes?: number;
  readonly totalBytes: number;
  readonly calls: Readonly<DeviceCallCounts>;

  reserve(bytes: number): AddressRange;
  /** Gives the address range back. All its pages must be unmapped first. */
  releaseRange(range: AddressRange): void;
  /** Backs [offsetBytes, offsetBytes + bytes) of `range` with memory. Page-aligned; pages must be unmapped. */
  map(range: AddressRange, offsetBytes: number, bytes: number): void;
  /** Releases the memory behind [offsetBytes, offsetBytes + bytes). Page-aligned; pages must be mapped. */
  unmap(range: AddressRange, offsetBytes: number, bytes: number): void;

  allocateSegment(bytes: number): Segment;
  freeSegment(segment: Segment): void;

  memInfo(): MemInfo;
  /** Frees everything the device still holds. Further calls throw DeviceDestroyedError. */
  destroy(): void;

  readonly streams?: DeviceStreams;
  readonly data?: DeviceData;
}

/** A fresh, zeroed call counter. */
export function newCallCounts(): DeviceCallCounts {
  return { reserve: 0, releaseRange: 0, map: 0, unmap: 0, allocateSegment: 0, freeSegment: 0, memInfo: 0 };
}

/** The calls that obtained memory: what benchmarks report as `deviceCalls`. */
export function memoryObtainingCalls(calls: Readonly<DeviceCallCounts>): number {
  return calls.map + calls.allocateSegment;
}

/**
 * Checks a device's `allocationBytes` option against the contract above: a positive multiple of
 * `pageBytes`. Returns it; throws ArgumentRangeError naming the option otherwise.
 */
export function checkAllocationBytes(value: unknown, pageBytes: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0 || value % pageBytes !== 0) {
    throw new ArgumentRangeError(
      'allocationBytes',
      `must be a positive multiple of the page size (${pageBytes})`,
      value,
    );
  }
  return value;
}
