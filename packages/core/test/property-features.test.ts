/**
 * Property-based tests of the less-used features, under random configurations and sequences:
 * property-options.test.ts draws the release options over byte-sized blocks; here each run also
 * draws shapes and dtypes (exactShape's and sizeClass's keys), arenaBytes, a limitBytes that need
 * not be a multiple of the page, retainMinBytes, captureStacks and leakAgeMs, and sometimes a
 * HostDevice whose bytes are real. The sequence acquires, releases, trims, calls releaseIdle(),
 * prewarms, resets peaks and takes snapshots. After every operation:
 * - live bytes and blocks equal the model's; reservedBytes equals what the device handed out and
 *   never exceeds limitBytes; peak figures are never below the current ones;
 * - a released block's ptr throws ReleasedBlockError; on a HostDevice, bytes written into a block
 *   when it was acquired are still there at its release (nothing else wrote or unmapped them);
 * - a successful prewarm leaves its memory mapped (the retention floor, whatever retainFraction);
 * - a snapshot survives a JSON round trip and agrees with stats() and with the blocks;
 * - trim() and releaseIdle() return exactly the drop in reservedBytes, and a third releaseIdle()
 *   in a row finds nothing left to give back;
 * and pool.checkInvariants() every few operations. At the end, destroy() leaves nothing on the
 * device, and blocks still held give no pointer (PoolDestroyedError).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Block,
  bytesOfShape,
  createPool,
  type DType,
  HostDevice,
  MiB,
  memoryObtainingCalls,
  type PoolOptions,
  policyNames,
  SimulatedDevice,
} from '../src/index.js';
import {
  addLive,
  blockBytesArb,
  checkProperty,
  definedOnly,
  type LiveSpan,
  same,
  sameBooks,
  takeAt,
} from './helpers/model.js';

const PAGE_BYTES = 2 * MiB;
const RUNS = 120;
const INVARIANTS_EVERY = 8;
const HOST_CAPACITY_BYTES = 32 * MiB;
const SHAPES: readonly (readonly number[])[] = [[64], [17, 31], [256, 128], [1, 3, 224, 224], [3, 700, 1000]];
const DTYPES: readonly DType[] = ['float16', 'float32', 'uint8', 'int64'];

const configArb = fc.record({
  // undefined: the pool's default for the device and mode (defaultPolicyName).
  policy: fc.constantFrom(undefined, ...policyNames()),
  host: fc.constantFrom(false, false, false, false, false, false, false, true),
  allocationPages: fc.constantFrom(1, 2, 4, 32),
  mode: fc.constantFrom('vmm' as const, 'vmm' as const, 'segments' as const),
  limitBytes: fc.constantFrom(7 * MiB, 40 * MiB + 12_345, 48 * MiB, 96 * MiB + 1),
  /** arenaBytes as a fraction of limitBytes (undefined: the default). */
  arenaFactor: fc.option(fc.constantFrom(0.25, 0.5, 1, 1.3), { nil: undefined }),
  retainFraction: fc.option(fc.constantFrom(0, 0.1, 0.5), { nil: undefined }),
  retainMinBytes: fc.option(fc.constantFrom(0, PAGE_BYTES, 5 * MiB + 1), { nil: undefined }),
  highWaterSlack: fc.option(fc.constantFrom(0, 1), { nil: undefined }),
  swapsPerRaise: fc.option(fc.constantFrom(0, 1, Number.POSITIVE_INFINITY), { nil: undefined }),
  mappedFitFactor: fc.option(fc.constantFrom(0, 8), { nil: undefined }),
  mapAheadFraction: fc.option(fc.constantFrom(0, 0.5), { nil: undefined }),
  blockCacheBytes: fc.option(fc.constantFrom(0, MiB), { nil: undefined }),
  // Timers never fire inside a synchronous run: these only make the pool record ages and stacks.
  leakAgeMs: fc.option(fc.constant(60_000), { nil: undefined }),
  captureStacks: fc.boolean(),
});
type Config = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

type Op =
  | { kind: 'acquire'; bytes: number; shape: number; dtype: number; alignmentBytes: number }
  | { kind: 'release'; pick: number }
  | { kind: 'trim' }
  | { kind: 'releaseIdle' }
  | { kind: 'resetPeaks' }
  | { kind: 'snapshot' }
  | { kind: 'prewarm'; shape: number; dtype: number; count: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('acquire' as const),
      bytes: blockBytesArb(9 * MiB),
      // Negative: by bytes; otherwise an index into SHAPES (repeated keys exercise exactShape).
      shape: fc.integer({ min: -3, max: SHAPES.length - 1 }),
      dtype: fc.nat(DTYPES.length - 1),
      alignmentBytes: fc.constantFrom(256, 256, 4096, PAGE_BYTES),
    }),
  },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'trim' as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: 'releaseIdle' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'resetPeaks' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'snapshot' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('prewarm' as const),
      shape: fc.nat(SHAPES.length - 1),
      dtype: fc.nat(DTYPES.length - 1),
      count: fc.integer({ min: 1, max: 3 }),
    }),
  },
);

/** The byte a block's memory is filled with on a HostDevice. */
const patternOf = (block: Block) => (block.id * 7 + 1) & 255;

function codeOf(error: unknown): string | undefined {
  return (error as { code?: string }).code;
}

function runSequence(config: Config, ops: readonly Op[]): void {
  const deviceOptions = {
    pageBytes: PAGE_BYTES,
    allocationBytes: config.allocationPages * PAGE_BYTES,
  };
  const host = config.host ? new HostDevice({ ...deviceOptions, capacityBytes: HOST_CAPACITY_BYTES }) : null;
  const device = host ?? new SimulatedDevice({ ...deviceOptions, capacityBytes: 256 * MiB });
  const { policy, mode, limitBytes, arenaFactor, host: _host, allocationPages: _pages, ...rest } = config;
  // Options the configuration leaves out (undefined) take their defaults.
  const options: PoolOptions = { device, policy, mode, limitBytes, detectLeaks: false, ...definedOnly(rest) };
  if (arenaFactor !== undefined) {
    // A HostDevice's address space is its memory: no arena larger than that.
    options.arenaBytes = Math.min(
      Math.round(limitBytes * arenaFactor),
      host ? HOST_CAPACITY_BYTES : Infinity,
    );
  }
  const pool = createPool(options);
  const vmm = pool.snapshot().backing === 'vmm';
  const live: (LiveSpan & { block: Block })[] = [];
  let liveBytes = 0;
  let idleInARow = 0;

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind !== 'releaseIdle') idleInARow = 0;
    if (op.kind === 'acquire') {
      const request = op.shape < 0 ? op.bytes : { shape: SHAPES[op.shape]!, dtype: DTYPES[op.dtype]! };
      let block: Block | undefined;
      try {
        block = pool.acquire(request, { alignmentBytes: op.alignmentBytes });
      } catch (error) {
        if (codeOf(error) !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
      }
      if (block !== undefined) {
        addLive(live, block, op.alignmentBytes);
        liveBytes += block.bytes;
        if (host !== null && block.bytes > 0) {
          // A few bytes, not all of them: a scrubbed (unmapped) or overwritten page shows there too.
          const view = host.view(block);
          for (const at of [0, view.length >> 1, view.length - 1]) view[at] = patternOf(block);
        }
      }
    } else if (op.kind === 'release') {
      if (live.length === 0) continue;
      const { block } = takeAt(live, op.pick);
      if (host !== null && block.bytes > 0) {
        const view = host.view(block);
        for (const at of [0, view.length >> 1, view.length - 1]) {
          if (view[at] !== patternOf(block)) throw new Error(`block #${block.id}: byte ${at} changed`);
        }
      }
      block.release();
      liveBytes -= block.bytes;
      try {
        void block.ptr;
        throw new Error(`block #${block.id}: ptr readable after release`);
      } catch (error) {
        if (codeOf(error) !== 'ERR_GPUPOOL_RELEASED_BLOCK') throw error;
      }
    } else if (op.kind === 'trim' || op.kind === 'releaseIdle') {
      const before = pool.stats().reservedBytes;
      const returned = op.kind === 'trim' ? pool.trim() : pool.releaseIdle();
      same(`${op.kind}() result`, returned, before - pool.stats().reservedBytes);
      // Two calls in a row released every group empty since before the first (down to the floor).
      if (op.kind === 'releaseIdle' && idleInARow >= 2) same('a third releaseIdle() in a row', returned, 0);
      idleInARow = op.kind === 'releaseIdle' ? idleInARow + 1 : 0;
    } else if (op.kind === 'resetPeaks') {
      pool.resetPeaks();
      const stats = pool.stats();
      same('peakLiveBytes after resetPeaks()', stats.peakLiveBytes, stats.liveBytes);
      same('peakReservedBytes after resetPeaks()', stats.peakReservedBytes, stats.reservedBytes);
    } else if (op.kind === 'snapshot') {
      const snapshot = pool.snapshot();
      expect(JSON.parse(JSON.stringify(snapshot))).toEqual(snapshot);
      const stats = pool.stats();
      for (const key of Object.keys(stats) as (keyof typeof stats)[]) {
        same(`snapshot stats.${key}`, snapshot.stats[key], stats[key]);
      }
      same('snapshot blocks', snapshot.blocks.length, live.length);
      same(
        'Σ mapped bytes',
        snapshot.arenas.reduce((s, a) => s + a.mappedBytes, 0),
        stats.reservedBytes,
      );
      same(
        'Σ free runs',
        snapshot.free.reduce((s, f) => s + f.bytes, 0),
        stats.freeBytes,
      );
      const byId = new Map(snapshot.blocks.map((b) => [b.id, b]));
      const bases = new Map(snapshot.arenas.map((a) => [a.id, BigInt(a.base)]));
      for (const { block } of live) {
        const entry = byId.get(block.id);
        if (entry === undefined) throw new Error(`block #${block.id} missing from the snapshot`);
        same(`block #${block.id} offset`, entry.offset, block.offset);
        if (bases.get(entry.arenaId)! + BigInt(entry.offset) !== block.ptr)
          throw new Error(`block #${block.id}: arena base + offset is not its ptr`);
        if ((entry.ageMs !== null) !== (config.leakAgeMs !== undefined || config.captureStacks))
          throw new Error(`block #${block.id}: ageMs ${entry.ageMs}`);
        if ((entry.stack !== null) !== config.captureStacks) throw new Error(`block #${block.id}: stack`);
      }
    } else {
      const spec = { shape: SHAPES[op.shape]!, dtype: DTYPES[op.dtype]!, count: op.count };
      let done = false;
      try {
        pool.prewarm([spec]);
        done = true;
      } catch (error) {
        if (codeOf(error) !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
      }
      if (done && vmm) {
        // The blocks were live at once, so their pages were mapped; released, they stay (the floor).
        const bytes = op.count * bytesOfShape(spec.shape, spec.dtype);
        const floor = Math.floor(bytes / PAGE_BYTES) * PAGE_BYTES;
        if (pool.stats().reservedBytes < floor)
          throw new Error(`prewarm left ${pool.stats().reservedBytes} bytes mapped, below ${floor}`);
      }
    }
    const stats = pool.stats();
    sameBooks(
      stats,
      { liveBytes, liveBlocks: live.length, limitBytes },
      { usedBytes: device.usedBytes, obtainingCalls: memoryObtainingCalls(device.calls) },
    );
    if (stats.peakReservedBytes < stats.reservedBytes)
      throw new Error('peakReservedBytes below reservedBytes');
    if (stats.peakLiveBytes < stats.liveBytes) throw new Error('peakLiveBytes below liveBytes');
    if (i % INVARIANTS_EVERY === 0) pool.checkInvariants();
  }
  pool.checkInvariants();
  pool.destroy();
  same('device bytes after destroy()', device.usedBytes, 0);
  expect(device.openAllocations).toEqual({ ranges: 0, segments: 0 });
  for (const { block } of live) {
    try {
      void block.ptr;
      throw new Error(`block #${block.id}: ptr readable after destroy()`);
    } catch (error) {
      if (codeOf(error) !== 'ERR_GPUPOOL_POOL_DESTROYED') throw error;
    }
    block.release(); // inert: detaches the handle, moves no figure
  }
  same('liveBlocks after destroy()', pool.stats().liveBlocks, 0);
}

describe('random feature sequences against a model', () => {
  it(`keeps the books in ${RUNS} configurations (shapes, arenas, floors, snapshots, peaks)`, () => {
    const runs = checkProperty(
      fc.property(configArb, fc.array(opArb, { minLength: 1, maxLength: 300, size: 'max' }), (config, ops) =>
        runSequence(config, ops),
      ),
      RUNS,
    );
    expect(runs).toBe(RUNS);
  });
});
