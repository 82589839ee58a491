/**
 * The pool conformance suite: one set of behaviours that every registered policy must show on
 * every device. Core runs it over SimulatedDevice (vmm and segment mode) and HostDevice; the
 * native package imports this file by relative path and runs it over its CUDA device.
 *
 * Rules that keep it runnable on a real GPU:
 * - only the `Device` interface and core's public API are used; SimulatedDevice-only features
 *   (events that stay pending) are used behind a feature check;
 * - sizes are relative to `device.pageBytes`, every pool gets a small `limitBytes` (at most
 *   64 pages, 128 MiB with 2 MiB pages), and OOM is provoked through that limit, never by
 *   filling the device;
 * - errors are recognised by their stable `code` (not `instanceof`), so the suite also holds when
 *   the device under test was built against another copy of core (dist instead of src).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AcquireOptions,
  type Block,
  createPool,
  type Device,
  DTYPE_BYTES,
  DTYPES,
  getGlobalPool,
  type Pool,
  type PoolOptions,
  type PoolSnapshot,
  policyNames,
} from '../../src/index.js';

export interface PoolConformanceOptions {
  /** Policies to run (default: every registered policy, `policyNames()`). */
  policies?: readonly string[];
  /** Pool mode to test (default: the pool's own choice for the device). */
  mode?: 'vmm' | 'segments';
  /**
   * Whether `device.memInfo().freeBytes` is exact and private to this process, so that
   * "destroy returns every byte" can be checked through it (default true; false on a shared GPU).
   */
  exactMemInfo?: boolean;
  /** Call `device.destroy()` after each test (default true). */
  destroyDevice?: boolean;
}

/** Most pages any one pool of this suite may hold (128 MiB with 2 MiB pages). */
const LIMIT_PAGES_MAX = 64;

/** Calls `fn` and returns the error it throws; fails the test if it returns normally. */
export function thrown(fn: () => unknown): Error & { code?: string; argument?: string } {
  try {
    fn();
  } catch (error) {
    return error as Error & { code?: string; argument?: string };
  }
  throw new Error('expected the call to throw, but it returned');
}

/** Asserts that `fn` throws an error with the stable `code` (and, if given, naming `argument`). */
export function expectCode(fn: () => unknown, code: string, argument?: string): Error {
  const error = thrown(fn);
  expect(error.code, `${error.name}: ${error.message}`).toBe(code);
  if (argument !== undefined) expect(error.argument).toBe(argument);
  return error;
}

/** A pool's observable state, without the timestamps that change between two calls. */
export function observableState(pool: Pool): { snapshot: Omit<PoolSnapshot, 'takenAtMs'> } {
  const { takenAtMs: _t, ...snapshot } = pool.snapshot();
  for (const b of snapshot.blocks) b.ageMs = null;
  return { snapshot };
}

/** Σ of the pool's free runs. */
function sumFree(snapshot: PoolSnapshot | Omit<PoolSnapshot, 'takenAtMs'>): number {
  return snapshot.free.reduce((s, f) => s + f.bytes, 0);
}

export function poolConformanceSuite(
  deviceName: string,
  makeDevice: () => Device,
  options: PoolConformanceOptions = {},
): void {
  const policies = options.policies ?? policyNames();
  const exactMemInfo = options.exactMemInfo ?? true;

  describe.each(policies)(`pool conformance on ${deviceName}, policy %s`, (policyName) => {
    let device: Device;
    let pools: Pool[];
    let page: number;
    let limitBytes: number;

    /** A pool of this policy, with the suite's limit unless overridden; destroyed after the test. */
    const makePool = (extra: Partial<PoolOptions> = {}): Pool => {
      const pool = createPool({
        device,
        policy: policyName,
        limitBytes,
        detectLeaks: false,
        ...(options.mode === undefined ? {} : { mode: options.mode }),
        ...extra,
      });
      pools.push(pool);
      return pool;
    };

    beforeEach(() => {
      device = makeDevice();
      pools = [];
      page = device.pageBytes;
      // A quarter of the device at most, so that a test's two or three pools (each reserving
      // address space for its limit) fit even where address space is as small as capacity.
      limitBytes = Math.min(LIMIT_PAGES_MAX, Math.floor(device.totalBytes / page / 4)) * page;
    });

    afterEach(() => {
      for (const pool of pools) pool.destroy();
      if (options.destroyDevice ?? true) device.destroy();
    });

    describe('acquire and release', () => {
      it('acquires by bytes: a block with ptr, offset, bytes and stream, no shape or dtype', () => {
        const pool = makePool();
        const block = pool.acquire(1000);
        expect(block.bytes).toBe(1000);
        expect(block.shape).toBeUndefined();
        expect(block.dtype).toBeUndefined();
        expect(block.stream).toBe(0);
        expect(block.released).toBe(false);
        expect(typeof block.ptr).toBe('bigint');
        expect(block.ptr % 256n).toBe(0n);
        expect(Number.isInteger(block.offset) && block.offset >= 0).toBe(true);
        const stats = pool.stats();
        expect(stats.liveBlocks).toBe(1);
        expect(stats.liveBytes).toBe(1000);
        expect(stats.acquires).toBe(1);
        expect(stats.reservedBytes).toBeGreaterThanOrEqual(1000);
        block.release();
        expect(block.released).toBe(true);
        expect(pool.stats().liveBytes).toBe(0);
        expect(pool.stats().liveBlocks).toBe(0);
        expect(pool.stats().returns).toBe(1);
      });

      it('acquires by shape and dtype for every dtype; float16 is the default', () => {
        const pool = makePool();
        for (const dtype of DTYPES) {
          const block = pool.acquire({ shape: [3, 5, 7], dtype });
          expect(block.bytes).toBe(3 * 5 * 7 * DTYPE_BYTES[dtype]);
          expect(block.shape).toEqual([3, 5, 7]);
          expect(block.dtype).toBe(dtype);
          block.release();
        }
        const half = pool.acquire({ shape: [4, 4] });
        expect(half.dtype).toBe('float16');
        expect(half.bytes).toBe(32);
        half.release();
      });

      it('keeps its own copy of the shape: changing the caller’s array changes nothing', () => {
        const pool = makePool();
        const shape = [2, 3];
        const block = pool.acquire({ shape, dtype: 'float32' });
        shape[0] = 100;
        expect(block.shape).toEqual([2, 3]);
        expect(Object.isFrozen(block.shape)).toBe(true);
        expect(pool.snapshot().blocks[0]!.shape).toEqual([2, 3]);
        block.release();
      });

      it('gives live blocks distinct, non-overlapping addresses (zero-byte blocks included)', () => {
        const pool = makePool();
        const blocks = [0, 0, 1, 255, 256, 257, 4096, page - 1, page, page + 1].map((n) => pool.acquire(n));
        const spans = blocks
          .map((b) => [b.ptr, b.ptr + BigInt(Math.max(b.bytes, 1))] as const)
          .sort((a, b) => (a[0] < b[0] ? -1 : 1));
        for (let i = 1; i < spans.length; i++) expect(spans[i]![0] >= spans[i - 1]![1]).toBe(true);
        for (const b of blocks) b.release();
        expect(pool.stats().liveBytes).toBe(0);
      });

      it('releases at the end of a `using` scope, and `using` after release() is harmless', () => {
        const pool = makePool();
        {
          using block = pool.acquire(4096);
          expect(block.released).toBe(false);
          expect(pool.stats().liveBlocks).toBe(1);
        }
        expect(pool.stats().liveBlocks).toBe(0);
        {
          using block = pool.acquire(4096);
          block.release();
        }
        expect(pool.stats().returns).toBe(2);
        expect(pool.stats().liveBlocks).toBe(0);
      });

      it('pool.release(block) is the same as block.release()', () => {
        const pool = makePool();
        const block = pool.acquire(512);
        pool.release(block);
        expect(block.released).toBe(true);
        expect(pool.stats().liveBlocks).toBe(0);
      });

      it('a double release throws DoubleReleaseError and changes nothing', () => {
        const pool = makePool();
        const keep = pool.acquire(2048);
        const block = pool.acquire(1024);
        block.release();
        const before = observableState(pool);
        expectCode(() => block.release(), 'ERR_GPUPOOL_DOUBLE_RELEASE');
        expectCode(() => pool.release(block), 'ERR_GPUPOOL_DOUBLE_RELEASE');
        expect(observableState(pool)).toEqual(before);
        pool.checkInvariants();
        keep.release();
      });

      it("releasing another pool's block throws ForeignBlockError and changes neither pool", () => {
        const a = makePool();
        const b = makePool();
        const block = a.acquire(1024);
        const beforeA = observableState(a);
        const beforeB = observableState(b);
        expectCode(() => b.release(block), 'ERR_GPUPOOL_FOREIGN_BLOCK');
        expect(observableState(a)).toEqual(beforeA);
        expect(observableState(b)).toEqual(beforeB);
        expect(block.released).toBe(false);
        block.release();
        expect(a.stats().liveBlocks).toBe(0);
      });

      it('reading ptr of a released block throws ReleasedBlockError', () => {
        const pool = makePool();
        const block = pool.acquire(1024);
        void block.ptr;
        block.release();
        expectCode(() => block.ptr, 'ERR_GPUPOOL_RELEASED_BLOCK');
      });

      it('releasing something that is not a block throws InvalidArgumentError naming block', () => {
        const pool = makePool();
        const before = observableState(pool);
        for (const bad of [null, undefined, 1, {}, { ptr: 0n, bytes: 1 }]) {
          expectCode(() => pool.release(bad as unknown as Block), 'ERR_GPUPOOL_ARGUMENT', 'block');
        }
        expect(observableState(pool)).toEqual(before);
      });
    });

    describe('bad input: a typed error naming the argument, and the pool exactly as it was', () => {
      const badAcquires: [string, () => [unknown, unknown?], string, string][] = [
        ['a negative size', () => [-1], 'ERR_GPUPOOL_RANGE', 'bytes'],
        ['NaN', () => [Number.NaN], 'ERR_GPUPOOL_ARGUMENT', 'bytes'],
        ['a fractional size', () => [1.5], 'ERR_GPUPOOL_RANGE', 'bytes'],
        ['a size above 2^48', () => [2 ** 48 + 1], 'ERR_GPUPOOL_RANGE', 'bytes'],
        ['Infinity', () => [Number.POSITIVE_INFINITY], 'ERR_GPUPOOL_RANGE', 'bytes'],
        ['a string', () => ['1024'], 'ERR_GPUPOOL_ARGUMENT', 'request'],
        ['a bigint', () => [1024n], 'ERR_GPUPOOL_ARGUMENT', 'request'],
        ['null', () => [null], 'ERR_GPUPOOL_ARGUMENT', 'request'],
        ['an array', () => [[2, 3]], 'ERR_GPUPOOL_ARGUMENT', 'request'],
        ['an unknown dtype', () => [{ shape: [2], dtype: 'float8' }], 'ERR_GPUPOOL_ARGUMENT', 'dtype'],
        ['no shape', () => [{ dtype: 'float32' }], 'ERR_GPUPOOL_ARGUMENT', 'shape'],
        ['a shape that is no array', () => [{ shape: '2,3' }], 'ERR_GPUPOOL_ARGUMENT', 'shape'],
        ['a negative dimension', () => [{ shape: [2, -1] }], 'ERR_GPUPOOL_RANGE', 'shape[1]'],
        ['a fractional dimension', () => [{ shape: [1.5] }], 'ERR_GPUPOOL_RANGE', 'shape[0]'],
        ['a NaN dimension', () => [{ shape: [4, Number.NaN] }], 'ERR_GPUPOOL_RANGE', 'shape[1]'],
        ['too many dimensions', () => [{ shape: new Array(17).fill(1) }], 'ERR_GPUPOOL_RANGE', 'shape'],
        ['a shape above 2^48 bytes', () => [{ shape: [2 ** 24, 2 ** 24] }], 'ERR_GPUPOOL_RANGE', 'shape'],
        ['options that are null', () => [1024, null], 'ERR_GPUPOOL_ARGUMENT', 'options'],
        ['options that are a number', () => [1024, 5], 'ERR_GPUPOOL_ARGUMENT', 'options'],
        ['a negative stream', () => [1024, { stream: -1 }], 'ERR_GPUPOOL_RANGE', 'stream'],
        ['a fractional stream', () => [1024, { stream: 0.5 }], 'ERR_GPUPOOL_RANGE', 'stream'],
        ['an alignment of 3', () => [1024, { alignmentBytes: 3 }], 'ERR_GPUPOOL_RANGE', 'alignmentBytes'],
        ['an alignment of 0', () => [1024, { alignmentBytes: 0 }], 'ERR_GPUPOOL_RANGE', 'alignmentBytes'],
        [
          'a NaN alignment',
          () => [1024, { alignmentBytes: Number.NaN }],
          'ERR_GPUPOOL_RANGE',
          'alignmentBytes',
        ],
        [
          'a string alignment',
          () => [1024, { alignmentBytes: '512' }],
          'ERR_GPUPOOL_RANGE',
          'alignmentBytes',
        ],
      ];

      it.each(badAcquires)('acquire with %s', (_what, args, code, argument) => {
        const pool = makePool();
        const keep = pool.acquire({ shape: [64, 64], dtype: 'float32' });
        const before = observableState(pool);
        const [request, acquireOptions] = args();
        expectCode(
          () => pool.acquire(request as number, acquireOptions as AcquireOptions | undefined),
          code,
          argument,
        );
        expect(observableState(pool)).toEqual(before);
        pool.checkInvariants();
        keep.release();
      });

      it('acquire with an alignment above the page size', () => {
        const pool = makePool();
        const before = observableState(pool);
        expectCode(
          () => pool.acquire(1024, { alignmentBytes: 2 * page }),
          'ERR_GPUPOOL_RANGE',
          'alignmentBytes',
        );
        expect(observableState(pool)).toEqual(before);
      });

      const badPrewarms: [string, unknown, string, string][] = [
        ['specs that are no array', { shape: [2], count: 1 }, 'ERR_GPUPOOL_ARGUMENT', 'specs'],
        ['a spec that is null', [null], 'ERR_GPUPOOL_ARGUMENT', 'specs[0]'],
        ['a negative count', [{ shape: [2], count: -1 }], 'ERR_GPUPOOL_RANGE', 'specs[0].count'],
        ['a fractional count', [{ shape: [2], count: 1.5 }], 'ERR_GPUPOOL_RANGE', 'specs[0].count'],
        ['a missing count', [{ shape: [2] }], 'ERR_GPUPOOL_RANGE', 'specs[0].count'],
        [
          'an unknown dtype',
          [{ shape: [2], dtype: 'half', count: 1 }],
          'ERR_GPUPOOL_ARGUMENT',
          'specs[0].dtype',
        ],
        [
          'a bad shape in the second spec',
          [
            { shape: [2], count: 1 },
            { shape: [-2], count: 1 },
          ],
          'ERR_GPUPOOL_RANGE',
          'specs[1].shape[0]',
        ],
      ];

      it.each(badPrewarms)('prewarm with %s', (_what, specs, code, argument) => {
        const pool = makePool();
        const before = observableState(pool);
        expectCode(() => pool.prewarm(specs as never), code, argument);
        expect(observableState(pool)).toEqual(before);
      });

      const badPoolOptions: [string, () => Record<string, unknown>, string, string | undefined][] = [
        ['a negative limitBytes', () => ({ limitBytes: -1 }), 'ERR_GPUPOOL_RANGE', 'limitBytes'],
        ['a NaN limitBytes', () => ({ limitBytes: Number.NaN }), 'ERR_GPUPOOL_ARGUMENT', 'limitBytes'],
        ['a string limitBytes', () => ({ limitBytes: '1 GiB' }), 'ERR_GPUPOOL_ARGUMENT', 'limitBytes'],
        ['an unknown policy', () => ({ policy: 'nope' }), 'ERR_GPUPOOL_UNKNOWN_POLICY', undefined],
        ['a policy that is a number', () => ({ policy: 7 }), 'ERR_GPUPOOL_ARGUMENT', 'policy'],
        [
          'a policy factory that returns no policy',
          () => ({ policy: () => 7 }),
          'ERR_GPUPOOL_ARGUMENT',
          'policy',
        ],
        ['a backing that is no backing', () => ({ backing: {} }), 'ERR_GPUPOOL_ARGUMENT', 'backing'],
        ['an unknown mode', () => ({ mode: 'paged' }), 'ERR_GPUPOOL_ARGUMENT', 'mode'],
        ['retainFraction above 1', () => ({ retainFraction: 2 }), 'ERR_GPUPOOL_RANGE', 'retainFraction'],
        ['a negative retainMinBytes', () => ({ retainMinBytes: -1 }), 'ERR_GPUPOOL_RANGE', 'retainMinBytes'],
        ['a negative leakAgeMs', () => ({ leakAgeMs: -5 }), 'ERR_GPUPOOL_RANGE', 'leakAgeMs'],
        ['an onLeak that is no function', () => ({ onLeak: 5 }), 'ERR_GPUPOOL_ARGUMENT', 'onLeak'],
        ['a negative arenaBytes', () => ({ arenaBytes: -1 }), 'ERR_GPUPOOL_RANGE', 'arenaBytes'],
        ['no device', () => ({ device: null }), 'ERR_GPUPOOL_ARGUMENT', 'device'],
      ];

      it.each(badPoolOptions)('createPool with %s, leaving the device untouched', (_w, opts, code, arg) => {
        const freeBefore = device.memInfo().freeBytes;
        const callsBefore = { ...device.calls, memInfo: 0 };
        expectCode(
          () => createPool({ device, policy: policyName, limitBytes, ...opts() } as PoolOptions),
          code,
          arg,
        );
        expect({ ...device.calls, memInfo: 0 }).toEqual(callsBefore);
        // On a real GPU free memory is the whole card's, which the driver and others move.
        if (exactMemInfo) expect(device.memInfo().freeBytes).toBe(freeBefore);
      });

      it('createPool with options that are not an object', () => {
        expectCode(() => createPool(null as unknown as PoolOptions), 'ERR_GPUPOOL_ARGUMENT', 'options');
      });
    });

    describe('placement', () => {
      it('honours every power-of-two alignment up to the page size', () => {
        const pool = makePool();
        const blocks: Block[] = [];
        for (let alignmentBytes = 256; alignmentBytes <= page; alignmentBytes *= 4) {
          blocks.push(pool.acquire(768)); // pushes the next block off any natural alignment
          const block = pool.acquire(1000, { alignmentBytes });
          expect(block.ptr % BigInt(alignmentBytes)).toBe(0n);
          expect(block.offset % alignmentBytes).toBe(0);
          blocks.push(block);
        }
        const full = pool.acquire(1000, { alignmentBytes: page });
        expect(full.ptr % BigInt(page)).toBe(0n);
        blocks.push(full);
        pool.checkInvariants();
        for (const b of blocks) b.release();
      });

      it('prewarm maps memory ahead, then the same shapes are served without device calls', () => {
        const pool = makePool();
        const shape = [64, 1024];
        pool.prewarm([{ shape, dtype: 'float32', count: 3 }]);
        const afterPrewarm = pool.stats();
        expect(afterPrewarm.liveBlocks).toBe(0);
        expect(afterPrewarm.reservedBytes).toBeGreaterThanOrEqual(3 * 64 * 1024 * 4);
        const blocks = [0, 1, 2].map(() => pool.acquire({ shape, dtype: 'float32' }));
        const after = pool.stats();
        expect(after.allocations).toBe(afterPrewarm.allocations);
        expect(after.reuses - afterPrewarm.reuses).toBe(3);
        for (const b of blocks) b.release();
      });

      it('trim gives back memory that holds no live block, and keeps what live blocks need', () => {
        const pool = makePool();
        const keep = pool.acquire(page);
        const blocks = [1, 2, 3, 4].map((n) => pool.acquire(n * page));
        for (const b of blocks) b.release();
        const freeBefore = device.memInfo().freeBytes;
        const reservedBefore = pool.stats().reservedBytes;
        const returned = pool.trim();
        const stats = pool.stats();
        expect(returned).toBeGreaterThan(0);
        expect(stats.reservedBytes).toBe(reservedBefore - returned);
        expect(stats.reservedBytes).toBeGreaterThanOrEqual(page);
        expect(stats.reservedBytes).toBeLessThanOrEqual(limitBytes);
        if (exactMemInfo) expect(device.memInfo().freeBytes).toBe(freeBefore + returned);
        expect(keep.ptr % 256n).toBe(0n);
        pool.checkInvariants();
        keep.release();
        pool.trim();
        expect(pool.stats().reservedBytes).toBe(0);
      });

      it('destroy returns every byte to the device and leaves held blocks inert', () => {
        const freeAtStart = device.memInfo().freeBytes;
        const pool = makePool();
        const held = [pool.acquire(3 * page), pool.acquire({ shape: [1000], dtype: 'int64' })];
        const released = pool.acquire(page + 1);
        released.release();
        expect(device.memInfo().freeBytes).toBeLessThan(freeAtStart);
        pool.destroy();
        if (exactMemInfo) expect(device.memInfo().freeBytes).toBe(freeAtStart);
        expect(pool.destroyed).toBe(true);
        expect(pool.stats().liveBytes).toBe(0);
        expect(pool.stats().reservedBytes).toBe(0);
        // Inert: releasing a held block after destroy neither throws nor moves a counter.
        const stats = pool.stats();
        for (const b of held) b.release();
        expect(pool.stats()).toEqual(stats);
        expectCode(() => pool.acquire(16), 'ERR_GPUPOOL_POOL_DESTROYED');
        expectCode(() => pool.trim(), 'ERR_GPUPOOL_POOL_DESTROYED');
        expectCode(() => pool.prewarm([]), 'ERR_GPUPOOL_POOL_DESTROYED');
        pool.destroy(); // idempotent
        if (exactMemInfo) expect(device.memInfo().freeBytes).toBe(freeAtStart);
      });
    });

    describe('out of memory and limits', () => {
      it('throws OutOfMemoryError with details past limitBytes, and stays usable', () => {
        const smallLimit = 16 * page;
        const pool = makePool({ limitBytes: smallLimit });
        const big = pool.acquire(10 * page);
        const before = observableState(pool);
        const error = expectCode(() => pool.acquire(12 * page), 'ERR_GPUPOOL_OUT_OF_MEMORY') as Error & {
          details: Record<string, number>;
        };
        expect(error.details.requestedBytes).toBe(12 * page);
        expect(error.details.liveBytes).toBe(10 * page);
        expect(error.details.limitBytes).toBe(smallLimit);
        expect(error.details.reservedBytes).toBeLessThanOrEqual(smallLimit);
        expect(error.details.deviceTotalBytes).toBe(device.totalBytes);
        // A run no memory could back is no help: at most what the limit leaves beside live blocks.
        expect(error.details.largestFreeBytes).toBeLessThanOrEqual(smallLimit - 10 * page);
        expect(error.message).toMatch(/requested/);
        expect(error.message).toMatch(/live/);
        expect(error.message).toMatch(/reserved/);
        expect(error.message).toMatch(/largest free/);
        expect(error.message).toMatch(/Try:/);
        const after = observableState(pool);
        expect(after.snapshot.blocks).toEqual(before.snapshot.blocks);
        expect(after.snapshot.stats.liveBytes).toBe(before.snapshot.stats.liveBytes);
        expect(after.snapshot.stats.outOfMemoryErrors).toBe(1);
        pool.checkInvariants();
        big.release();
        const fits = pool.acquire(12 * page);
        expect(fits.bytes).toBe(12 * page);
        expect(pool.stats().reservedBytes).toBeLessThanOrEqual(smallLimit);
        fits.release();
        pool.checkInvariants();
      });

      it('throws OutOfMemoryError for a request larger than the whole limit (2^48 bytes)', () => {
        const pool = makePool();
        const error = expectCode(() => pool.acquire(2 ** 48), 'ERR_GPUPOOL_OUT_OF_MEMORY') as Error & {
          details: Record<string, number>;
        };
        expect(error.details.largestFreeBytes).toBeLessThanOrEqual(
          Math.min(pool.limitBytes, device.totalBytes),
        );
        const b = pool.acquire(page);
        b.release();
        pool.checkInvariants();
      });

      it('serves any single block that fits limitBytes on an empty pool', () => {
        const pool = makePool({ limitBytes: 8 * page });
        for (const sizeBytes of [1, page / 2, page + 1, 3 * page, 5 * page, 8 * page]) {
          const block = pool.acquire(sizeBytes);
          expect(block.bytes).toBe(sizeBytes);
          block.release();
          expect(pool.stats().reservedBytes).toBeLessThanOrEqual(8 * page);
        }
        pool.checkInvariants();
      });

      it('never holds more than limitBytes, whatever the sizes asked for', () => {
        const pool = makePool({ limitBytes: 8 * page });
        const blocks: Block[] = [];
        let ooms = 0;
        const sizes = [page / 2, 3 * page, 100, page + 256, 2 * page, 4096, page / 4, 5 * page];
        for (let i = 0; i < 200; i++) {
          try {
            blocks.push(pool.acquire(sizes[i % sizes.length]!));
          } catch (error) {
            expect((error as { code?: string }).code).toBe('ERR_GPUPOOL_OUT_OF_MEMORY');
            ooms++;
            // Release the oldest half to make room, as a pipeline would.
            for (const b of blocks.splice(0, Math.ceil(blocks.length / 2))) b.release();
          }
          expect(pool.stats().reservedBytes).toBeLessThanOrEqual(8 * page);
        }
        expect(ooms).toBeGreaterThan(0);
        pool.checkInvariants();
        for (const b of blocks) b.release();
      });
    });

    describe('statistics and snapshots', () => {
      it('agree with each other and with the blocks', () => {
        const pool = makePool();
        const blocks = [100, page, 3 * page + 7, 4096, 0].map((n) => pool.acquire(n));
        blocks.push(pool.acquire({ shape: [10, 10], dtype: 'float64' }));
        blocks[1]!.release();
        const snapshot = pool.snapshot();
        const stats = pool.stats();
        const live = blocks.filter((b) => !b.released);
        expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
        expect(snapshot.policy).toBe(pool.policy.name);
        expect(snapshot.stats).toEqual({ ...stats });
        expect(snapshot.blocks.length).toBe(stats.liveBlocks);
        expect(stats.liveBlocks).toBe(live.length);
        expect(stats.liveBytes).toBe(live.reduce((s, b) => s + b.bytes, 0));
        expect(snapshot.blocks.reduce((s, b) => s + b.bytes, 0)).toBe(stats.liveBytes);
        expect(snapshot.arenas.reduce((s, a) => s + a.mappedBytes, 0)).toBe(stats.reservedBytes);
        expect(sumFree(snapshot)).toBe(stats.freeBytes);
        expect(Math.max(0, ...snapshot.free.map((f) => f.bytes))).toBe(stats.largestFreeBytes);
        expect(stats.peakLiveBytes).toBeGreaterThanOrEqual(stats.liveBytes);
        expect(stats.peakReservedBytes).toBeGreaterThanOrEqual(stats.reservedBytes);
        expect(stats.fragmentation).toBeCloseTo(1 - stats.liveBytes / stats.reservedBytes, 12);
        expect(stats.acquires).toBe(6);
        expect(stats.returns).toBe(1);
        for (const b of live) {
          const s = snapshot.blocks.find((x) => x.id === b.id)!;
          expect(s.bytes).toBe(b.bytes);
          expect(s.offset).toBe(b.offset);
          expect(s.sizeBytes).toBeGreaterThanOrEqual(b.bytes);
          const arena = snapshot.arenas.find((a) => a.id === s.arenaId)!;
          expect(BigInt(arena.base) + BigInt(s.offset)).toBe(b.ptr);
        }
        for (let i = 1; i < snapshot.blocks.length; i++) {
          const prev = snapshot.blocks[i - 1]!;
          expect(prev.address + prev.sizeBytes).toBeLessThanOrEqual(snapshot.blocks[i]!.address);
        }
        for (const b of live) b.release();
      });

      it('count reuses and device calls: a released block is served again without a device call', () => {
        const pool = makePool();
        const first = pool.acquire({ shape: [256, 256], dtype: 'float16' });
        first.release();
        const calls = pool.stats().allocations;
        const again = pool.acquire({ shape: [256, 256], dtype: 'float16' });
        expect(pool.stats().allocations).toBe(calls);
        expect(pool.stats().reuses).toBeGreaterThanOrEqual(1);
        again.release();
      });
    });

    describe('streams', () => {
      const hasStreams = () => device.streams !== undefined;
      /** Events stay pending until synchronized (SimulatedDevice): cross-stream waits are observable. */
      const eventsStayPending = () =>
        typeof (device as unknown as { completeAllWork?: unknown }).completeAllWork === 'function';

      it('refuses a stream the device does not have (unknown or destroyed), leaving the pool as it was', () => {
        if (!hasStreams() || device.streams!.hasStream === undefined) return;
        const streams = device.streams!;
        const pool = makePool();
        const held = pool.acquire(4096);
        const gone = streams.createStream();
        streams.destroyStream(gone);
        const before = observableState(pool);
        for (const stream of [gone, 987_654]) {
          expectCode(() => pool.acquire(4096, { stream }), 'ERR_GPUPOOL_RANGE', 'stream');
        }
        expect(observableState(pool)).toEqual(before);
        const live = streams.createStream();
        const ok = pool.acquire(4096, { stream: live });
        ok.release();
        held.release();
        streams.synchronizeStream(live);
        streams.destroyStream(live);
        pool.destroy();
      });

      it('a block carries its stream and is reused at once on that stream', () => {
        if (!hasStreams()) return;
        const streams = device.streams!;
        const s1 = streams.createStream();
        const pool = makePool();
        const fence = pool.acquire(64 * 1024);
        const a = pool.acquire(64 * 1024, { stream: s1 });
        expect(a.stream).toBe(s1);
        const ptr = a.ptr;
        a.release();
        const b = pool.acquire(64 * 1024, { stream: s1 });
        expect(b.ptr).toBe(ptr);
        b.release();
        fence.release();
        pool.trim();
        streams.destroyStream(s1);
      });

      it('a block released on stream 1 is not reused by stream 2 until its work is done', () => {
        if (!hasStreams() || !eventsStayPending()) return;
        const streams = device.streams!;
        const s1 = streams.createStream();
        const s2 = streams.createStream();
        const pool = makePool();
        const fence = pool.acquire(64 * 1024);
        const a = pool.acquire(64 * 1024, { stream: s1 });
        const ptr = a.ptr;
        a.release();
        expect(pool.stats().liveBlocks).toBe(1);
        const other = pool.acquire(64 * 1024, { stream: s2 });
        expect(other.ptr).not.toBe(ptr);
        streams.synchronizeStream(s1);
        const later = pool.acquire(64 * 1024, { stream: s2 });
        expect(later.ptr).toBe(ptr);
        pool.checkInvariants();
        for (const b of [fence, other, later]) b.release();
        streams.synchronizeStream(s2);
        pool.trim();
        expect(pool.stats().reservedBytes).toBe(0);
      });

      it('a free finished early for reuse on its own stream still makes another stream wait', () => {
        if (!hasStreams() || !eventsStayPending()) return;
        const streams = device.streams!;
        const s1 = streams.createStream();
        const s2 = streams.createStream();
        const pool = makePool();
        const fence = pool.acquire(64 * 1024);
        const a = pool.acquire(4096, { stream: s1 });
        const start = a.ptr;
        a.release();
        // An acquire on stream 1 finishes a's free at once (same stream: no wait), though stream
        // 1's work on it is not done; its bytes are free space again for any stream.
        const other = pool.acquire(8192, { stream: s1 });
        const waits = pool.stats().crossStreamWaits;
        const b = pool.acquire(4096, { stream: s2 });
        const overlaps = b.ptr < start + 4096n && start < b.ptr + 4096n;
        expect(overlaps).toBe(true); // served from a's bytes (the block cache or a bucket)...
        expect(pool.stats().crossStreamWaits).toBe(waits + 1); // ...after waiting for stream 1
        pool.checkInvariants();
        for (const block of [fence, other, b]) block.release();
        streams.synchronizeStream(s2);
        pool.trim();
        expect(pool.stats().reservedBytes).toBe(0);
      });

      it('trim waits for pending cross-stream frees and gives their memory back', () => {
        if (!hasStreams()) return;
        const streams = device.streams!;
        const s1 = streams.createStream();
        const pool = makePool();
        const a = pool.acquire(2 * page, { stream: s1 });
        a.release();
        pool.trim();
        expect(pool.stats().reservedBytes).toBe(0);
        pool.checkInvariants();
      });
    });

    describe('getGlobalPool', () => {
      it('returns one pool per device, and a fresh one after destroy', () => {
        const pool = getGlobalPool(device);
        expect(getGlobalPool(device)).toBe(pool);
        const b = pool.acquire(1024);
        b.release();
        pool.destroy();
        const next = getGlobalPool(device);
        expect(next).not.toBe(pool);
        expect(next.destroyed).toBe(false);
        next.destroy();
        expectCode(() => getGlobalPool(null as unknown as Device), 'ERR_GPUPOOL_ARGUMENT', 'device');
      });
    });
  });
}
