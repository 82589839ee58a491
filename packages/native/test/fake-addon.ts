/**
 * A JavaScript stand-in for the compiled addon, with the same shape (src/native-api.ts): memory is
 * real (Uint8Arrays per segment and per mapped page) so data calls can be checked, and the kernels
 * run the CPU references. It lets CI test everything CudaDevice does in TypeScript — validation,
 * bookkeeping, error mapping — without a GPU. It also records every call, so tests can assert that
 * invalid requests never reach the addon.
 *
 * One FakeAddon models one process: like the real addon's RangeRegistry, its `registry` holds every
 * reserved range by a process-unique id with its pages, so several contexts (CudaDevice objects,
 * "threads") can adopt, map and unmap the same range; only the reserving context releases it, and
 * its destroy releases what it still owns. Queries (granularity, findPage) are not recorded.
 */
import { cropResizeCpu, preprocessFrameCpu } from '../src/cpu-kernels.js';
import type { NativeAddon, NativeContext, NativeLiveCounts, NativeProbe } from '../src/native-api.js';

export const FAKE_PAGE_BYTES = 2 * 1024 * 1024;

export interface FakeOptions {
  capacityBytes?: number;
  vmm?: boolean;
  /** Make the next native call with this name throw a CUDA error with this code. */
  failNext?: { call: string; cudaCode: number; cudaName: string };
  /** GPUs in the "process" (default 1); they differ only in index and PCI bus id. */
  deviceCount?: number;
}

/** A range in the process-wide registry. */
export interface FakeRange {
  readonly id: number;
  readonly deviceIndex: number;
  readonly owner: FakeContext;
  readonly base: bigint;
  readonly bytes: number;
  /** Page size of this range (the reserving context's, at reserve time). */
  readonly page: number;
  readonly pages: (Uint8Array | null)[];
  /** Most bytes per physical allocation (the reserving context's, at reserve time). */
  readonly allocation: number;
  /** Per page: the id of the allocation behind it, 0 when unmapped. */
  readonly allocationOf: number[];
}

function usage(kind: string, message: string): Error {
  return Object.assign(new Error(message), { kind });
}

function cudaError(call: string, cudaCode: number, cudaName: string): Error {
  return Object.assign(new Error(`${call} failed: ${cudaName} (${cudaCode})`), {
    kind: 'cuda',
    cudaCode,
    cudaName,
    call,
    api: 'runtime',
  });
}

export class FakeAddon implements NativeAddon {
  readonly abiVersion = 1;
  readonly calls: string[] = [];
  readonly contexts: FakeContext[] = [];
  failNext: FakeOptions['failNext'];
  readonly capacityBytes: number;
  readonly vmm: boolean;
  usedBytes = 0;
  nextAddress = 0x7f00_0000_0000n;
  readonly Context: new (
    deviceIndex: number,
  ) => NativeContext;
  pinnedCount = 0;
  readonly deviceCount: number;
  /** The process-wide range registry: range id → range. */
  readonly registry = new Map<number, FakeRange>();
  nextRangeId = 1;

  constructor(options: FakeOptions = {}) {
    this.capacityBytes = options.capacityBytes ?? 64 * FAKE_PAGE_BYTES;
    this.vmm = options.vmm ?? true;
    this.failNext = options.failNext;
    this.deviceCount = options.deviceCount ?? 1;
    const addon = this;
    this.Context = class extends FakeContext {
      constructor(deviceIndex: number) {
        super(addon, deviceIndex);
        addon.contexts.push(this);
      }
    };
  }

  /** Throws the queued failure if it is for `call`. */
  maybeFail(call: string): void {
    this.calls.push(call);
    if (this.failNext?.call === call) {
      const { cudaCode, cudaName } = this.failNext;
      this.failNext = undefined;
      throw cudaError(call, cudaCode, cudaName);
    }
  }

  probe(): NativeProbe {
    return {
      runtimeVersion: 13000,
      driverVersion: 13000,
      deviceCount: this.deviceCount,
      status: 0,
      statusName: 'cudaSuccess',
      statusMessage: 'no error',
      driverApi: true,
    };
  }

  deviceProperties(deviceIndex: number) {
    this.maybeFail('deviceProperties');
    if (deviceIndex < 0 || deviceIndex >= this.deviceCount)
      throw cudaError('cudaGetDeviceProperties', 101, 'cudaErrorInvalidDevice');
    return {
      name: 'Fake GPU',
      totalBytes: this.capacityBytes,
      computeCapabilityMajor: 9,
      computeCapabilityMinor: 0,
      multiprocessors: 132,
      vmmSupported: this.vmm,
      pciBusId: 1 + deviceIndex,
    };
  }

  allocPinned(bytes: number): ArrayBuffer {
    this.maybeFail('allocPinned');
    this.pinnedCount++;
    return new ArrayBuffer(bytes);
  }

  freePinned(_buffer: ArrayBuffer): void {
    this.maybeFail('freePinned');
    this.pinnedCount--;
  }

  pinnedLive(): number {
    return this.pinnedCount;
  }

  benchAllocation(_deviceIndex: number, _mode: string, _bytes: number, _iterations: number): number {
    this.maybeFail('benchAllocation');
    return 1000;
  }

  registryLive(): { ranges: number; mappedPages: number } {
    let mappedPages = 0;
    for (const r of this.registry.values()) mappedPages += r.pages.filter((p) => p !== null).length;
    return { ranges: this.registry.size, mappedPages };
  }

  take(bytes: number): bigint {
    if (this.usedBytes + bytes > this.capacityBytes)
      throw cudaError('cudaMalloc', 2, 'cudaErrorMemoryAllocation');
    this.usedBytes += bytes;
    const base = this.nextAddress;
    this.nextAddress += BigInt(Math.ceil(bytes / FAKE_PAGE_BYTES) * FAKE_PAGE_BYTES + FAKE_PAGE_BYTES);
    return base;
  }
}

export class FakeContext implements NativeContext {
  /** This context's books: ranges it reserved (owned) or adopted. */
  readonly ranges = new Map<number, { record: FakeRange; owned: boolean }>();
  readonly segments = new Map<number, { base: bigint; data: Uint8Array }>();
  readonly streams = new Set<number>();
  readonly events = new Set<number>();
  destroyed = false;
  #nextId = 1;

  constructor(
    readonly addon: FakeAddon,
    readonly deviceIndex: number,
  ) {}

  #call(name: string): void {
    if (this.destroyed) throw Object.assign(new Error('destroyed'), { kind: 'destroyed' });
    this.addon.maybeFail(name);
  }

  granularity(): number {
    return FAKE_PAGE_BYTES;
  }

  #pageBytes = FAKE_PAGE_BYTES;
  #allocationBytes = 0;
  #nextAllocation = 1;

  setPageBytes(bytes: number): void {
    this.#call('setPageBytes');
    if (bytes <= 0 || bytes % FAKE_PAGE_BYTES !== 0)
      throw usage('range', 'setPageBytes: not a multiple of the granularity');
    if (this.ranges.size > 0) throw usage('state', 'setPageBytes: ranges are already reserved');
    this.#pageBytes = bytes;
  }

  setAllocationBytes(bytes: number): void {
    this.#call('setAllocationBytes');
    if (bytes <= 0 || bytes % this.#pageBytes !== 0)
      throw usage('range', 'setAllocationBytes: not a multiple of the page size');
    if (this.ranges.size > 0) throw usage('state', 'setAllocationBytes: ranges are already reserved');
    this.#allocationBytes = bytes;
  }

  /** A live range in these books (released by its owner: a 'handle' error, as in the addon). */
  #record(id: number): FakeRange {
    const entry = this.ranges.get(id);
    if (entry === undefined) throw usage('handle', `unknown or released address range ${id}`);
    if (this.addon.registry.get(id) !== entry.record)
      throw usage('handle', `address range ${id} was released by its owner`);
    return entry.record;
  }

  reserve(bytes: number): [number, bigint] {
    this.#call('reserve');
    const base = this.addon.nextAddress;
    this.addon.nextAddress += BigInt(bytes + this.#pageBytes);
    const id = this.addon.nextRangeId++;
    const record: FakeRange = {
      id,
      deviceIndex: this.deviceIndex,
      owner: this,
      base,
      bytes,
      page: this.#pageBytes,
      pages: new Array(bytes / this.#pageBytes).fill(null),
      allocation: Math.max(this.#pageBytes, this.#allocationBytes),
      allocationOf: new Array(bytes / this.#pageBytes).fill(0),
    };
    this.addon.registry.set(id, record);
    this.ranges.set(id, { record, owned: true });
    return [id, base];
  }

  releaseRange(id: number): void {
    this.#call('releaseRange');
    const range = this.#record(id);
    if (!this.ranges.get(id)?.owned) throw usage('state', 'only the reserving context releases a range');
    if (range.pages.some((p) => p !== null)) throw usage('state', 'mapped pages');
    this.addon.registry.delete(id);
    this.ranges.delete(id);
  }

  adoptRange(id: number, base: bigint, bytes: number): void {
    this.#call('adoptRange');
    const record = this.addon.registry.get(id);
    if (record === undefined) throw usage('handle', `no live address range ${id} in this process`);
    if (record.base !== base || record.bytes !== bytes)
      throw usage('handle', `base or size do not match address range ${id}`);
    if (record.deviceIndex !== this.deviceIndex)
      throw usage('device', `address range ${id} belongs to GPU ${record.deviceIndex}`);
    if (record.page !== this.#pageBytes)
      throw usage(
        'range',
        `adoptRange: address range ${id} has ${record.page}-byte pages, not ${this.#pageBytes}`,
      );
    if (!this.ranges.has(id)) this.ranges.set(id, { record, owned: false });
  }

  disownRange(id: number): void {
    this.#call('disownRange');
    const entry = this.ranges.get(id);
    if (entry === undefined) throw usage('handle', `unknown range ${id}`);
    if (entry.owned) throw usage('state', 'owned range');
    this.ranges.delete(id);
  }

  findPage(id: number, firstPage: number, count: number, mapped: boolean): number {
    if (this.destroyed) throw usage('destroyed', 'destroyed');
    const range = this.#record(id);
    if (firstPage + count > range.pages.length) throw usage('range', 'findPage: outside the range');
    for (let p = firstPage; p < firstPage + count; p++) if ((range.pages[p] !== null) === mapped) return p;
    return -1;
  }

  map(id: number, offsetBytes: number, bytes: number): void {
    this.#call('map');
    const range = this.#record(id);
    const first = offsetBytes / range.page;
    const count = bytes / range.page;
    if (this.addon.usedBytes + bytes > this.addon.capacityBytes) {
      throw Object.assign(new Error('cuMemCreate: out of memory'), {
        kind: 'cuda',
        cudaCode: 2,
        cudaName: 'CUDA_ERROR_OUT_OF_MEMORY',
        call: 'cuMemCreate',
        api: 'driver',
      });
    }
    for (let p = first; p < first + count; p++) {
      if (range.pages[p] !== null) throw usage('state', 'already mapped');
    }
    const window = range.allocation / range.page;
    for (let p = first; p < first + count; p++) {
      if (p === first || p % window === 0) this.#nextAllocation++;
      range.allocationOf[p] = this.#nextAllocation;
      range.pages[p] = new Uint8Array(range.page).fill(0xcd);
    }
    this.addon.usedBytes += bytes;
  }

  unmap(id: number, offsetBytes: number, bytes: number): void {
    this.#call('unmap');
    const range = this.#record(id);
    const first = offsetBytes / range.page;
    const count = bytes / range.page;
    for (let p = first; p < first + count; p++) {
      if (range.pages[p] === null) throw usage('state', 'not mapped');
    }
    const at = range.allocationOf;
    const end = first + count;
    if ((first > 0 && at[first - 1] === at[first]) || (end < at.length && at[end] === at[end - 1]))
      throw usage(
        'state',
        'unmap: the run must cover whole allocations of earlier map calls (allocationBytes)',
      );
    for (let p = first; p < first + count; p++) {
      range.pages[p] = null;
      range.allocationOf[p] = 0;
    }
    this.addon.usedBytes -= bytes;
  }

  allocateSegment(bytes: number, _async: boolean): [number, bigint] {
    this.#call('allocateSegment');
    const base = this.addon.take(bytes);
    const id = this.#nextId++;
    this.segments.set(id, { base, data: new Uint8Array(bytes).fill(0xcd) });
    return [id, base];
  }

  freeSegment(id: number): void {
    this.#call('freeSegment');
    const segment = this.segments.get(id);
    if (segment === undefined) throw Object.assign(new Error('unknown segment'), { kind: 'handle' });
    this.addon.usedBytes -= segment.data.length;
    this.segments.delete(id);
  }

  memInfo(): [number, number] {
    this.#call('memInfo');
    return [this.addon.capacityBytes - this.addon.usedBytes, this.addon.capacityBytes];
  }

  synchronize(): void {
    this.#call('synchronize');
  }

  /** The byte at device address `ptr`; throws on an address the fake does not back (a wrapper bug). */
  #at(ptr: bigint): { data: Uint8Array; index: number } {
    for (const s of this.segments.values()) {
      if (ptr >= s.base && ptr < s.base + BigInt(s.data.length))
        return { data: s.data, index: Number(ptr - s.base) };
    }
    // One address space per process: any mapped page of any live range is reachable.
    for (const r of this.addon.registry.values()) {
      if (ptr >= r.base && ptr < r.base + BigInt(r.bytes)) {
        const offset = Number(ptr - r.base);
        const page = r.pages[Math.floor(offset / r.page)];
        if (page) return { data: page, index: offset % r.page };
      }
    }
    throw new Error(`fake addon: wild device access at 0x${ptr.toString(16)}`);
  }

  write(ptr: bigint, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const at = this.#at(ptr + BigInt(i));
      at.data[at.index] = bytes[i] as number;
    }
  }

  read(ptr: bigint, bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const at = this.#at(ptr + BigInt(i));
      bytes[i] = at.data[at.index] as number;
    }
  }

  #checkStream(stream: number): void {
    if (stream !== 0 && !this.streams.has(stream))
      throw Object.assign(new Error('unknown stream'), { kind: 'handle' });
  }

  copyIn(ptr: bigint, source: Uint8Array, stream: number, _async: boolean): void {
    this.#call('copyIn');
    this.#checkStream(stream);
    this.write(ptr, source);
  }

  copyOut(ptr: bigint, target: Uint8Array, stream: number, _async: boolean): void {
    this.#call('copyOut');
    this.#checkStream(stream);
    this.read(ptr, target);
  }

  fill(ptr: bigint, byteValue: number, bytes: number, stream: number, _async: boolean): void {
    this.#call('fill');
    this.#checkStream(stream);
    this.write(ptr, new Uint8Array(bytes).fill(byteValue));
  }

  createStream(): number {
    this.#call('createStream');
    const id = this.#nextId++;
    this.streams.add(id);
    return id;
  }

  destroyStream(stream: number): void {
    this.#call('destroyStream');
    this.streams.delete(stream);
  }

  synchronizeStream(stream: number): void {
    this.#call('synchronizeStream');
    this.#checkStream(stream);
  }

  recordEvent(stream: number): number {
    this.#call('recordEvent');
    this.#checkStream(stream);
    const id = this.#nextId++;
    this.events.add(id);
    return id;
  }

  eventDone(_event: number): boolean {
    this.#call('eventDone');
    return true;
  }

  synchronizeEvent(_event: number): void {
    this.#call('synchronizeEvent');
  }

  destroyEvent(event: number): void {
    this.#call('destroyEvent');
    this.events.delete(event);
  }

  preprocessFrame(
    source: bigint,
    width: number,
    height: number,
    target: bigint,
    targetWidth: number,
    targetHeight: number,
    mean: Float32Array,
    std: Float32Array,
    stream: number,
  ): void {
    this.#call('preprocessFrame');
    this.#checkStream(stream);
    const frame = new Uint8Array(width * height * 3);
    this.read(source, frame);
    const out = preprocessFrameCpu(frame, width, height, { targetWidth, targetHeight, mean, std });
    this.write(target, new Uint8Array(out.buffer));
  }

  cropResize(
    image: bigint,
    height: number,
    width: number,
    boxes: Float32Array,
    target: bigint,
    outHeight: number,
    outWidth: number,
    stream: number,
  ): void {
    this.#call('cropResize');
    this.#checkStream(stream);
    const bytes = new Uint8Array(3 * width * height * 2);
    this.read(image, bytes);
    const out = cropResizeCpu(new Uint16Array(bytes.buffer), width, height, boxes, { outHeight, outWidth });
    this.write(target, new Uint8Array(out.buffer));
  }

  live(): NativeLiveCounts {
    let ranges = 0;
    let adoptedRanges = 0;
    let mappedPages = 0;
    for (const { record, owned } of this.ranges.values()) {
      if (!owned) {
        adoptedRanges++;
        continue;
      }
      if (this.addon.registry.get(record.id) !== record) continue;
      ranges++;
      mappedPages += record.pages.filter((p) => p !== null).length;
    }
    return {
      ranges,
      mappedPages,
      adoptedRanges,
      segments: this.segments.size,
      streams: this.streams.size,
      events: this.events.size,
    };
  }

  destroy(): void {
    if (this.destroyed) return;
    for (const { record, owned } of this.ranges.values()) {
      if (!owned || this.addon.registry.get(record.id) !== record) continue; // adopted: the owner releases it
      for (const p of record.pages) if (p !== null) this.addon.usedBytes -= record.page;
      this.addon.registry.delete(record.id);
    }
    for (const s of this.segments.values()) this.addon.usedBytes -= s.data.length;
    this.ranges.clear();
    this.segments.clear();
    this.streams.clear();
    this.events.clear();
    this.destroyed = true;
  }
}
