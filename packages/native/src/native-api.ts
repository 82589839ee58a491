/**
 * The shape of the compiled addon (src/native/addon.cc), as TypeScript sees it. The addon works on
 * plain values that the wrapper has already validated: sizes as safe integers, device addresses as
 * bigint, handles as small integers, host memory as typed arrays. Tests substitute a fake with
 * this shape to check the wrapper without a GPU.
 */

export interface NativeProbe {
  runtimeVersion: number;
  driverVersion: number;
  deviceCount: number;
  /** cudaError_t of cudaGetDeviceCount: 0 success, 35 no driver, 100 no device. */
  status: number;
  statusName: string;
  statusMessage: string;
  /** Whether the driver's VMM entry points were resolved. */
  driverApi: boolean;
  driverApiError?: string;
}

export interface NativeDeviceProperties {
  name: string;
  totalBytes: number;
  computeCapabilityMajor: number;
  computeCapabilityMinor: number;
  multiprocessors: number;
  vmmSupported: boolean;
  pciBusId: number;
}

export interface NativeLiveCounts {
  ranges: number;
  mappedPages: number;
  segments: number;
  streams: number;
  events: number;
  /** Ranges reserved by another context of the process and adopted here (not counted in `ranges`). */
  adoptedRanges: number;
}

/** The process-wide range registry (every thread, every context). */
export interface NativeRegistryCounts {
  ranges: number;
  mappedPages: number;
}

export interface NativeContext {
  granularity(): number;
  /** Sets the VMM page (a multiple of granularity()) before any range is reserved. */
  setPageBytes(bytes: number): void;
  /** Sets the most bytes per physical allocation (a multiple of the page) before any range is reserved. */
  setAllocationBytes(bytes: number): void;
  reserve(bytes: number): [id: number, base: bigint];
  releaseRange(id: number): void;
  map(id: number, offsetBytes: number, bytes: number): void;
  unmap(id: number, offsetBytes: number, bytes: number): void;
  /** Enters a live range reserved by another context of this process (same GPU) into this context's books. */
  adoptRange(id: number, base: bigint, bytes: number): void;
  /** Forgets an adopted range without touching its pages. */
  disownRange(id: number): void;
  /** First page of [firstPage, firstPage + count) whose mapped state is `mapped`, or -1 (process-wide truth). */
  findPage(id: number, firstPage: number, count: number, mapped: boolean): number;
  allocateSegment(bytes: number, async: boolean): [id: number, base: bigint];
  freeSegment(id: number): void;
  memInfo(): [freeBytes: number, totalBytes: number];
  synchronize(): void;
  copyIn(ptr: bigint, source: Uint8Array, stream: number, async: boolean): void;
  copyOut(ptr: bigint, target: Uint8Array, stream: number, async: boolean): void;
  fill(ptr: bigint, byteValue: number, bytes: number, stream: number, async: boolean): void;
  createStream(): number;
  destroyStream(stream: number): void;
  synchronizeStream(stream: number): void;
  recordEvent(stream: number): number;
  eventDone(event: number): boolean;
  synchronizeEvent(event: number): void;
  destroyEvent(event: number): void;
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
  ): void;
  cropResize(
    image: bigint,
    height: number,
    width: number,
    boxes: Float32Array,
    target: bigint,
    outHeight: number,
    outWidth: number,
    stream: number,
  ): void;
  live(): NativeLiveCounts;
  destroy(): void;
  /** @internal Tests only: where the next segment, stream or event id is looked for (1 … 2^31 − 1). */
  setNextIdForTest?(id: number): void;
}

export interface NativeAddon {
  abiVersion: number;
  Context: new (deviceIndex: number) => NativeContext;
  probe(): NativeProbe;
  deviceProperties(deviceIndex: number): NativeDeviceProperties;
  allocPinned(bytes: number): ArrayBuffer;
  freePinned(buffer: ArrayBuffer): void;
  pinnedLive(): number;
  benchAllocation(deviceIndex: number, mode: string, bytes: number, iterations: number): number;
  registryLive(): NativeRegistryCounts;
}
