/**
 * CudaDevice: core's Device on one CUDA GPU. Three modes:
 * - 'vmm' (default): arenas through CUDA virtual memory management. `reserve` takes an address
 *   range (cuMemAddressReserve); `map` backs a page run with one physical allocation per aligned
 *   window of `allocationBytes` it touches (cuMemCreate + cuMemMap each, one cuMemSetAccess per
 *   run); `unmap` takes whole allocations (one or several adjacent): it synchronizes the device,
 *   then unmaps and releases each allocation.
 * - 'malloc' and 'mallocAsync': segments only (vmm: false), from cudaMalloc or from
 *   cudaMallocAsync on the device's default memory pool. Baselines for the benchmarks.
 *
 * Threads: one CUDA primary context per process, so a reserved range is valid in every thread.
 * The addon keeps a process-wide range registry (process-unique range ids; the physical handle
 * behind each page, under a mutex), so a range reserved by one CudaDevice can be adopted by another one in
 * any thread (`adoptRange`) and its pages mapped, unmapped and used for data there; only the
 * reserving device releases it, and its destroy (or its thread's exit) releases it exactly once.
 *
 * Invariants: this wrapper validates every argument and keeps its own books (ranges it reserved or
 * adopted, segments, streams, events), so the addon is only called with requests that are valid.
 * Per-page map state is NOT kept here: it changes in other threads, so it is read from the addon's
 * registry (one locked lookup), the single source of truth every thread shares. Data calls are
 * bounds-checked against the block AND against memory backed right now (a live segment of this
 * device, or pages of a range in its books that are mapped, by whichever thread), so a stale or
 * foreign pointer is a typed error, never a write into someone else's memory. A failed call
 * changes no state.
 */
import {
  type AddressRange,
  ArgumentRangeError,
  type BlockLike,
  checkAllocationBytes,
  type Device,
  type DeviceCallCounts,
  type DeviceData,
  DeviceDestroyedError,
  DeviceError,
  type DeviceStreams,
  type EventHandle,
  InvalidArgumentError,
  type MemInfo,
  newCallCounts,
  type Segment,
  type StreamHandle,
} from '@gpupool/core';
import { cuda, loadedAddon } from './binding.js';
import { CudaUnavailableError, toDeviceError } from './errors.js';
import { CudaKernels } from './kernels.js';
import type { NativeAddon, NativeContext, NativeLiveCounts, NativeRegistryCounts } from './native-api.js';
import {
  checkBlock,
  checkOptionBytes,
  checkPositiveMultiple,
  checkSafeInteger,
  viewBytes,
} from './validate.js';

export type CudaDeviceMode = 'vmm' | 'malloc' | 'mallocAsync';
export const CUDA_DEVICE_MODES: readonly CudaDeviceMode[] = ['vmm', 'malloc', 'mallocAsync'];

/**
 * Default VMM page, in granules of the driver's allocation granularity (2 MiB on Hopper): 1. Pages
 * are what reserved memory is counted and released in; the cost of device calls is set by
 * DEFAULT_ALLOCATION_BYTES instead (docs/benchmarks.md). See CudaDeviceOptions.pageBytes.
 */
export const DEFAULT_PAGE_GRANULES = 1;

/**
 * Default most bytes per physical allocation: 64 MiB. On an H100 a map call costs ~36 µs
 * (cuMemSetAccess) plus ~10 µs per allocation created, and an unmap ~23 µs plus ~10 µs (+0.35 µs
 * per MiB) per allocation released, whatever its size (packages/native/tools/vmm-costs.cu); but only
 * whole allocations unmap, so a pool can release less where blocks straddle them. 64 MiB was the
 * best trade on the four traces together (docs/benchmarks.md). See CudaDeviceOptions.allocationBytes.
 */
export const DEFAULT_ALLOCATION_BYTES = 64 * 1024 * 1024;

/** Largest range id the addon hands out (its registry counts in a C++ int). */
const RANGE_ID_MAX = 2 ** 31 - 1;

/** Used as pageBytes when the driver's granularity cannot be asked (segment modes only). */
const FALLBACK_PAGE_BYTES = 2 * 1024 * 1024;

export interface CudaDeviceOptions {
  /** Which GPU (as CUDA numbers them, after CUDA_VISIBLE_DEVICES). Default 0. */
  deviceIndex?: number;
  /** Default 'vmm'. */
  mode?: CudaDeviceMode;
  /**
   * VMM page size: the unit in which memory is mapped, counted and released. A multiple of the
   * driver's granularity (2 MiB). Default: granularity × DEFAULT_PAGE_GRANULES (2 MiB).
   */
  pageBytes?: number;
  /**
   * Most bytes one physical allocation (cuMemCreate) covers: a map call makes one per aligned
   * window of this size that it touches, and unmap takes whole allocations only. Larger: fewer,
   * cheaper device calls; smaller: memory can be released in finer pieces. A multiple of pageBytes;
   * default DEFAULT_ALLOCATION_BYTES in whole pages (64 MiB with 2 MiB pages). Set it to pageBytes
   * for one allocation per page.
   */
  allocationBytes?: number;
}

export interface CudaDeviceProperties {
  readonly name: string;
  readonly totalBytes: number;
  /** e.g. '9.0' on an H100. */
  readonly computeCapability: string;
  readonly computeCapabilityMajor: number;
  readonly computeCapabilityMinor: number;
  readonly multiprocessors: number;
  readonly vmmSupported: boolean;
  readonly pciBusId: number;
}

/** DeviceData plus stream-ordered variants. Async copies from pageable memory may complete early; from pinned buffers they overlap. */
export interface CudaDeviceData extends DeviceData {
  copyInAsync(block: BlockLike, source: ArrayBufferView, stream: StreamHandle, byteOffset?: number): void;
  copyOutAsync(block: BlockLike, target: ArrayBufferView, stream: StreamHandle, byteOffset?: number): void;
  fillAsync(block: BlockLike, byteValue: number, stream: StreamHandle): void;
}

interface RangeEntry {
  range: AddressRange;
  /** Reserved by this device (it releases the range); false: adopted from another CudaDevice. */
  owned: boolean;
}

/** What crosses to another thread so it can open the same GPU (structured-cloneable). */
export interface CudaDeviceHandle {
  readonly kind: 'cuda';
  readonly deviceIndex: number;
  readonly mode: CudaDeviceMode;
  /** Checked on attach: the same physical GPU. */
  readonly pciBusId: number;
  /** The VMM page and allocation sizes, so every thread's device agrees with the ranges it adopts. */
  readonly pageBytes: number;
  readonly allocationBytes: number;
}

function requireAddon(call: string, addon: NativeAddon | undefined): NativeAddon {
  if (addon === undefined || (addon === loadedAddon() && !cuda.available)) {
    throw new CudaUnavailableError(call, cuda.reason ?? 'the addon is not loaded');
  }
  return addon;
}

/** Ranges and mapped pages alive in the whole process (every thread, every CudaDevice): for leak checks. */
export function cudaRangeRegistryLive(addon: NativeAddon | undefined = loadedAddon()): NativeRegistryCounts {
  const native = requireAddon('registryLive', addon);
  try {
    return native.registryLive();
  } catch (error) {
    throw toDeviceError(error, 'registryLive');
  }
}

/** Properties of GPU `deviceIndex` (throws CudaUnavailableError without CUDA). */
export function cudaDeviceProperties(
  deviceIndex = 0,
  addon: NativeAddon | undefined = loadedAddon(),
): CudaDeviceProperties {
  const native = requireAddon('deviceProperties', addon);
  checkSafeInteger('deviceIndex', deviceIndex, 0, 1023);
  let p: ReturnType<NativeAddon['deviceProperties']>;
  try {
    p = native.deviceProperties(deviceIndex);
  } catch (error) {
    throw toDeviceError(error, 'deviceProperties');
  }
  return Object.freeze({
    name: p.name,
    totalBytes: p.totalBytes,
    computeCapability: `${p.computeCapabilityMajor}.${p.computeCapabilityMinor}`,
    computeCapabilityMajor: p.computeCapabilityMajor,
    computeCapabilityMinor: p.computeCapabilityMinor,
    multiprocessors: p.multiprocessors,
    vmmSupported: p.vmmSupported,
    pciBusId: p.pciBusId,
  });
}

export class CudaDevice implements Device {
  readonly kind = 'cuda';
  readonly name: string;
  readonly pageBytes: number;
  /** Most bytes per physical allocation (vmm); pageBytes in the segment modes. */
  readonly allocationBytes: number;
  readonly vmm: boolean;
  readonly totalBytes: number;
  readonly mode: CudaDeviceMode;
  readonly deviceIndex: number;
  readonly properties: CudaDeviceProperties;
  readonly calls: DeviceCallCounts = newCallCounts();
  readonly streams: DeviceStreams;
  readonly data: CudaDeviceData;
  readonly kernels: CudaKernels;

  readonly #native: NativeContext;
  readonly #ranges = new Map<number, RangeEntry>();
  readonly #segments = new Map<number, Segment>();
  readonly #streams = new Set<number>([0]);
  readonly #events = new Set<number>();
  #destroyed = false;

  /**
   * @param options device index and mode.
   * @param addon internal: the addon to use (tests pass a fake); defaults to the loaded one.
   */
  constructor(options: CudaDeviceOptions = {}, addon: NativeAddon | undefined = loadedAddon()) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', 'must be an object { deviceIndex?, mode? }', options);
    }
    const deviceIndex = checkSafeInteger('deviceIndex', options.deviceIndex ?? 0, 0, 1023);
    const mode = options.mode ?? 'vmm';
    if (!CUDA_DEVICE_MODES.includes(mode)) {
      throw new InvalidArgumentError('mode', `must be one of ${CUDA_DEVICE_MODES.join(', ')}`, mode);
    }
    // Byte-size options are checked in every mode (segment modes do not use them, but a typo or a
    // wrong type must not pass silently); multiples of the granularity once it is known.
    const pageOption =
      options.pageBytes === undefined ? undefined : checkOptionBytes('pageBytes', options.pageBytes);
    const allocationOption =
      options.allocationBytes === undefined
        ? undefined
        : checkOptionBytes('allocationBytes', options.allocationBytes);
    const native = requireAddon('CudaDevice', addon);
    const probe = native.probe();
    if (deviceIndex >= probe.deviceCount) {
      throw new ArgumentRangeError(
        'deviceIndex',
        `must be below the device count (${probe.deviceCount})`,
        deviceIndex,
      );
    }
    this.properties = cudaDeviceProperties(deviceIndex, native);
    if (mode === 'vmm' && !(probe.driverApi && this.properties.vmmSupported)) {
      throw new DeviceError(
        'CudaDevice',
        `mode 'vmm' needs CUDA virtual memory management, which ${probe.driverApi ? 'this GPU does not support' : `the driver API could not provide (${probe.driverApiError ?? 'unknown'})`}; use mode 'malloc'`,
      );
    }
    try {
      this.#native = new native.Context(deviceIndex);
    } catch (error) {
      throw toDeviceError(error, 'CudaDevice');
    }
    let pageBytes = FALLBACK_PAGE_BYTES;
    let allocationBytes = FALLBACK_PAGE_BYTES;
    try {
      const granularity = probe.driverApi ? this.#native.granularity() : FALLBACK_PAGE_BYTES;
      const requestedPageBytes = pageOption ?? granularity * DEFAULT_PAGE_GRANULES;
      if (requestedPageBytes % granularity !== 0) {
        throw new ArgumentRangeError(
          'pageBytes',
          `must be a positive multiple of the allocation granularity (${granularity})`,
          options.pageBytes,
        );
      }
      // Default: as many whole pages as fit DEFAULT_ALLOCATION_BYTES (pageBytes need not divide it).
      const requestedAllocationBytes =
        allocationOption === undefined
          ? Math.max(1, Math.floor(DEFAULT_ALLOCATION_BYTES / requestedPageBytes)) * requestedPageBytes
          : checkAllocationBytes(allocationOption, requestedPageBytes);
      pageBytes = granularity;
      allocationBytes = granularity;
      if (mode === 'vmm') {
        pageBytes = requestedPageBytes;
        if (pageBytes !== granularity) this.#native.setPageBytes(pageBytes);
        allocationBytes = requestedAllocationBytes;
        this.#native.setAllocationBytes(allocationBytes);
      }
    } catch (error) {
      this.#native.destroy();
      if (error instanceof ArgumentRangeError) throw error;
      throw toDeviceError(error, 'CudaDevice');
    }
    this.deviceIndex = deviceIndex;
    this.mode = mode;
    this.vmm = mode === 'vmm';
    this.pageBytes = pageBytes;
    this.allocationBytes = allocationBytes;
    this.totalBytes = this.properties.totalBytes;
    this.name = this.properties.name;
    this.streams = this.#makeStreams();
    this.data = this.#makeData();
    this.kernels = new CudaKernels(
      {
        locate: (argument, block, length) => this.#locate(argument, block, length, 0, 'kernel'),
        stream: (stream, call) => this.#stream(stream, call),
        invoke: (call, fn) => this.#invoke(call, fn),
      },
      this.#native,
    );
  }

  /**
   * A structured-cloneable handle for another thread: `CudaDevice.attach(handle)` there opens a
   * device on the same GPU and mode; ranges reserved here are then used there via `adoptRange`.
   */
  share(): CudaDeviceHandle {
    this.#live('share');
    return {
      kind: 'cuda',
      deviceIndex: this.deviceIndex,
      mode: this.mode,
      pciBusId: this.properties.pciBusId,
      pageBytes: this.pageBytes,
      allocationBytes: this.allocationBytes,
    };
  }

  /** Opens a device in this thread from `share()` of another (the process-wide context is shared). */
  static attach(handle: CudaDeviceHandle, addon: NativeAddon | undefined = loadedAddon()): CudaDevice {
    if (typeof handle !== 'object' || handle === null || handle.kind !== 'cuda') {
      throw new InvalidArgumentError('handle', "must come from CudaDevice.share() (kind 'cuda')", handle);
    }
    const device = new CudaDevice(
      {
        deviceIndex: handle.deviceIndex,
        mode: handle.mode,
        ...(handle.mode === 'vmm'
          ? { pageBytes: handle.pageBytes, allocationBytes: handle.allocationBytes }
          : {}),
      },
      addon,
    );
    if (handle.pciBusId !== device.properties.pciBusId) {
      device.destroy();
      throw new DeviceError(
        'attach',
        `GPU ${handle.deviceIndex} is on PCI bus ${device.properties.pciBusId} here, not ${String(handle.pciBusId)}: not the same GPU`,
      );
    }
    return device;
  }

  /**
   * Accepts a range reserved by another CudaDevice of this process (any thread) on the same GPU for
   * map, unmap and data calls here; returns it as registered in this device's books (the same range
   * if this device reserved or adopted it already). Only the reserving device may release it; its
   * pages may be unmapped by any device that holds it, whoever mapped them.
   */
  adoptRange(range: AddressRange): AddressRange {
    this.#live('adoptRange');
    this.#requireVmm('adoptRange');
    if (typeof range !== 'object' || range === null) {
      throw new InvalidArgumentError(
        'range',
        'must be an AddressRange { id, base, bytes } from reserve()',
        range,
      );
    }
    // Range ids are 32-bit in the addon's registry; addresses are 64-bit.
    const id = checkSafeInteger('range.id', range.id, 1, RANGE_ID_MAX);
    if (typeof range.base !== 'bigint' || range.base <= 0n) {
      throw new InvalidArgumentError('range.base', 'must be a positive bigint device address', range.base);
    }
    if (range.base >= 1n << 64n) {
      throw new ArgumentRangeError('range.base', 'must be a device address in 1..2^64-1', range.base);
    }
    const bytes = checkPositiveMultiple('range.bytes', range.bytes, this.pageBytes);
    const known = this.#ranges.get(id);
    if (known !== undefined) {
      if (known.range.base !== range.base || known.range.bytes !== bytes) {
        throw new DeviceError('adoptRange', `address range ${id} is known here with another base or size`);
      }
      return known.range;
    }
    this.#invoke('adoptRange', () => this.#native.adoptRange(id, range.base, bytes));
    const adopted: AddressRange = Object.freeze({ id, base: range.base, bytes });
    this.#ranges.set(id, { range: adopted, owned: false });
    return adopted;
  }

  /** Forgets an adopted range here without touching its pages (the reserving device still owns it). */
  disownRange(range: AddressRange): void {
    this.#live('disownRange');
    const entry = this.#range(range, 'disownRange');
    if (entry.owned) {
      throw new DeviceError('disownRange', 'this device reserved the range: release it with releaseRange()');
    }
    this.#invoke('disownRange', () => this.#native.disownRange(entry.range.id));
    this.#ranges.delete(entry.range.id);
  }

  /** Whether this device reserved `range` (true) or adopted it (false). */
  ownsRange(range: AddressRange): boolean {
    this.#live('ownsRange');
    return this.#range(range, 'ownsRange').owned;
  }

  get isDestroyed(): boolean {
    return this.#destroyed;
  }

  /** What this device still holds on the GPU, as the addon counts it (for leak checks). */
  live(): NativeLiveCounts {
    this.#live('live');
    return this.#native.live();
  }

  reserve(bytes: number): AddressRange {
    this.#live('reserve');
    this.#requireVmm('reserve');
    checkPositiveMultiple('bytes', bytes, this.pageBytes);
    const [id, base] = this.#invoke('reserve', () => this.#native.reserve(bytes));
    const range: AddressRange = Object.freeze({ id, base, bytes });
    this.#ranges.set(id, { range, owned: true });
    this.calls.reserve++;
    return range;
  }

  releaseRange(range: AddressRange): void {
    this.#live('releaseRange');
    const entry = this.#range(range, 'releaseRange');
    if (!entry.owned) {
      throw new DeviceError(
        'releaseRange',
        'the range was reserved by another CudaDevice, which releases it (disownRange() forgets it here)',
      );
    }
    const pages = entry.range.bytes / this.pageBytes;
    if (this.#findPage(entry, 0, pages, true, 'releaseRange') >= 0) {
      throw new DeviceError('releaseRange', 'the range still has mapped pages; unmap them first');
    }
    this.#invoke('releaseRange', () => this.#native.releaseRange(entry.range.id));
    this.#ranges.delete(entry.range.id);
    this.calls.releaseRange++;
  }

  map(range: AddressRange, offsetBytes: number, bytes: number): void {
    this.#live('map');
    this.#requireVmm('map');
    const { entry, first, count } = this.#pages(range, offsetBytes, bytes, 'map');
    const mapped = this.#findPage(entry, first, count, true, 'map');
    if (mapped >= 0) throw new DeviceError('map', `page ${mapped} is already mapped`);
    this.#invoke('map', () => this.#native.map(entry.range.id, offsetBytes, bytes), bytes);
    this.calls.map++;
  }

  unmap(range: AddressRange, offsetBytes: number, bytes: number): void {
    this.#live('unmap');
    this.#requireVmm('unmap');
    const { entry, first, count } = this.#pages(range, offsetBytes, bytes, 'unmap');
    const unmapped = this.#findPage(entry, first, count, false, 'unmap');
    if (unmapped >= 0) throw new DeviceError('unmap', `page ${unmapped} is not mapped`);
    this.#invoke('unmap', () => this.#native.unmap(entry.range.id, offsetBytes, bytes));
    this.calls.unmap++;
  }

  allocateSegment(bytes: number): Segment {
    this.#live('allocateSegment');
    checkSafeInteger('bytes', bytes, 1);
    const [id, base] = this.#invoke(
      'allocateSegment',
      () => this.#native.allocateSegment(bytes, this.mode === 'mallocAsync'),
      bytes,
    );
    const segment: Segment = Object.freeze({ id, base, bytes });
    this.#segments.set(id, segment);
    this.calls.allocateSegment++;
    return segment;
  }

  freeSegment(segment: Segment): void {
    this.#live('freeSegment');
    const known =
      typeof segment === 'object' && segment !== null
        ? this.#segments.get((segment as Segment).id)
        : undefined;
    if (known === undefined || known.base !== segment.base) {
      throw new DeviceError('freeSegment', 'unknown or already freed segment');
    }
    this.#invoke('freeSegment', () => this.#native.freeSegment(known.id));
    this.#segments.delete(known.id);
    this.calls.freeSegment++;
  }

  memInfo(): MemInfo {
    this.#live('memInfo');
    const [freeBytes, totalBytes] = this.#invoke('memInfo', () => this.#native.memInfo());
    this.calls.memInfo++;
    return { freeBytes, totalBytes };
  }

  /** Waits for all work on the device. */
  synchronize(): void {
    this.#live('synchronize');
    this.#invoke('synchronize', () => this.#native.synchronize());
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.#native.destroy();
    this.#ranges.clear();
    this.#segments.clear();
    this.#streams.clear();
    this.#events.clear();
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  #live(call: string): void {
    if (this.#destroyed) throw new DeviceDestroyedError(call);
  }

  #requireVmm(call: string): void {
    if (!this.vmm)
      throw new DeviceError(call, `this device has no virtual memory management (mode '${this.mode}')`);
  }

  #invoke<T>(call: string, fn: () => T, requestedBytes = 0): T {
    try {
      return fn();
    } catch (error) {
      throw toDeviceError(error, call, requestedBytes);
    }
  }

  #range(range: AddressRange, call: string): RangeEntry {
    if (typeof range !== 'object' || range === null || typeof range.base !== 'bigint') {
      throw new InvalidArgumentError('range', 'must be an AddressRange returned by reserve()', range);
    }
    const entry = this.#ranges.get(range.id);
    if (entry === undefined || entry.range.base !== range.base || entry.range.bytes !== range.bytes) {
      throw new DeviceError(call, 'unknown or already released address range');
    }
    return entry;
  }

  /**
   * First page of the run in the given state, from the process-wide registry (other threads map and
   * unmap too). A range its owner released meanwhile is a DeviceError.
   */
  #findPage(entry: RangeEntry, first: number, count: number, mapped: boolean, call: string): number {
    try {
      return this.#native.findPage(entry.range.id, first, count, mapped);
    } catch (error) {
      throw toDeviceError(error, call);
    }
  }

  #pages(range: AddressRange, offsetBytes: number, bytes: number, call: string) {
    const entry = this.#range(range, call);
    checkSafeInteger('offsetBytes', offsetBytes, 0);
    if (offsetBytes % this.pageBytes !== 0) {
      throw new ArgumentRangeError(
        'offsetBytes',
        `must be a multiple of the page size (${this.pageBytes})`,
        offsetBytes,
      );
    }
    checkPositiveMultiple('bytes', bytes, this.pageBytes);
    if (offsetBytes + bytes > entry.range.bytes) {
      throw new ArgumentRangeError(
        'bytes',
        `runs past the end of the ${entry.range.bytes}-byte range`,
        bytes,
      );
    }
    return { entry, first: offsetBytes / this.pageBytes, count: bytes / this.pageBytes };
  }

  /**
   * Checks that [block.ptr + byteOffset, + length) is inside the block and inside memory this
   * device backs now; returns the device address to use.
   */
  #locate(argument: string, block: unknown, length: number, byteOffset: unknown, call: string): bigint {
    this.#live(call);
    const b = checkBlock(argument, block);
    const offset = checkSafeInteger('byteOffset', byteOffset, 0);
    if (offset + length > b.bytes) {
      throw new ArgumentRangeError(
        'byteOffset',
        `${offset} + ${length} bytes runs past the end of the ${b.bytes}-byte ${argument}`,
        byteOffset,
      );
    }
    const start = b.ptr;
    const end = b.ptr + BigInt(b.bytes);
    for (const segment of this.#segments.values()) {
      if (start >= segment.base && end <= segment.base + BigInt(segment.bytes)) return start + BigInt(offset);
    }
    let inReleased = false;
    for (const entry of this.#ranges.values()) {
      const range = entry.range;
      if (start >= range.base && end <= range.base + BigInt(range.bytes)) {
        const page = BigInt(this.pageBytes);
        const first = Number((start - range.base) / page);
        const last = b.bytes === 0 ? first : Number((end - 1n - range.base) / page);
        let p = first;
        if (first < range.bytes / this.pageBytes) {
          try {
            p = this.#native.findPage(range.id, first, last - first + 1, false);
          } catch {
            // An adopted range its owner released: its addresses may since belong to a live range
            // in these books (the driver reuses them), so look on before refusing.
            inReleased = true;
            continue;
          }
        }
        if (p >= 0) {
          throw new ArgumentRangeError(
            argument,
            `lies on page ${p} of its range, which is not mapped`,
            block,
          );
        }
        return start + BigInt(offset);
      }
    }
    if (inReleased) {
      throw new ArgumentRangeError(
        argument,
        'lies in an address range that the device which reserved it has released',
        block,
      );
    }
    throw new ArgumentRangeError(
      argument,
      'does not lie in memory this device holds (freed, unmapped or foreign)',
      block,
    );
  }

  #stream(stream: unknown, call: string): number {
    this.#live(call);
    if (typeof stream !== 'number' || !this.#streams.has(stream)) {
      throw new DeviceError(call, `unknown or destroyed stream ${String(stream)}`);
    }
    return stream;
  }

  #event(event: unknown, call: string): number {
    this.#live(call);
    if (typeof event !== 'number' || !this.#events.has(event)) {
      throw new DeviceError(call, `unknown or destroyed event ${String(event)}`);
    }
    return event;
  }

  #makeStreams(): DeviceStreams {
    return {
      createStream: (): StreamHandle => {
        this.#live('createStream');
        const s = this.#invoke('createStream', () => this.#native.createStream());
        this.#streams.add(s);
        return s;
      },
      destroyStream: (stream: StreamHandle): void => {
        const s = this.#stream(stream, 'destroyStream');
        if (s === 0) throw new DeviceError('destroyStream', 'the default stream cannot be destroyed');
        this.#invoke('destroyStream', () => this.#native.destroyStream(s));
        this.#streams.delete(s);
      },
      synchronizeStream: (stream: StreamHandle): void => {
        const s = this.#stream(stream, 'synchronizeStream');
        this.#invoke('synchronizeStream', () => this.#native.synchronizeStream(s));
      },
      recordEvent: (stream: StreamHandle): EventHandle => {
        const s = this.#stream(stream, 'recordEvent');
        const e = this.#invoke('recordEvent', () => this.#native.recordEvent(s));
        this.#events.add(e);
        return e;
      },
      eventDone: (event: EventHandle): boolean => {
        const e = this.#event(event, 'eventDone');
        return this.#invoke('eventDone', () => this.#native.eventDone(e));
      },
      synchronizeEvent: (event: EventHandle): void => {
        const e = this.#event(event, 'synchronizeEvent');
        this.#invoke('synchronizeEvent', () => this.#native.synchronizeEvent(e));
      },
      destroyEvent: (event: EventHandle): void => {
        const e = this.#event(event, 'destroyEvent');
        this.#invoke('destroyEvent', () => this.#native.destroyEvent(e));
        this.#events.delete(e);
      },
      hasStream: (stream: StreamHandle): boolean => this.#streams.has(stream),
    };
  }

  #makeData(): CudaDeviceData {
    const copyIn = (
      call: string,
      block: BlockLike,
      source: ArrayBufferView,
      byteOffset: unknown,
      stream: number,
      async: boolean,
    ) => {
      const bytes = viewBytes('source', source);
      const ptr = this.#locate('block', block, bytes.byteLength, byteOffset ?? 0, call);
      this.#invoke(call, () => this.#native.copyIn(ptr, bytes, stream, async));
    };
    const copyOut = (
      call: string,
      block: BlockLike,
      target: ArrayBufferView,
      byteOffset: unknown,
      stream: number,
      async: boolean,
    ) => {
      const bytes = viewBytes('target', target);
      const ptr = this.#locate('block', block, bytes.byteLength, byteOffset ?? 0, call);
      this.#invoke(call, () => this.#native.copyOut(ptr, bytes, stream, async));
    };
    const fill = (call: string, block: BlockLike, byteValue: number, stream: number, async: boolean) => {
      checkSafeInteger('byteValue', byteValue, 0, 255);
      const b = checkBlock('block', block);
      const ptr = this.#locate('block', block, b.bytes, 0, call);
      this.#invoke(call, () => this.#native.fill(ptr, byteValue, b.bytes, stream, async));
    };
    return {
      copyIn: (block, source, byteOffset) => copyIn('copyIn', block, source, byteOffset, 0, false),
      copyOut: (block, target, byteOffset) => copyOut('copyOut', block, target, byteOffset, 0, false),
      fill: (block, byteValue) => fill('fill', block, byteValue, 0, false),
      copyInAsync: (block, source, stream, byteOffset) =>
        copyIn('copyInAsync', block, source, byteOffset, this.#stream(stream, 'copyInAsync'), true),
      copyOutAsync: (block, target, stream, byteOffset) =>
        copyOut('copyOutAsync', block, target, byteOffset, this.#stream(stream, 'copyOutAsync'), true),
      fillAsync: (block, byteValue, stream) =>
        fill('fillAsync', block, byteValue, this.#stream(stream, 'fillAsync'), true),
    };
  }
}
