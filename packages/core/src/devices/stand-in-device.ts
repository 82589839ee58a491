/**
 * What SimulatedDevice and HostDevice share: argument checks, address ranges and segments carved
 * from one address space, page mapping state, capacity accounting, call counters, fault injection
 * and simulated streams. Subclasses decide where the bookkeeping lives (plain or shared memory).
 *
 * Invariant: usedBytes = mapped pages × pageBytes + sum of live segment sizes ≤ capacityBytes.
 */
import {
  type AddressRange,
  checkAllocationBytes,
  type Device,
  type DeviceCallCounts,
  type DeviceStreams,
  type EventHandle,
  type MemInfo,
  newCallCounts,
  type Segment,
  type StreamHandle,
} from '../device.js';
import {
  ArgumentRangeError,
  DeviceDestroyedError,
  DeviceError,
  DeviceOutOfMemoryError,
  InjectedFaultError,
  InvalidArgumentError,
} from '../errors.js';
import { alignUp, isPowerOfTwo, MiB } from '../units.js';
import { AddressSpace } from './address-space.js';
import type { FaultableCall, FaultPredicate } from './fault-plan.js';

export const DEFAULT_PAGE_BYTES = 2 * MiB;
/** Segments are carved at this alignment, as cudaMalloc guarantees 256 B and rounds to 512 B. */
export const SEGMENT_ALIGNMENT_BYTES = 512;

export interface StandInDeviceOptions {
  capacityBytes: number;
  pageBytes?: number;
  vmm?: boolean;
  /**
   * Most bytes one simulated physical allocation covers (default pageBytes: any page run unmaps).
   * Larger, like CudaDevice: a map call makes one allocation per aligned window it touches, and
   * unmap must cover whole allocations, or it throws.
   */
  allocationBytes?: number;
  /** Fault injection: return true to make a memory-obtaining call fail. */
  failOn?: FaultPredicate;
  name?: string;
}

/** Where the mapping state and the used-bytes counter live. */
export interface StandInState {
  /** One byte per page of the address space: 0 unmapped, 1 first page of an allocation, 2 a later page of one. */
  readonly pageMapped: Uint8Array;
  /** [0]: bytes in use (mapped pages + segments). */
  readonly used: BigInt64Array;
}

export function checkCapacity(
  options: unknown,
  owner: string,
): Required<Omit<StandInDeviceOptions, 'failOn' | 'name'>> {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError(`${owner} options`, 'must be an object with capacityBytes');
  }
  const o = options as StandInDeviceOptions;
  const capacityBytes = o.capacityBytes;
  if (typeof capacityBytes !== 'number' || !Number.isSafeInteger(capacityBytes) || capacityBytes <= 0) {
    throw new ArgumentRangeError('capacityBytes', 'must be a positive safe integer', capacityBytes);
  }
  const pageBytes = o.pageBytes ?? DEFAULT_PAGE_BYTES;
  if (!isPowerOfTwo(pageBytes) || pageBytes < 4096) {
    throw new ArgumentRangeError('pageBytes', 'must be a power of two of at least 4096', pageBytes);
  }
  const vmm = o.vmm ?? true;
  if (typeof vmm !== 'boolean') throw new InvalidArgumentError('vmm', 'must be a boolean', vmm);
  const allocationBytes =
    o.allocationBytes === undefined ? pageBytes : checkAllocationBytes(o.allocationBytes, pageBytes);
  if (o.failOn !== undefined && typeof o.failOn !== 'function') {
    throw new InvalidArgumentError('failOn', 'must be a function (call, callIndex) => boolean', o.failOn);
  }
  return { capacityBytes, pageBytes, vmm, allocationBytes };
}

interface SimEvent {
  stream: StreamHandle;
  done: boolean;
}

export abstract class StandInDevice implements Device {
  abstract readonly kind: string;
  readonly name: string;
  readonly pageBytes: number;
  readonly vmm: boolean;
  readonly allocationBytes: number;
  readonly totalBytes: number;
  readonly calls: DeviceCallCounts = newCallCounts();
  readonly streams: DeviceStreams;

  /** Base device address of offset 0 of the address space. */
  protected abstract readonly baseAddress: bigint;
  protected readonly state: StandInState;
  protected readonly addressSpaceBytes: number;
  /** Null on an attached view: only the creating instance carves ranges and segments. */
  protected readonly space: AddressSpace | null;
  protected readonly ranges = new Map<number, AddressRange>();
  protected readonly segments = new Map<number, Segment>();
  private nextId = 1;
  private faultCallIndex = 0;
  private failOn: FaultPredicate | undefined;
  private destroyed = false;
  private readonly simStreams = new Set<StreamHandle>([0]);
  private readonly simEvents = new Map<EventHandle, SimEvent>();
  private nextStream = 1;
  private nextEvent = 1;

  protected constructor(
    options: StandInDeviceOptions,
    owner: string,
    init: { state: StandInState; addressSpaceBytes: number; carves: boolean; eventsCompleteAtOnce: boolean },
  ) {
    const { capacityBytes, pageBytes, vmm, allocationBytes } = checkCapacity(options, owner);
    this.totalBytes = capacityBytes;
    this.pageBytes = pageBytes;
    this.vmm = vmm;
    this.allocationBytes = allocationBytes;
    this.failOn = options.failOn;
    this.name = options.name ?? `${owner}(${capacityBytes} B)`;
    this.state = init.state;
    this.addressSpaceBytes = init.addressSpaceBytes;
    this.space = init.carves ? new AddressSpace(init.addressSpaceBytes) : null;
    this.streams = this.makeStreams(init.eventsCompleteAtOnce);
  }

  /** Replaces the fault predicate (undefined: no faults). Call numbering continues. */
  setFaults(failOn: FaultPredicate | undefined): void {
    if (failOn !== undefined && typeof failOn !== 'function') {
      throw new InvalidArgumentError('failOn', 'must be a function (call, callIndex) => boolean', failOn);
    }
    this.failOn = failOn;
  }

  /** Bytes backed right now: mapped pages plus segments. */
  get usedBytes(): number {
    return Number(Atomics.load(this.state.used, 0));
  }

  reserve(bytes: number): AddressRange {
    this.live('reserve');
    this.checkVmm('reserve');
    this.checkSize('bytes', bytes, this.pageBytes);
    this.maybeFail('reserve', bytes);
    const offset = this.carver('reserve').take(bytes, this.pageBytes);
    if (offset < 0) throw new DeviceError('reserve', `no ${bytes}-byte address range is left`);
    this.calls.reserve++;
    const range: AddressRange = Object.freeze({
      id: this.nextId++,
      base: this.baseAddress + BigInt(offset),
      bytes,
    });
    this.ranges.set(range.id, range);
    return range;
  }

  releaseRange(range: AddressRange): void {
    this.live('releaseRange');
    const known = this.knownRange(range, 'releaseRange');
    const first = this.pageOf(known);
    for (let p = 0; p < known.bytes / this.pageBytes; p++) {
      if (this.state.pageMapped[first + p] !== 0) {
        throw new DeviceError('releaseRange', 'the range still has mapped pages; unmap them first');
      }
    }
    this.ranges.delete(known.id);
    this.carver('releaseRange').give(Number(known.base - this.baseAddress), known.bytes);
    this.calls.releaseRange++;
  }

  map(range: AddressRange, offsetBytes: number, bytes: number): void {
    this.live('map');
    this.checkVmm('map');
    const first = this.pagesOf(range, offsetBytes, bytes, 'map');
    const count = bytes / this.pageBytes;
    for (let p = first; p < first + count; p++) {
      if (this.state.pageMapped[p] !== 0)
        throw new DeviceError('map', `page ${p - this.pageOf(range)} is already mapped`);
    }
    this.maybeFail('map', bytes);
    this.charge('map', bytes);
    // An allocation starts at the run's first page and at each window boundary inside the run.
    const window = this.allocationBytes / this.pageBytes;
    const rangeFirst = this.pageOf(range);
    this.state.pageMapped[first] = 1;
    for (let p = first + 1; p < first + count; p++)
      this.state.pageMapped[p] = (p - rangeFirst) % window === 0 ? 1 : 2;
    this.calls.map++;
  }

  unmap(range: AddressRange, offsetBytes: number, bytes: number): void {
    this.live('unmap');
    this.checkVmm('unmap');
    const first = this.pagesOf(range, offsetBytes, bytes, 'unmap');
    const count = bytes / this.pageBytes;
    for (let p = first; p < first + count; p++) {
      if (this.state.pageMapped[p] === 0)
        throw new DeviceError('unmap', `page ${p - this.pageOf(range)} is not mapped`);
    }
    // Whole allocations only: the run starts one, and the page after it does not continue one.
    if (this.state.pageMapped[first] === 2 || this.state.pageMapped[first + count] === 2) {
      throw new DeviceError(
        'unmap',
        `the pages must cover whole allocations (allocationBytes ${this.allocationBytes}) of earlier map calls`,
      );
    }
    for (let p = first; p < first + count; p++) this.state.pageMapped[p] = 0;
    Atomics.sub(this.state.used, 0, BigInt(bytes));
    this.onUnmapped(Number(range.base - this.baseAddress) + offsetBytes, bytes);
    this.calls.unmap++;
  }

  allocateSegment(bytes: number): Segment {
    this.live('allocateSegment');
    this.checkSize('bytes', bytes, 1);
    const charged = alignUp(bytes, SEGMENT_ALIGNMENT_BYTES);
    this.maybeFail('allocateSegment', bytes);
    const alignment = bytes >= this.pageBytes ? this.pageBytes : SEGMENT_ALIGNMENT_BYTES;
    this.charge('allocateSegment', charged);
    const offset = this.carver('allocateSegment').take(charged, alignment);
    if (offset < 0) {
      Atomics.sub(this.state.used, 0, BigInt(charged));
      throw new DeviceOutOfMemoryError('allocateSegment', bytes, 'no contiguous address range is left');
    }
    this.calls.allocateSegment++;
    const segment: Segment = Object.freeze({
      id: this.nextId++,
      base: this.baseAddress + BigInt(offset),
      bytes,
    });
    this.segments.set(segment.id, segment);
    return segment;
  }

  freeSegment(segment: Segment): void {
    this.live('freeSegment');
    const known =
      typeof segment === 'object' && segment !== null
        ? this.segments.get((segment as Segment).id)
        : undefined;
    if (known === undefined || known.base !== segment.base) {
      throw new DeviceError('freeSegment', 'unknown or already freed segment');
    }
    this.segments.delete(known.id);
    const charged = alignUp(known.bytes, SEGMENT_ALIGNMENT_BYTES);
    this.carver('freeSegment').give(Number(known.base - this.baseAddress), charged);
    Atomics.sub(this.state.used, 0, BigInt(charged));
    this.onUnmapped(Number(known.base - this.baseAddress), charged);
    this.calls.freeSegment++;
  }

  memInfo(): MemInfo {
    this.live('memInfo');
    this.calls.memInfo++;
    return { freeBytes: this.totalBytes - this.usedBytes, totalBytes: this.totalBytes };
  }

  destroy(): void {
    if (this.destroyed) return;
    for (const range of [...this.ranges.values()]) {
      const first = this.pageOf(range);
      for (let p = 0; p < range.bytes / this.pageBytes; p++) {
        if (this.state.pageMapped[first + p] !== 0) {
          this.state.pageMapped[first + p] = 0;
          Atomics.sub(this.state.used, 0, BigInt(this.pageBytes));
        }
      }
    }
    for (const segment of this.segments.values()) {
      Atomics.sub(this.state.used, 0, BigInt(alignUp(segment.bytes, SEGMENT_ALIGNMENT_BYTES)));
    }
    this.ranges.clear();
    this.segments.clear();
    this.destroyed = true;
  }

  get isDestroyed(): boolean {
    return this.destroyed;
  }

  /** Number of ranges and segments still held: 0 after a pool that used this device is destroyed. */
  get openAllocations(): { ranges: number; segments: number } {
    return { ranges: this.ranges.size, segments: this.segments.size };
  }

  /** Marks every recorded event complete. */
  protected completeEvents(): void {
    for (const e of this.simEvents.values()) e.done = true;
  }

  /** Hook for HostDevice: scrub memory that was given back, so stale reads show up in tests. */
  protected onUnmapped(_offset: number, _bytes: number): void {}

  protected live(call: string): void {
    if (this.destroyed) throw new DeviceDestroyedError(call);
  }

  private carver(call: string): AddressSpace {
    if (this.space === null) {
      throw new DeviceError(
        call,
        'an attached device view cannot carve address ranges; ask the creating thread',
      );
    }
    return this.space;
  }

  private checkVmm(call: string): void {
    if (!this.vmm) throw new DeviceError(call, 'this device has no virtual memory management (vmm: false)');
  }

  private checkSize(argument: string, bytes: unknown, multipleOf: number): asserts bytes is number {
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0) {
      throw new ArgumentRangeError(argument, 'must be a positive safe integer', bytes);
    }
    if (bytes % multipleOf !== 0) {
      throw new ArgumentRangeError(argument, `must be a multiple of the page size (${multipleOf})`, bytes);
    }
  }

  private maybeFail(call: FaultableCall, bytes: number): void {
    const index = ++this.faultCallIndex;
    if (this.failOn?.(call, index)) {
      const error = new InjectedFaultError(call, index);
      (error as { requestedBytes: number }).requestedBytes = bytes;
      throw error;
    }
  }

  private charge(call: string, bytes: number): void {
    const before = Atomics.add(this.state.used, 0, BigInt(bytes));
    if (Number(before) + bytes > this.totalBytes) {
      Atomics.sub(this.state.used, 0, BigInt(bytes));
      throw new DeviceOutOfMemoryError(call, bytes);
    }
  }

  /** Validates a range: known to this instance, or (attached views) at least inside the address space. */
  private knownRange(range: AddressRange, call: string): AddressRange {
    if (typeof range !== 'object' || range === null || typeof range.base !== 'bigint') {
      throw new InvalidArgumentError('range', 'must be an AddressRange returned by reserve()', range);
    }
    if (this.space !== null) {
      const known = this.ranges.get(range.id);
      if (known === undefined || known.base !== range.base || known.bytes !== range.bytes) {
        throw new DeviceError(call, 'unknown or already released address range');
      }
      return known;
    }
    const offset = Number(range.base - this.baseAddress);
    if (offset < 0 || offset + range.bytes > this.addressSpaceBytes || offset % this.pageBytes !== 0) {
      throw new DeviceError(call, 'the address range is not inside this device');
    }
    return range;
  }

  private pageOf(range: AddressRange): number {
    return Number(range.base - this.baseAddress) / this.pageBytes;
  }

  /** Checks [offsetBytes, +bytes) is a page-aligned part of `range`; returns its first global page. */
  private pagesOf(range: AddressRange, offsetBytes: number, bytes: number, call: string): number {
    const known = this.knownRange(range, call);
    if (typeof offsetBytes !== 'number' || !Number.isSafeInteger(offsetBytes) || offsetBytes < 0) {
      throw new ArgumentRangeError('offsetBytes', 'must be a non-negative safe integer', offsetBytes);
    }
    this.checkSize('bytes', bytes, this.pageBytes);
    if (offsetBytes % this.pageBytes !== 0) {
      throw new ArgumentRangeError(
        'offsetBytes',
        `must be a multiple of the page size (${this.pageBytes})`,
        offsetBytes,
      );
    }
    if (offsetBytes + bytes > known.bytes) {
      throw new ArgumentRangeError('bytes', `runs past the end of the ${known.bytes}-byte range`, bytes);
    }
    return this.pageOf(known) + offsetBytes / this.pageBytes;
  }

  private makeStreams(atOnce: boolean): DeviceStreams {
    const stream = (s: StreamHandle, call: string) => {
      if (!this.simStreams.has(s)) throw new DeviceError(call, `unknown stream ${String(s)}`);
    };
    const event = (e: EventHandle, call: string): SimEvent => {
      const found = this.simEvents.get(e);
      if (found === undefined) throw new DeviceError(call, `unknown event ${String(e)}`);
      return found;
    };
    return {
      createStream: () => {
        this.live('createStream');
        const s = this.nextStream++;
        this.simStreams.add(s);
        return s;
      },
      destroyStream: (s) => {
        stream(s, 'destroyStream');
        if (s === 0) throw new DeviceError('destroyStream', 'the default stream cannot be destroyed');
        this.simStreams.delete(s);
      },
      synchronizeStream: (s) => {
        stream(s, 'synchronizeStream');
        for (const e of this.simEvents.values()) if (e.stream === s) e.done = true;
      },
      recordEvent: (s) => {
        stream(s, 'recordEvent');
        const e = this.nextEvent++;
        this.simEvents.set(e, { stream: s, done: atOnce });
        return e;
      },
      eventDone: (e) => event(e, 'eventDone').done,
      synchronizeEvent: (e) => {
        event(e, 'synchronizeEvent').done = true;
      },
      destroyEvent: (e) => {
        event(e, 'destroyEvent');
        this.simEvents.delete(e);
      },
      hasStream: (s) => this.simStreams.has(s),
    };
  }
}
