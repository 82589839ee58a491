/**
 * Property test over layouts and option combinations the other suites leave out: 64 KiB pages,
 * allocation windows of 2, 3, 5 and 32 pages (no power of two included), limits that are no page
 * multiple, explicit arenas from half to three times the limit (blocks at the arena's end),
 * retainMinBytes floors with retainFraction, prewarm, releaseIdle and mapAheadFraction together,
 * and a single device call refused at a chosen point: a memory-obtaining call (failOn) or one that
 * gives memory back (unmap, freeSegment). After every operation:
 * - the books: live blocks apart and aligned, live figures as the model's, reserved bytes as the
 *   device's, device calls agree, pool.checkInvariants();
 * - the snapshot maps exactly the reserved bytes, and the reserved peak is never below reserved;
 * - after a trim() that succeeded, every mapped allocation holds a live block;
 * - with segments, free + live block sizes + cached bytes = reserved bytes.
 * At the end, with every block released, trim() leaves nothing and destroy() nothing on the device.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Block,
  createPool,
  type Device,
  DeviceError,
  KiB,
  MiB,
  memoryObtainingCalls,
  policyNames,
  SimulatedDevice,
} from '../src/index.js';
import {
  addLive,
  checkProperty,
  definedOnly,
  expectAllBack,
  type LiveSpan,
  same,
  sameBooks,
  takeAt,
} from './helpers/model.js';

const RUNS = 150;

const configArb = fc.record({
  policy: fc.constantFrom(undefined, ...policyNames()),
  pageBytes: fc.constantFrom(64 * KiB, 2 * MiB),
  allocationPages: fc.constantFrom(1, 2, 3, 5, 32),
  capacityPages: fc.integer({ min: 8, max: 200 }),
  limitFraction: fc.constantFrom(undefined, 0.5, 0.77, 1, 1.3),
  arenaFraction: fc.constantFrom(undefined, 0.5, 1, 1.01, 3),
  retainFraction: fc.option(fc.constantFrom(0, 0.1, 0.5), { nil: undefined }),
  retainMinPages: fc.option(fc.constantFrom(0, 1, 3, 7), { nil: undefined }),
  highWaterSlack: fc.option(fc.constantFrom(0, 0.1, 1), { nil: undefined }),
  swapsPerRaise: fc.option(fc.constantFrom(0, 1, 2, 64), { nil: undefined }),
  mappedFitFactor: fc.option(fc.constantFrom(0, 1, 8, Number.POSITIVE_INFINITY), { nil: undefined }),
  mapAheadFraction: fc.option(fc.constantFrom(0, 0.1, 1), { nil: undefined }),
  blockCacheBytes: fc.option(fc.constantFrom(0, 4096, MiB), { nil: undefined }),
  mode: fc.constantFrom('vmm' as const, 'vmm' as const, 'segments' as const),
});
type Config = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

/** `failAt`: the n-th device call of the operation is refused (0: none). Sizes are fractions of the limit. */
type Op =
  | { kind: 'acquire'; fraction: number; stream: number; alignmentBytes: number; failAt: number }
  | { kind: 'release'; pick: number; refuse: boolean }
  | { kind: 'trim' | 'releaseIdle'; failAt: number }
  | { kind: 'completeWork' }
  | { kind: 'prewarm'; fraction: number; count: number; failAt: number };

const failAtArb = fc.constantFrom(0, 0, 0, 1, 2, 3);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('acquire' as const),
      fraction: fc.oneof(
        fc.double({ min: 0, max: 0.05, noNaN: true }),
        fc.double({ min: 0, max: 0.6, noNaN: true }),
      ),
      stream: fc.constantFrom(0, 0, 1),
      alignmentBytes: fc.constantFrom(256, 4096, 65536),
      failAt: failAtArb,
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat(), refuse: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('trim' as const), failAt: failAtArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('releaseIdle' as const), failAt: failAtArb }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'completeWork' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('prewarm' as const),
      fraction: fc.double({ min: 0, max: 0.2, noNaN: true }),
      count: fc.integer({ min: 1, max: 3 }),
      failAt: failAtArb,
    }),
  },
);

/** `inner` behind a wrapper that refuses the `refuseAt`-th call giving memory back (unmap, freeSegment). */
function refusingReturns(inner: SimulatedDevice): { device: Device; refuseAfter: (n: number) => void } {
  let calls = 0;
  let refuseAt = -1;
  const wrap = (call: 'unmap' | 'freeSegment') => ({
    value(...args: unknown[]) {
      if (++calls === refuseAt) throw new DeviceError(call, 'refused by the test');
      return (inner[call] as (...a: unknown[]) => unknown).apply(inner, args);
    },
  });
  return {
    device: Object.create(inner, { unmap: wrap('unmap'), freeSegment: wrap('freeSegment') }) as Device,
    refuseAfter: (n) => {
      refuseAt = n > 0 ? calls + n : -1;
    },
  };
}

function runSequence(config: Config, ops: readonly Op[]): void {
  let obtaining = 0;
  let failObtainingAt = -1;
  const capacityBytes = config.capacityPages * config.pageBytes;
  const inner = new SimulatedDevice({
    capacityBytes,
    pageBytes: config.pageBytes,
    allocationBytes: config.allocationPages * config.pageBytes,
    failOn: () => ++obtaining === failObtainingAt,
  });
  const { device, refuseAfter } = refusingReturns(inner);
  const refuse = (n: number) => {
    failObtainingAt = n > 0 ? obtaining + n : -1;
    refuseAfter(n);
  };
  const limitBytes =
    config.limitFraction === undefined
      ? undefined
      : Math.max(4096, Math.floor(capacityBytes * config.limitFraction));
  const limit = limitBytes ?? capacityBytes;
  const arenaBytes =
    config.arenaFraction === undefined
      ? undefined
      : Math.ceil(Math.min(limit, capacityBytes) * config.arenaFraction);
  const { policy, mode, pageBytes, retainMinPages, ...rest } = config;
  const { allocationPages: _a, capacityPages: _c, limitFraction: _l, arenaFraction: _r, ...options } = rest;
  const pool = createPool({
    device,
    policy,
    mode,
    limitBytes,
    arenaBytes,
    detectLeaks: false,
    retainMinBytes: retainMinPages === undefined ? undefined : retainMinPages * pageBytes,
    ...definedOnly(options),
  });
  // Segment pools keep frees on other streams pending, outside every figure: one stream there.
  const streams = mode === 'segments' ? [0, 0] : [0, inner.streams.createStream()];
  const live: (LiveSpan & { block: Block })[] = [];
  let liveBytes = 0;
  const expectCode = (error: unknown, ...codes: string[]) => {
    if (!codes.includes((error as { code?: string }).code ?? '')) throw error;
  };

  for (const op of ops) {
    let trimmed = false;
    if (op.kind === 'acquire' || op.kind === 'prewarm') {
      const before = pool.stats();
      const bytes = Math.floor(op.fraction * limit);
      refuse(op.failAt);
      try {
        if (op.kind === 'acquire') {
          const block = pool.acquire(bytes, {
            stream: streams[op.stream]!,
            alignmentBytes: op.alignmentBytes,
          });
          addLive(live, block, op.alignmentBytes);
          liveBytes += block.bytes;
        } else {
          pool.prewarm([{ shape: [Math.max(1, Math.floor(bytes / 4))], dtype: 'float32', count: op.count }]);
        }
      } catch (error) {
        expectCode(error, 'ERR_GPUPOOL_OUT_OF_MEMORY', 'ERR_GPUPOOL_DEVICE');
        same('liveBytes after a failed acquire', pool.stats().liveBytes, before.liveBytes);
      } finally {
        refuse(0);
      }
    } else if (op.kind === 'release') {
      if (live.length === 0) continue;
      const entry = takeAt(live, op.pick);
      refuse(op.refuse ? 1 : 0); // a release never fails, whatever the device refuses on the way
      entry.block.release();
      refuse(0);
      liveBytes -= entry.block.bytes;
    } else if (op.kind === 'trim' || op.kind === 'releaseIdle') {
      const before = pool.stats().reservedBytes;
      refuse(op.failAt);
      try {
        const returned = op.kind === 'trim' ? pool.trim() : pool.releaseIdle();
        same(`${op.kind}() result`, returned, before - pool.stats().reservedBytes);
        trimmed = op.kind === 'trim';
      } catch (error) {
        expectCode(error, 'ERR_GPUPOOL_DEVICE');
      } finally {
        refuse(0);
      }
    } else {
      inner.completeAllWork();
    }
    const stats = pool.stats();
    sameBooks(
      stats,
      { liveBytes, liveBlocks: live.length, limitBytes: limit },
      { usedBytes: inner.usedBytes, obtainingCalls: memoryObtainingCalls(inner.calls) },
    );
    pool.checkInvariants();
    if (stats.peakReservedBytes < stats.reservedBytes)
      throw new Error(`peakReservedBytes ${stats.peakReservedBytes} < reservedBytes ${stats.reservedBytes}`);
    const snapshot = pool.snapshot();
    same(
      'snapshot mapped bytes',
      snapshot.arenas.reduce((sum, a) => sum + a.mappedBytes, 0),
      stats.reservedBytes,
    );
    if (trimmed && mode === 'vmm') {
      const arena = snapshot.arenas[0]!;
      for (const [first, count] of arena.mappedRuns) {
        const start = first * arena.pageBytes;
        const end = (first + count) * arena.pageBytes;
        if (!snapshot.blocks.some((b) => b.address < end && start < b.address + b.sizeBytes))
          throw new Error(
            `after trim(), the allocation at page ${first} (${count} pages) holds no live block`,
          );
      }
    }
    if (mode === 'segments' && policy !== 'exactShape') {
      const sizes = snapshot.blocks.reduce((sum, b) => sum + b.sizeBytes, 0);
      same(
        'free + live sizes + cached (segments)',
        stats.freeBytes + sizes + stats.cachedBytes,
        stats.reservedBytes,
      );
    }
  }
  expectAllBack(pool, inner, live);
}

describe('layouts, floors and single refused calls against a model', () => {
  it(`keeps the books in ${RUNS} configurations`, () => {
    const runs = checkProperty(
      fc.property(configArb, fc.array(opArb, { minLength: 1, maxLength: 250, size: 'max' }), (config, ops) =>
        runSequence(config, ops),
      ),
      RUNS,
    );
    expect(runs).toBe(RUNS);
  });
});
