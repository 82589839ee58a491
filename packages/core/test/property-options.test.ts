/**
 * Property-based tests over the option space: property.test.ts runs every policy with default
 * options; here each run draws its own configuration (policy, allocation size, mode, limit, leak
 * detection, retainFraction, highWaterSlack, swapsPerRaise, mappedFitFactor, mapAheadFraction,
 * blockCacheBytes) and a sequence that also frees on other streams, lets queued work finish,
 * calls releaseIdle(), trim() and prewarm(), and makes every memory-obtaining device call of an
 * operation fail (fault ops). After every operation:
 * - live blocks never overlap, and each is aligned as asked;
 * - live bytes and blocks equal the model's; a failed acquire changed neither;
 * - reservedBytes equals what the device has handed out, never above limitBytes; device calls agree;
 * - trim() and releaseIdle() return exactly the drop in reservedBytes;
 * and pool.checkInvariants() (blocks, policy books, page books) every few operations. At the end,
 * with every block released, trim() leaves nothing reserved and destroy() nothing on the device.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Block,
  createPool,
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
  expectAllBack,
  type LiveSpan,
  same,
  sameBooks,
  takeAt,
} from './helpers/model.js';

const PAGE_BYTES = 2 * MiB;
const RUNS = 300;
const INVARIANTS_EVERY = 16;

const configArb = fc.record({
  // undefined: the pool's default for the device and mode (defaultPolicyName).
  policy: fc.constantFrom(undefined, ...policyNames()),
  allocationPages: fc.constantFrom(1, 4, 32),
  mode: fc.constantFrom('vmm' as const, 'vmm' as const, 'segments' as const),
  limitBytes: fc.constantFrom(48 * MiB, 96 * MiB, 256 * MiB),
  detectLeaks: fc.constantFrom(false, 'sampled' as const, 'all' as const),
  retainFraction: fc.option(fc.constantFrom(0, 0.1, 0.5), { nil: undefined }),
  highWaterSlack: fc.option(fc.constantFrom(0, 0.1, 1), { nil: undefined }),
  swapsPerRaise: fc.option(fc.constantFrom(0, 1, 64, Number.POSITIVE_INFINITY), { nil: undefined }),
  mappedFitFactor: fc.option(fc.constantFrom(0, 1, 8, Number.POSITIVE_INFINITY), { nil: undefined }),
  mapAheadFraction: fc.option(fc.constantFrom(0, 0.1, 1), { nil: undefined }),
  blockCacheBytes: fc.option(fc.constantFrom(0, 4096, MiB), { nil: undefined }),
});
type Config = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

type Op =
  | { kind: 'acquire'; bytes: number; stream: number; alignmentBytes: number; fault: boolean }
  | { kind: 'release'; pick: number }
  | { kind: 'trim' }
  | { kind: 'releaseIdle' }
  | { kind: 'completeWork' }
  | { kind: 'prewarm'; elements: number; count: number; fault: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant('acquire' as const),
      bytes: blockBytesArb(12 * MiB),
      stream: fc.constantFrom(0, 0, 1, 2),
      alignmentBytes: fc.constantFrom(256, 256, 4096, 65536, PAGE_BYTES),
      fault: fc.constant(false),
    }),
  },
  {
    // Every memory-obtaining device call of the acquire fails (OOM recovery runs, then the error).
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('acquire' as const),
      bytes: fc.integer({ min: 1, max: 12 * MiB }),
      stream: fc.constant(0),
      alignmentBytes: fc.constant(256),
      fault: fc.constant(true),
    }),
  },
  { weight: 10, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'trim' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'releaseIdle' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'completeWork' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('prewarm' as const),
      elements: fc.integer({ min: 1, max: 300_000 }),
      count: fc.integer({ min: 1, max: 4 }),
      fault: fc.boolean(),
    }),
  },
);

function runSequence(config: Config, ops: readonly Op[]): void {
  let faulting = false;
  const device = new SimulatedDevice({
    capacityBytes: 256 * MiB,
    pageBytes: PAGE_BYTES,
    allocationBytes: config.allocationPages * PAGE_BYTES,
    failOn: () => faulting,
  });
  const { policy, mode, limitBytes, detectLeaks, allocationPages: _pages, ...rest } = config;
  // Options the configuration leaves out (undefined) take their defaults.
  const options: PoolOptions = { device, policy, mode, limitBytes, detectLeaks, ...definedOnly(rest) };
  const pool = createPool(options);
  const streams = [0, device.streams.createStream(), device.streams.createStream()];
  const live: (LiveSpan & { block: Block })[] = [];
  let liveBytes = 0;

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'acquire') {
      const before = pool.stats();
      faulting = op.fault;
      let block: Block | undefined;
      try {
        block = pool.acquire(op.bytes, { stream: streams[op.stream]!, alignmentBytes: op.alignmentBytes });
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
        same('liveBytes after a failed acquire', pool.stats().liveBytes, before.liveBytes);
      } finally {
        faulting = false;
      }
      if (block !== undefined) {
        addLive(live, block, op.alignmentBytes);
        liveBytes += block.bytes;
      }
    } else if (op.kind === 'release') {
      if (live.length === 0) continue;
      const entry = takeAt(live, op.pick);
      entry.block.release();
      liveBytes -= entry.block.bytes;
    } else if (op.kind === 'trim' || op.kind === 'releaseIdle') {
      const before = pool.stats().reservedBytes;
      const returned = op.kind === 'trim' ? pool.trim() : pool.releaseIdle();
      same(`${op.kind}() result`, returned, before - pool.stats().reservedBytes);
    } else if (op.kind === 'completeWork') {
      device.completeAllWork();
    } else {
      faulting = op.fault;
      try {
        pool.prewarm([{ shape: [op.elements], dtype: 'float32', count: op.count }]);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
      } finally {
        faulting = false;
      }
    }
    sameBooks(
      pool.stats(),
      { liveBytes, liveBlocks: live.length, limitBytes },
      { usedBytes: device.usedBytes, obtainingCalls: memoryObtainingCalls(device.calls) },
    );
    if (i % INVARIANTS_EVERY === 0) pool.checkInvariants();
  }
  pool.checkInvariants();
  expectAllBack(pool, device, live);
}

describe('random configurations and sequences against a model', () => {
  it(`keeps the books in ${RUNS} configurations (streams, faults, releaseIdle, prewarm)`, () => {
    const runs = checkProperty(
      fc.property(configArb, fc.array(opArb, { minLength: 1, maxLength: 600, size: 'max' }), (config, ops) =>
        runSequence(config, ops),
      ),
      RUNS,
    );
    expect(runs).toBe(RUNS);
  });
});
