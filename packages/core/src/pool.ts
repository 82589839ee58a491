/**
 * Pool: what users call. It ties a placement policy to a backing (device memory), and keeps the
 * books: blocks, statistics, leak detection, OOM recovery, stream-ordered reuse, traces.
 *
 * Invariants (checked by `checkInvariants()` and the property tests):
 * - live blocks never overlap; every live block is placed by the policy and occupied in the backing;
 * - liveBytes = Σ requested bytes of live blocks; reservedBytes = backing.reservedBytes;
 * - a failed acquire leaves every counter and every structure as it was before the call,
 *   except memory the OOM recovery released (which is the point of recovery).
 */
import type { Backing } from './backing.js';
import { Block, type BlockOwner } from './block.js';
import { BlockCache } from './block-cache.js';
import type { Device, EventHandle, StreamHandle } from './device.js';
import { HostDevice } from './devices/host-device.js';
import { bytesOfShape, checkBytes, checkDType, type DType, MAX_BLOCK_BYTES } from './dtype.js';
import {
  ArgumentRangeError,
  DoubleReleaseError,
  ForeignBlockError,
  InvalidArgumentError,
  InvariantError,
  isDeviceError,
  isDeviceRefusal,
  OutOfMemoryError,
  PoolDestroyedError,
} from './errors.js';
import { LeakDetector, type LeakReport } from './leak-detector.js';
import { POLICY_GRANULE_BYTES, type Policy } from './policies/policy.js';
import {
  type AcquireOptions,
  type AcquireRequest,
  checkOptionalFraction,
  checkOptionalPositive,
  defaultPolicyName,
  isBacking,
  makeVmmBacking,
  mapsPages,
  type PoolOptions,
  type PrewarmSpec,
  resolvePolicy,
} from './pool-options.js';
import { SegmentBacking } from './segment-backing.js';
import type { BlockSnapshot, PoolSnapshot } from './snapshot.js';
import type { PoolStats } from './stats.js';
import { TraceRecorder, type TraceRecorderOptions } from './trace/trace-recorder.js';
import { grown } from './typed-arrays.js';
import { alignDown, alignUp, isPowerOfTwo, MiB } from './units.js';

export type { AcquireOptions, AcquireRequest, PoolOptions, PrewarmSpec };

interface PendingFree {
  slot: number;
  stream: StreamHandle;
  event: EventHandle;
}

/**
 * A pending free finished early for its own stream (see finishPending): its bytes are free, but that
 * stream's work on them may still run until the event, so another stream that gets any of them waits.
 */
interface UnsettledFree {
  address: number;
  sizeBytes: number;
  stream: StreamHandle;
  event: EventHandle;
}

const MAX_PENDING_FREES = 4096;
const MAX_LEAK_REPORTS = 100;
/** The longest period setInterval keeps: Node.js runs a longer one every millisecond instead. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** One key per (dtype, shape): what exactShape caches by, and what the prewarm floor counts once. */
function shapeKey(dtype: DType | undefined, shape: readonly number[]): string {
  return `${dtype}:${shape.join(',')}`;
}

/** Policy instances attached to a pool: one holds that pool's free space, so it serves no other. */
const attachedPolicies = new WeakSet<Policy>();

export class Pool implements BlockOwner, Disposable {
  readonly device: Device;
  readonly name: string;
  readonly policy: Policy;
  readonly limitBytes: number;
  private readonly backing: Backing;
  private readonly leakDetector: LeakDetector | null;
  /** Runs the leakAgeMs timer: the leak detector, or a detector of its own when GC detection is off. */
  private ageChecker: LeakDetector | null = null;
  private releaseTimer: ReturnType<typeof setInterval> | undefined;
  /** Blocks whose id & leakSampleMask is 0 are watched. */
  private readonly leakSampleMask: number;
  private readonly blockCache: BlockCache | null;
  private readonly captureStacks: boolean;
  private readonly leakAgeMs: number;
  private readonly onLeak: ((report: LeakReport) => void) | undefined;
  private destroyedFlag = false;
  /** False until the backing has given everything back (a refused destroy() can be retried). */
  private backingDestroyed = false;
  private recorder: TraceRecorder | null = null;

  // Per-slot books (slots come from the policy). No strong reference to Block objects is kept,
  // so a dropped block can be garbage-collected and reported as a leak.
  private slotOccupied = new Uint8Array(1024);
  private slotLive = new Uint8Array(1024);
  private slotBytes = new Float64Array(1024);
  private slotBlockId = new Float64Array(1024);
  private slotCreatedMs = new Float64Array(1024);
  private slotStream = new Float64Array(1024);
  private slotShape: (readonly number[] | undefined)[] = [];
  private slotDtype: (DType | undefined)[] = [];
  private slotStack: (string | undefined)[] = [];
  private slotAgedReported = new Uint8Array(1024);
  private pending: PendingFree[] = [];
  private unsettled: UnsettledFree[] = [];
  /** The stream of every unsettled free, or -1 when they belong to several (or none). */
  private unsettledStream: StreamHandle = -1;
  private readonly leakReportsKept: LeakReport[] = [];
  /**
   * The retain floor of prewarm(): per shape and dtype, the most bytes one call prewarmed (a shape
   * prewarmed again reuses the same memory, so calls do not add up; different shapes do).
   */
  private prewarmedByShape = new Map<string, number>();
  private prewarmedBytes = 0;
  private nextBlockId = 0;

  // Statistics.
  private acquires = 0;
  private reuses = 0;
  private returns = 0;
  private leaks = 0;
  private fragmentationEvents = 0;
  private outOfMemoryErrors = 0;
  private trims = 0;
  private crossStreamWaits = 0;
  private liveBlocks = 0;
  private liveBytes = 0;
  private peakLiveBytes = 0;
  private peakReservedBytes = 0;

  constructor(options: PoolOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new InvalidArgumentError('options', 'must be an object with at least { device }', options);
    }
    const device = options.device;
    if (typeof device !== 'object' || device === null || typeof device.pageBytes !== 'number') {
      throw new InvalidArgumentError(
        'device',
        'must be a Device (SimulatedDevice, HostDevice, CudaDevice, …)',
        device,
      );
    }
    this.device = device;
    this.limitBytes = checkOptionalPositive(options.limitBytes, 'limitBytes') ?? device.totalBytes;
    if (options.name !== undefined && options.name !== null && typeof options.name !== 'string') {
      throw new InvalidArgumentError('name', 'must be a string', options.name);
    }
    this.name = options.name ?? `pool(${device.name})`;
    this.policy = resolvePolicy(options.policy, defaultPolicyName(device, options));
    if (attachedPolicies.has(this.policy)) {
      throw new InvalidArgumentError(
        'policy',
        'is a Policy instance that another pool uses (its free space is that pool’s); pass a policy name or a factory',
      );
    }
    checkOptionalFraction(options.retainFraction, 'retainFraction');
    checkOptionalPositive(options.retainMinBytes, 'retainMinBytes', true);
    this.leakAgeMs = checkOptionalPositive(options.leakAgeMs, 'leakAgeMs') ?? 0;
    if (options.onLeak !== undefined && typeof options.onLeak !== 'function') {
      throw new InvalidArgumentError('onLeak', 'must be a function', options.onLeak);
    }
    this.onLeak = options.onLeak;
    if (options.captureStacks !== undefined && typeof options.captureStacks !== 'boolean') {
      throw new InvalidArgumentError('captureStacks', 'must be true or false', options.captureStacks);
    }
    this.captureStacks = options.captureStacks === true;
    if (options.mode !== undefined && options.mode !== 'vmm' && options.mode !== 'segments') {
      throw new InvalidArgumentError('mode', "must be 'vmm' or 'segments'", options.mode);
    }
    if (options.mode === 'vmm' && !device.vmm) {
      throw new InvalidArgumentError(
        'mode',
        "is 'vmm' but the device has no virtual memory management",
        options.mode,
      );
    }
    // arenaBytes is checked in every mode, so bad input throws whatever backing is chosen.
    const arenaBytes = checkOptionalPositive(options.arenaBytes, 'arenaBytes');
    if (arenaBytes !== undefined && alignUp(arenaBytes, device.pageBytes) > Number.MAX_SAFE_INTEGER) {
      // Past 2^53 a byte count is no longer exact (and the device would name its own argument).
      throw new ArgumentRangeError(
        'arenaBytes',
        'must be at most 2^53 − 1 bytes, rounded up to pages',
        arenaBytes,
      );
    }
    const detect = options.detectLeaks ?? 'sampled';
    if (![true, false, 'all', 'sampled', 'off'].includes(detect)) {
      throw new InvalidArgumentError('detectLeaks', "must be true, false, 'all', 'sampled' or 'off'", detect);
    }
    const sampleEvery = options.leakSampleEvery ?? 256;
    if (!isPowerOfTwo(sampleEvery)) {
      throw new ArgumentRangeError('leakSampleEvery', 'must be a power of two', sampleEvery);
    }
    this.leakSampleMask = detect === 'sampled' ? sampleEvery - 1 : 0;
    this.leakDetector =
      detect === false || detect === 'off' ? null : new LeakDetector((slot) => this.onCollected(slot));
    const cacheBytes = checkOptionalPositive(options.blockCacheBytes, 'blockCacheBytes', true) ?? 1024 * 1024;
    this.blockCache = cacheBytes > 0 && !this.policy.cachesBlocks ? new BlockCache(cacheBytes) : null;
    const releaseAfterMs = checkOptionalPositive(options.releaseAfterMs, 'releaseAfterMs');
    if (releaseAfterMs !== undefined && releaseAfterMs > MAX_TIMER_MS) {
      throw new ArgumentRangeError(
        'releaseAfterMs',
        `must be at most ${MAX_TIMER_MS} ms (about 24.8 days), the longest period of a Node.js timer`,
        releaseAfterMs,
      );
    }
    checkOptionalPositive(options.highWaterSlack, 'highWaterSlack', true);
    checkOptionalFraction(options.mapAheadFraction, 'mapAheadFraction');
    if (
      options.swapsPerRaise !== undefined &&
      (typeof options.swapsPerRaise !== 'number' || !(options.swapsPerRaise >= 0))
    ) {
      throw new ArgumentRangeError(
        'swapsPerRaise',
        'must be a number ≥ 0 (Infinity: no limit)',
        options.swapsPerRaise,
      );
    }
    if (
      options.mappedFitFactor !== undefined &&
      (typeof options.mappedFitFactor !== 'number' ||
        !(options.mappedFitFactor === 0 || options.mappedFitFactor >= 1))
    ) {
      throw new ArgumentRangeError(
        'mappedFitFactor',
        'must be 0 (off) or a number ≥ 1 (Infinity: any size)',
        options.mappedFitFactor,
      );
    }
    const custom = options.backing;
    if (custom !== undefined && !isBacking(custom)) {
      throw new InvalidArgumentError(
        'backing',
        'must be a Backing (see backing.ts): attach, grow, occupy, vacate, trim, arenaOf, snapshot and destroy methods, and pageBytes > 0',
        custom,
      );
    }
    // Every option is checked above: only now is anything reserved on the device, so bad input
    // never leaves a reservation behind.
    if (custom !== undefined) {
      this.backing = custom;
    } else if (mapsPages(device, options.mode)) {
      this.backing = makeVmmBacking(device, this.limitBytes, options);
    } else {
      this.backing = new SegmentBacking({ device, limitBytes: this.limitBytes });
    }
    try {
      this.backing.attach(this.policy);
    } catch (error) {
      // A policy that refuses its space: give back what this pool reserved (a custom backing is the caller's).
      if (custom === undefined) this.backing.destroy();
      throw error;
    }
    attachedPolicies.add(this.policy);
    if (releaseAfterMs !== undefined) {
      this.releaseTimer = setInterval(
        () => {
          try {
            this.releaseIdle();
          } catch {
            // A timer callback that throws would crash the process. The device refused to unmap:
            // the pages stay mapped and counted, and the next period tries again.
          }
        },
        Math.max(10, releaseAfterMs),
      );
      this.releaseTimer.unref?.();
    }
    if (this.leakAgeMs > 0) {
      // leakAgeMs is an option of its own: its timer runs whether or not GC leak detection is on
      // (unref'd by LeakDetector).
      this.ageChecker = this.leakDetector ?? new LeakDetector(() => {});
      this.ageChecker.startAgeChecks(Math.max(50, Math.min(this.leakAgeMs / 2, 10_000)), () =>
        this.checkAges(),
      );
    }
  }

  get destroyed(): boolean {
    return this.destroyedFlag;
  }

  get pageBytes(): number {
    return this.backing.pageBytes;
  }

  /**
   * Hands out a block of `request` bytes, or of a tensor `{ shape, dtype = 'float16' }`.
   * Throws OutOfMemoryError when the device refuses even after the pool released its cache.
   */
  acquire(request: AcquireRequest, options?: AcquireOptions): Block {
    if (this.destroyedFlag) throw new PoolDestroyedError('acquire');
    // The common call, acquire(bytes) without options, stays in this function; shapes and options
    // are parsed out of line, which keeps it small enough for V8 to inline the placement into it.
    if (
      typeof request === 'number' &&
      options === undefined &&
      Number.isInteger(request) &&
      request >= 0 &&
      request <= MAX_BLOCK_BYTES
    ) {
      return this.acquireParsed(request, undefined, undefined, 0, POLICY_GRANULE_BYTES);
    }
    return this.acquireChecked(request, options);
  }

  /** acquire() for shapes, options, or input that may be invalid: checks everything first. */
  private acquireChecked(request: AcquireRequest, options: AcquireOptions | undefined): Block {
    let bytes: number;
    let shape: readonly number[] | undefined;
    let dtype: DType | undefined;
    if (typeof request === 'number') {
      bytes = checkBytes(request, 'bytes');
    } else if (typeof request === 'object' && request !== null && !Array.isArray(request)) {
      dtype = request.dtype === undefined ? 'float16' : checkDType(request.dtype, 'dtype');
      bytes = bytesOfShape(request.shape, dtype);
      shape = Object.freeze([...request.shape]);
    } else {
      throw new InvalidArgumentError('request', 'must be a byte count or { shape, dtype }', request);
    }
    let stream: StreamHandle = 0;
    let alignmentBytes = POLICY_GRANULE_BYTES;
    if (options !== undefined) {
      if (typeof options !== 'object' || options === null) {
        throw new InvalidArgumentError('options', 'must be an object { stream?, alignmentBytes? }', options);
      }
      if (options.stream !== undefined) {
        if (!Number.isInteger(options.stream) || options.stream < 0) {
          throw new ArgumentRangeError(
            'stream',
            'must be a stream handle (a non-negative integer)',
            options.stream,
          );
        }
        // A stream the device does not know would make the block unreleasable (recordEvent refuses it).
        const streams = this.device.streams;
        if (options.stream !== 0 && streams?.hasStream !== undefined && !streams.hasStream(options.stream)) {
          throw new ArgumentRangeError(
            'stream',
            'must be a live stream of this device (from createStream(), not destroyed), or 0',
            options.stream,
          );
        }
        stream = options.stream;
      }
      if (options.alignmentBytes !== undefined) {
        const a = options.alignmentBytes;
        if (!isPowerOfTwo(a) || a > this.backing.pageBytes) {
          throw new ArgumentRangeError(
            'alignmentBytes',
            `must be a power of two no larger than the page size (${this.backing.pageBytes})`,
            a,
          );
        }
        if (a > alignmentBytes) alignmentBytes = a;
      }
    }
    return this.acquireParsed(bytes, shape, dtype, stream, alignmentBytes);
  }

  /** acquire() once its arguments are checked. */
  private acquireParsed(
    bytes: number,
    shape: readonly number[] | undefined,
    dtype: DType | undefined,
    stream: StreamHandle,
    alignmentBytes: number,
  ): Block {
    const sizeBytes =
      bytes <= POLICY_GRANULE_BYTES ? POLICY_GRANULE_BYTES : alignUp(bytes, POLICY_GRANULE_BYTES);
    const key = shape !== undefined && this.policy.cachesBlocks ? shapeKey(dtype, shape) : undefined;

    // Finish this stream's pending frees (and any other stream's that are done) first, so a block
    // released on this stream is reused at once. Cached blocks are safe for any stream: only frees
    // whose work is done reach the cache.
    if (this.pending.length > 0) this.finishPending(false, stream);
    let slot =
      this.blockCache !== null && alignmentBytes === POLICY_GRANULE_BYTES
        ? this.blockCache.take(sizeBytes)
        : -1;
    let reused = true;
    if (slot < 0) {
      const callsBefore = this.backing.deviceCalls;
      slot = this.place(sizeBytes, alignmentBytes, key, bytes);
      if (this.backing.deviceCalls !== callsBefore) {
        reused = false;
        // Reserved memory rises only with a call that obtains memory (Backing.deviceCalls).
        if (this.backing.reservedBytes > this.peakReservedBytes)
          this.peakReservedBytes = this.backing.reservedBytes;
      }
    }
    // Rare: only while another stream's early-finished frees may still be in use (see finishPending).
    if (this.unsettled.length > 0 && this.unsettledStream !== stream) {
      try {
        this.settleFor(slot, stream);
      } catch (error) {
        // The device refused the wait: the block goes back (its bytes stay unsettled), so a failed
        // acquire holds nothing.
        this.freeSlot(slot);
        throw error;
      }
    }
    // A cached block, or one placed on mapped pages: reserved memory is unchanged.
    if (reused) this.reuses++;
    const id = this.nextBlockId++;
    this.slotLive[slot] = 1;
    this.slotBytes[slot] = bytes;
    this.slotBlockId[slot] = id;
    this.slotStream[slot] = stream;
    // Shapes are rare: the slot's entries are undefined unless set here (retire clears them).
    if (shape !== undefined) {
      this.slotShape[slot] = shape;
      this.slotDtype[slot] = dtype;
    }
    if (this.leakAgeMs > 0 || this.captureStacks) this.noteCreation(slot);
    const address = this.policy.addressOf(slot);
    const block = new Block(
      this,
      id,
      slot,
      address,
      this.backing.arenaOf(address),
      bytes,
      shape,
      dtype,
      stream,
    );

    this.acquires++;
    this.liveBlocks++;
    this.liveBytes += bytes;
    if (this.liveBytes > this.peakLiveBytes) this.peakLiveBytes = this.liveBytes;
    if (this.leakDetector !== null && (id & this.leakSampleMask) === 0) this.leakDetector.watch(block, slot);
    if (this.recorder !== null) this.recorder.acquired(id, bytes);
    return block;
  }

  /** Creation time (leakAgeMs, snapshots) and stack (captureStacks) of a new block. */
  private noteCreation(slot: number): void {
    this.slotCreatedMs[slot] = Date.now();
    if (this.leakAgeMs > 0) this.slotAgedReported[slot] = 0;
    if (this.captureStacks) this.slotStack[slot] = new Error('allocated here').stack;
  }

  /** Same as `block.release()`, with a check that the block is this pool's. */
  release(block: Block): void {
    if (!(block instanceof Block))
      throw new InvalidArgumentError('block', 'must be a Block from acquire()', block);
    if (block._owner === null) throw new DoubleReleaseError(`block #${block.id}`);
    if (block._owner !== this) throw new ForeignBlockError(`block #${block.id}`);
    this.releaseBlock(block);
  }

  /** @internal Called by Block.release(). */
  releaseBlock(block: Block): void {
    if (block._owner !== this) {
      if (block._owner === null) throw new DoubleReleaseError(`block #${block.id}`);
      throw new ForeignBlockError(`block #${block.id}`);
    }
    // After destroy() a held block is inert: releasing it only detaches the handle (running the
    // books again would drive liveBlocks negative and vacate a destroyed backing). retire() throws
    // (a device refusing the stream event) before it changes anything.
    if (!this.destroyedFlag) this.retire(block._slot, block.stream);
    block._owner = null;
    if (this.leakDetector !== null && (block.id & this.leakSampleMask) === 0)
      this.leakDetector.unwatch(block);
    if (!this.destroyedFlag && this.recorder !== null) this.recorder.released(block.id);
  }

  /**
   * Acquires `count` blocks of each shape and releases them, so that the memory is mapped (and,
   * for caching policies, cached) before the hot loop. Prewarmed memory is a retain floor that
   * retainFraction and releaseIdle() keep mapped until trim(); prewarming the same shapes again
   * does not raise it. (The high-water swap may still trade it for pages a new block needs.)
   */
  prewarm(specs: readonly PrewarmSpec[]): void {
    if (this.destroyedFlag) throw new PoolDestroyedError('prewarm');
    if (!Array.isArray(specs))
      throw new InvalidArgumentError('specs', 'must be an array of { shape, dtype?, count }', specs);
    for (let i = 0; i < specs.length; i++) {
      const s = specs[i];
      if (typeof s !== 'object' || s === null)
        throw new InvalidArgumentError(`specs[${i}]`, 'must be { shape, dtype?, count }', s);
      if (!Number.isInteger(s.count) || s.count < 0 || s.count > 1_000_000) {
        throw new ArgumentRangeError(`specs[${i}].count`, 'must be an integer in 0..1000000', s.count);
      }
      bytesOfShape(
        s.shape,
        s.dtype === undefined ? 'float16' : checkDType(s.dtype, `specs[${i}].dtype`),
        `specs[${i}].shape`,
      );
    }
    const blocks: Block[] = [];
    try {
      for (const s of specs)
        for (let n = 0; n < s.count; n++)
          blocks.push(this.acquire({ shape: s.shape, dtype: s.dtype ?? 'float16' }));
    } finally {
      // The floor before the releases: with retainFraction < 1 they would unmap the memory at once.
      const thisCall = new Map<string, number>();
      for (const b of blocks) {
        const key = shapeKey(b.dtype, b.shape!);
        thisCall.set(key, (thisCall.get(key) ?? 0) + alignUp(Math.max(b.bytes, 1), POLICY_GRANULE_BYTES));
      }
      for (const [key, bytes] of thisCall) {
        const before = this.prewarmedByShape.get(key) ?? 0;
        if (bytes > before) {
          this.prewarmedByShape.set(key, bytes);
          this.prewarmedBytes += bytes - before;
        }
      }
      this.backing.setRetainFloor?.(this.prewarmedBytes);
      for (const b of blocks) this.releaseBlock(b);
    }
  }

  /** Gives back to the device all memory that holds no live block. Returns the bytes given back. */
  trim(): number {
    if (this.destroyedFlag) throw new PoolDestroyedError('trim');
    // Finishing frees and flushing a caching policy can release pages through
    // the backing's own hysteresis; count those too, so the result equals the drop in reservedBytes.
    const reservedBefore = this.backing.reservedBytes;
    this.finishPending(true);
    this.flushCaches();
    this.trims++;
    this.prewarmedByShape.clear();
    this.prewarmedBytes = 0;
    this.backing.setRetainFloor?.(0);
    this.backing.trim();
    return reservedBefore - this.backing.reservedBytes;
  }

  /**
   * Gives back memory that has held no live block since the previous call (what the
   * `releaseAfterMs` timer runs). Returns the bytes given back; 0 for backings without it.
   */
  releaseIdle(): number {
    if (this.destroyedFlag || this.backing.decay === undefined) return 0;
    // Blocks released but not back in free space are no live blocks either: frees on other streams
    // whose work is done (none is waited for), and cached blocks. Back in free space now, their
    // pages empty in this period and go at the next call if still empty; left where they were,
    // they would keep their pages (a whole allocation on CUDA) mapped until the next acquire.
    const reservedBefore = this.backing.reservedBytes;
    if (this.pending.length > 0) this.finishPending(false);
    this.flushCaches();
    this.backing.decay();
    return reservedBefore - this.backing.reservedBytes;
  }

  /**
   * Releases everything back to the device. Blocks still held become inert. Idempotent; if the
   * device refuses to take memory back, the error says so and calling destroy() again retries.
   */
  destroy(): void {
    if (!this.destroyedFlag) {
      this.destroyedFlag = true;
      this.ageChecker?.stopAgeChecks();
      if (this.releaseTimer !== undefined) clearInterval(this.releaseTimer);
      this.dropPending();
      this.liveBlocks = 0;
      this.liveBytes = 0;
      if (globalPools.get(this.device) === this) globalPools.delete(this.device);
    }
    if (this.backingDestroyed) return;
    this.backing.destroy();
    this.backingDestroyed = true;
  }

  [Symbol.dispose](): void {
    this.destroy();
  }

  stats(): PoolStats {
    // After destroy(), what a refusing device kept (0 once everything went back).
    const reservedBytes = this.backingDestroyed ? 0 : this.backing.reservedBytes;
    return {
      allocations: this.backing.deviceCalls,
      reuses: this.reuses,
      returns: this.returns,
      leaks: this.leaks,
      fragmentationEvents: this.fragmentationEvents,
      acquires: this.acquires,
      liveBlocks: this.liveBlocks,
      liveBytes: this.liveBytes,
      peakLiveBytes: this.peakLiveBytes,
      reservedBytes,
      peakReservedBytes: this.peakReservedBytes,
      freeBytes: this.destroyedFlag ? 0 : this.policy.freeBytes(),
      largestFreeBytes: this.destroyedFlag ? 0 : this.policy.largestFreeBytes(),
      fragmentation: reservedBytes === 0 ? 0 : Math.max(0, 1 - this.liveBytes / reservedBytes),
      outOfMemoryErrors: this.outOfMemoryErrors,
      trims: this.trims,
      crossStreamWaits: this.crossStreamWaits,
      cachedBytes: this.destroyedFlag ? 0 : (this.blockCache?.bytes ?? 0),
    };
  }

  /** Resets peak figures to the current values (for measuring a phase). */
  resetPeaks(): void {
    this.peakLiveBytes = this.liveBytes;
    this.peakReservedBytes = this.backing.reservedBytes;
  }

  /** The most recent leak reports (at most 100). */
  leakReports(): LeakReport[] {
    return [...this.leakReportsKept];
  }

  /** Arenas, mapped pages, live blocks and free runs, as plain JSON. */
  snapshot(): PoolSnapshot {
    if (this.destroyedFlag) throw new PoolDestroyedError('snapshot');
    const arenas = this.backing.snapshot();
    const blocks: BlockSnapshot[] = [];
    const now = Date.now();
    for (let slot = 0; slot < this.slotLive.length; slot++) {
      if (this.slotLive[slot] !== 1) continue;
      const address = this.policy.addressOf(slot);
      const arena = this.backing.arenaOf(address);
      const created = this.slotCreatedMs[slot]!;
      blocks.push({
        id: this.slotBlockId[slot]!,
        arenaId: arena.id,
        offset: address - arena.start,
        address,
        bytes: this.slotBytes[slot]!,
        sizeBytes: this.policy.sizeOf(slot),
        shape: this.slotShape[slot] === undefined ? null : [...this.slotShape[slot]!],
        dtype: this.slotDtype[slot] ?? null,
        stream: this.slotStream[slot]!,
        ageMs: created > 0 ? now - created : null,
        stack: this.slotStack[slot] ?? null,
      });
    }
    blocks.sort((a, b) => a.address - b.address);
    const free: { address: number; bytes: number }[] = [];
    this.policy.forEachFree((address, bytes) => free.push({ address, bytes }));
    free.sort((a, b) => a.address - b.address);
    return {
      name: this.name,
      policy: this.policy.name,
      backing: this.backing.kind,
      device: {
        kind: this.device.kind,
        name: this.device.name,
        pageBytes: this.device.pageBytes,
        totalBytes: this.device.totalBytes,
      },
      takenAtMs: now,
      stats: this.stats(),
      arenas,
      blocks,
      free,
    };
  }

  /** Starts recording acquire/release operations in the trace format. */
  record(options?: TraceRecorderOptions): TraceRecorder {
    if (this.destroyedFlag) throw new PoolDestroyedError('record');
    // Stopping a recorder that a newer one replaced must not stop the newer one.
    const recorder: TraceRecorder = new TraceRecorder(options, () => {
      if (this.recorder === recorder) this.recorder = null;
    });
    this.recorder = recorder;
    return recorder;
  }

  /**
   * Recounts everything from the blocks and the policy and throws InvariantError on any mismatch.
   * Expensive (O(slots + free runs)): for tests and debugging.
   */
  checkInvariants(): void {
    if (this.destroyedFlag) return;
    let liveBytes = 0;
    let liveBlocks = 0;
    const spans: [number, number][] = [];
    for (let slot = 0; slot < this.slotLive.length; slot++) {
      if (this.slotOccupied[slot] === 1) spans.push([this.policy.addressOf(slot), this.policy.sizeOf(slot)]);
      if (this.slotLive[slot] !== 1) continue;
      liveBlocks++;
      liveBytes += this.slotBytes[slot]!;
      if (this.slotOccupied[slot] !== 1) throw new InvariantError(`live slot ${slot} is not occupied`);
      if (this.policy.sizeOf(slot) < this.slotBytes[slot]!)
        throw new InvariantError(`slot ${slot} is smaller than its block`);
    }
    if (liveBytes !== this.liveBytes)
      throw new InvariantError(`liveBytes ${this.liveBytes} but blocks sum to ${liveBytes}`);
    if (liveBlocks !== this.liveBlocks)
      throw new InvariantError(`liveBlocks ${this.liveBlocks} but ${liveBlocks} blocks are live`);
    const occupied = spans.slice();
    this.policy.forEachFree((address, bytes) => spans.push([address, bytes]));
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) {
      if (spans[i - 1]![0] + spans[i - 1]![1] > spans[i]![0]) {
        throw new InvariantError(`ranges overlap at ${spans[i]![0]}`);
      }
    }
    if (this.backing.reservedBytes > this.limitBytes)
      throw new InvariantError('reservedBytes exceeds limitBytes');
    const policyProblem = this.policy.checkInvariants?.();
    if (policyProblem) throw new InvariantError(`policy ${this.policy.name}: ${policyProblem}`);
    const problem = this.backing.checkInvariants?.(occupied);
    if (problem) throw new InvariantError(`backing: ${problem}`);
  }

  // ---- internals ----

  /** Places a block, growing, recovering from OOM and waiting for other streams as needed. */
  private place(sizeBytes: number, alignmentBytes: number, key: string | undefined, bytes: number): number {
    try {
      return this.tryPlace(sizeBytes, alignmentBytes, key);
    } catch (error) {
      if (!isRefusal(error)) throw error;
      // Recovery: wait for other streams' frees, empty caches, give back empty memory, retry once.
      this.fragmentationEvents++;
      this.finishPending(true);
      this.flushCaches();
      this.trims++;
      this.backing.trim();
      try {
        return this.tryPlace(sizeBytes, alignmentBytes, key);
      } catch (retryError) {
        if (!isRefusal(retryError)) throw retryError;
        this.outOfMemoryErrors++;
        let info = { freeBytes: Number.NaN, totalBytes: this.device.totalBytes };
        try {
          info = this.device.memInfo();
        } catch {}
        throw new OutOfMemoryError(
          {
            requestedBytes: bytes,
            liveBytes: this.liveBytes,
            reservedBytes: this.backing.reservedBytes,
            limitBytes: this.limitBytes,
            deviceFreeBytes: info.freeBytes,
            deviceTotalBytes: info.totalBytes,
            largestFreeBytes: this.placeableRunBytes(info.freeBytes),
          },
          retryError,
        );
      }
    }
  }

  /**
   * For the OOM message: the largest block that could still be placed, at most, whatever the
   * backing. A free run may lie in address space not mapped yet (a page-mapping arena is reserved
   * larger than the device): no more of it can hold a block than the free memory held plus the new
   * memory the limit and the device allow. A backing that grows (segments) may instead add a range
   * of that new memory beside its runs. New memory comes in whole pages, so a limit that is no
   * multiple of the page leaves its last part out of reach.
   */
  private placeableRunBytes(deviceFreeBytes: number): number {
    const reservedBytes = this.backing.reservedBytes;
    const page = this.backing.pageBytes;
    let newBytes = alignDown(Math.max(0, this.limitBytes - reservedBytes), page);
    if (Number.isFinite(deviceFreeBytes))
      newBytes = Math.min(newBytes, alignDown(Math.max(0, deviceFreeBytes), page));
    const inRun = Math.min(this.policy.largestFreeBytes(), reservedBytes - this.liveBytes + newBytes);
    return Math.max(0, Math.min(this.limitBytes - this.liveBytes, Math.max(inRun, newBytes)));
  }

  private tryPlace(sizeBytes: number, alignmentBytes: number, key: string | undefined): number {
    let slot = this.policy.allocate(sizeBytes, alignmentBytes, key);
    if (slot < 0) {
      if (!this.backing.grow(sizeBytes, alignmentBytes)) throw new NoFitError();
      slot = this.policy.allocate(sizeBytes, alignmentBytes, key);
      if (slot < 0) throw new NoFitError();
    }
    this.ensureSlots(slot);
    if (this.slotOccupied[slot] === 0) {
      try {
        this.backing.occupy(this.policy.addressOf(slot), this.policy.sizeOf(slot));
      } catch (error) {
        // Undo the placement. The slot never held bytes; a caching policy may keep it cached
        // unoccupied, and a later hit occupies it then.
        this.policy.free(slot);
        throw error;
      }
      this.slotOccupied[slot] = 1;
    }
    return slot;
  }

  /** Returns a slot's bytes to the policy, now or (another stream) once its work is done. */
  private retire(slot: number, stream: StreamHandle): void {
    // Record the event before touching the books, so a device that refuses
    // (an unknown or destroyed stream) leaves the block live and the pool consistent.
    const event =
      stream !== 0 && this.device.streams !== undefined ? this.device.streams.recordEvent(stream) : -1;
    this.slotLive[slot] = 0;
    if (this.slotShape[slot] !== undefined) {
      this.slotShape[slot] = undefined;
      this.slotDtype[slot] = undefined;
    }
    if (this.captureStacks) this.slotStack[slot] = undefined;
    this.liveBlocks--;
    this.liveBytes -= this.slotBytes[slot]!;
    this.returns++;
    if (event !== -1) {
      this.pending.push({ slot, stream, event });
      if (this.pending.length > MAX_PENDING_FREES) {
        // The block is retired already: a stream call refused here must not fail its release (a
        // second release would count it twice). What was not finished stays pending, for next time.
        try {
          this.finishPending(true);
        } catch (error) {
          if (!isDeviceError(error)) throw error;
        }
      }
      return;
    }
    this.freeSlot(slot);
  }

  private freeSlot(slot: number): void {
    const size = this.policy.sizeOf(slot);
    if (this.blockCache?.put(slot, size)) return;
    this.freeToPolicy(slot, this.policy.addressOf(slot), size);
  }

  private freeToPolicy(slot: number, address: number, size: number): void {
    if (this.policy.free(slot)) {
      this.slotOccupied[slot] = 0;
      this.backing.vacate(address, size);
    }
  }

  /**
   * Completes pending cross-stream frees: those done, those on `stream`, or (wait) all. A free on
   * `stream` is finished before its work is done, so that this stream reuses its bytes at once; its
   * event is kept (unsettled) until then, and another stream that is given any of those bytes
   * waits for it first (settleFor).
   */
  private finishPending(wait: boolean, stream?: StreamHandle): void {
    if (wait && this.unsettled.length > 0) this.settleAll(true);
    if (this.pending.length === 0) return;
    const streams = this.device.streams!;
    const pending = this.pending;
    const kept: PendingFree[] = [];
    let i = 0;
    try {
      for (; i < pending.length; i++) {
        const p = pending[i]!;
        const own = p.stream === stream;
        let done = own || streams.eventDone(p.event);
        if (!done && wait) {
          streams.synchronizeEvent(p.event);
          this.crossStreamWaits++;
          done = true;
        }
        if (own) {
          this.unsettle(p);
          this.freeSlot(p.slot);
        } else if (done) {
          streams.destroyEvent(p.event);
          this.freeSlot(p.slot);
        } else {
          kept.push(p);
        }
      }
    } finally {
      // A device call that threw leaves this free and those after it pending; none finished stays.
      for (; i < pending.length; i++) kept.push(pending[i]!);
      this.pending = kept;
    }
    if (this.unsettled.length > MAX_PENDING_FREES) {
      // A limit on kept events: let go of those done, and wait for the rest if that is not enough.
      this.settleAll(false);
      if (this.unsettled.length > MAX_PENDING_FREES / 2) this.settleAll(true);
    }
  }

  /** Keeps the event of a free finished early for its own stream, with the bytes it covers. */
  private unsettle(p: PendingFree): void {
    if (this.unsettled.length === 0) this.unsettledStream = p.stream;
    else if (this.unsettledStream !== p.stream) this.unsettledStream = -1;
    const address = this.policy.addressOf(p.slot);
    this.unsettled.push({ address, sizeBytes: this.policy.sizeOf(p.slot), stream: p.stream, event: p.event });
  }

  /**
   * A block of `slot` goes to `stream`: waits for other streams' work still using any of its bytes
   * (unsettled frees), and lets go of unsettled frees whose work is done.
   */
  private settleFor(slot: number, stream: StreamHandle): void {
    const start = this.policy.addressOf(slot);
    const end = start + this.policy.sizeOf(slot);
    this.settle((u) => u.stream !== stream && u.address < end && start < u.address + u.sizeBytes);
  }

  /** Lets go of unsettled frees whose work is done, or (wait) of all, waiting for them. */
  private settleAll(wait: boolean): void {
    this.settle(() => wait);
  }

  /** Lets go of unsettled frees whose work is done, and of those `mustWait` names, after waiting. */
  private settle(mustWait: (u: UnsettledFree) => boolean): void {
    const streams = this.device.streams!;
    const unsettled = this.unsettled;
    const kept: UnsettledFree[] = [];
    let i = 0;
    try {
      for (; i < unsettled.length; i++) {
        const u = unsettled[i]!;
        if (streams.eventDone(u.event)) {
          streams.destroyEvent(u.event);
        } else if (mustWait(u)) {
          streams.synchronizeEvent(u.event);
          this.crossStreamWaits++;
          streams.destroyEvent(u.event);
        } else {
          kept.push(u);
        }
      }
    } finally {
      // As in finishPending: a device call that threw keeps this free and those after it.
      for (; i < unsettled.length; i++) kept.push(unsettled[i]!);
      this.setUnsettled(kept);
    }
  }

  private setUnsettled(unsettled: UnsettledFree[]): void {
    this.unsettled = unsettled;
    const first = unsettled.length > 0 ? unsettled[0]!.stream : -1;
    this.unsettledStream = unsettled.every((u) => u.stream === first) ? first : -1;
  }

  /**
   * destroy(): pending cross-stream frees wait for their streams' work, since their memory is about
   * to be unmapped, and give their events back. Best effort: a device that cannot tell (destroyed
   * already) gets its memory back below all the same.
   */
  private dropPending(): void {
    const streams = this.device.streams;
    for (const { event } of [...this.pending, ...this.unsettled]) {
      try {
        streams!.synchronizeEvent(event);
        streams!.destroyEvent(event);
      } catch {}
    }
    this.pending = [];
    this.unsettled = [];
  }

  private flushCaches(): void {
    if (this.blockCache !== null) {
      this.blockCache.flush((slot) =>
        this.freeToPolicy(slot, this.policy.addressOf(slot), this.policy.sizeOf(slot)),
      );
    }
    // Every policy, not only caching ones: sizeClass keeps empty slabs that trim() and OOM
    // recovery must get back (otherwise an empty pool can refuse a block that fits its limit).
    this.policy.flush((slot, address, bytes) => {
      if (this.slotOccupied[slot] === 1) {
        this.slotOccupied[slot] = 0;
        this.backing.vacate(address, bytes);
      }
    });
  }

  private onCollected(slot: number): void {
    if (this.destroyedFlag || this.slotLive[slot] !== 1) return;
    // A block reported aged already is one leak, now certain: reported again, counted once.
    if (this.slotAgedReported[slot] !== 1) this.leaks++;
    this.report({
      kind: 'collected',
      blockId: this.slotBlockId[slot]!,
      bytes: this.slotBytes[slot]!,
      shape: this.slotShape[slot],
      dtype: this.slotDtype[slot],
      ageMs: this.slotCreatedMs[slot]! > 0 ? Date.now() - this.slotCreatedMs[slot]! : 0,
      stack: this.slotStack[slot],
    });
    // onLeak may have destroyed the pool, which reclaimed every block: this one too.
    if (this.destroyedFlag) return;
    try {
      this.retire(slot, this.slotStream[slot]!);
    } catch {
      // This runs in a GC callback, where a throw would crash the process. The
      // device refused an event for the block's stream, so its bytes stay live (and reported).
      return;
    }
    if (this.recorder !== null) this.recorder.released(this.slotBlockId[slot]!);
  }

  private checkAges(): void {
    if (this.destroyedFlag) return;
    const now = Date.now();
    for (let slot = 0; slot < this.slotLive.length; slot++) {
      if (this.slotLive[slot] !== 1 || this.slotAgedReported[slot] === 1) continue;
      const age = now - this.slotCreatedMs[slot]!;
      if (age < this.leakAgeMs) continue;
      this.slotAgedReported[slot] = 1;
      this.leaks++;
      this.report({
        kind: 'aged',
        blockId: this.slotBlockId[slot]!,
        bytes: this.slotBytes[slot]!,
        shape: this.slotShape[slot],
        dtype: this.slotDtype[slot],
        ageMs: age,
        stack: this.slotStack[slot],
      });
      // onLeak may have destroyed the pool: its blocks are no longer live, nor leaks.
      if (this.destroyedFlag) return;
    }
  }

  private report(report: LeakReport): void {
    this.leakReportsKept.push(report);
    if (this.leakReportsKept.length > MAX_LEAK_REPORTS) this.leakReportsKept.shift();
    try {
      this.onLeak?.(report);
    } catch {
      // A throwing callback must not break the pool (it may run inside a GC callback).
    }
  }

  private ensureSlots(slot: number): void {
    if (slot < this.slotLive.length) return;
    let n = this.slotLive.length;
    while (n <= slot) n *= 2;
    this.slotOccupied = grown(this.slotOccupied, n);
    this.slotLive = grown(this.slotLive, n);
    this.slotAgedReported = grown(this.slotAgedReported, n);
    this.slotBytes = grown(this.slotBytes, n);
    this.slotBlockId = grown(this.slotBlockId, n);
    this.slotCreatedMs = grown(this.slotCreatedMs, n);
    this.slotStream = grown(this.slotStream, n);
  }
}

/** The policy had no room and the backing could not grow: handled like a device refusal. */
class NoFitError extends Error {}

/** A device refusal (any copy of core, see isDeviceRefusal) or no room in the policy. */
function isRefusal(error: unknown): boolean {
  return error instanceof NoFitError || isDeviceRefusal(error);
}

const globalPools = new WeakMap<Device, Pool>();

export function createPool(options: PoolOptions): Pool {
  return new Pool(options);
}

let defaultDevice: Device | undefined;

/**
 * Sets the device that `getGlobalPool()` without an argument uses (e.g. a CudaDevice at startup).
 * Without it, the first such call creates a 256 MiB HostDevice, so code written against the global
 * pool runs anywhere.
 */
export function setDefaultDevice(device: Device): void {
  if (typeof device !== 'object' || device === null || typeof device.pageBytes !== 'number') {
    throw new InvalidArgumentError('device', 'must be a Device', device);
  }
  defaultDevice = device;
}

/**
 * One pool per device, created on first use with default options (as the seed's
 * get_global_memory_pool()); without a device, the default device's pool.
 */
export function getGlobalPool(device?: Device): Pool {
  if (device === undefined) {
    defaultDevice ??= new HostDevice({ capacityBytes: 256 * MiB });
    device = defaultDevice;
  }
  if (typeof device !== 'object' || device === null || typeof device.pageBytes !== 'number') {
    throw new InvalidArgumentError('device', 'must be a Device', device);
  }
  let pool = globalPools.get(device);
  if (pool === undefined || pool.destroyed) {
    pool = new Pool({ device });
    globalPools.set(device, pool);
  }
  return pool;
}
