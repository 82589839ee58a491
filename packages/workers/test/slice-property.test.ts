/**
 * Property-based test of one slice (the main thread's) over the shared arena: random acquires (from
 * empty blocks to runs of several superblocks, past the arena's size too), releases, trims, and
 * descriptor round trips, checked after every operation against a model of the live blocks:
 * - live blocks never overlap and lie inside the arena; each keeps the bytes written to it;
 * - the pool's live bytes and blocks equal the model's, and a failed acquire changes neither;
 * - the slice's reserved bytes are the superblocks it owns, and the arena's directory agrees;
 * - a descriptor resolves to the very block, and no longer once it is released;
 * pool.checkInvariants() and arena.checkDirectory() every few operations. After each sequence every
 * block is released and trim() hands every superblock back to the arena.
 */
import { type Block, MiB } from '@gpupool/core';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { assertApart, checkProperty, type LiveSpan, same, takeAt } from '../../core/test/helpers/model.js';
import { createWorkerPool, fromDescriptor, toDescriptor } from '../dist/index.js';
import { DEVICE_KIND, makeDevice, WORKER_FILE } from './test-device.js';

const SUPERBLOCK_BYTES = 4 * MiB;
const SUPERBLOCKS = 24;
const RUNS = 60;
const CHECK_EVERY = 8;

const wp = createWorkerPool({
  device: makeDevice(),
  filename: WORKER_FILE,
  arenaBytes: SUPERBLOCKS * SUPERBLOCK_BYTES,
  superblockBytes: SUPERBLOCK_BYTES,
  minThreads: 1,
  maxThreads: 1,
  idleTimeout: 60_000,
});
afterAll(() => wp.destroy());

type Op =
  | { kind: 'acquire'; bytes: number }
  | { kind: 'release'; pick: number }
  | { kind: 'trim' }
  | { kind: 'descriptor'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant('acquire' as const),
      bytes: fc.oneof(
        { weight: 6, arbitrary: fc.integer({ min: 0, max: 64 * 1024 }) },
        { weight: 3, arbitrary: fc.integer({ min: 64 * 1024, max: SUPERBLOCK_BYTES }) },
        {
          weight: 1,
          arbitrary: fc.integer({ min: SUPERBLOCK_BYTES, max: (SUPERBLOCKS + 2) * SUPERBLOCK_BYTES }),
        },
      ),
    }),
  },
  { weight: 9, arbitrary: fc.record({ kind: fc.constant('release' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'trim' as const }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('descriptor' as const), pick: fc.nat() }) },
);

interface Live extends LiveSpan {
  block: Block;
  /** The byte written at the block's first and last bytes (blocks of 0 bytes: none). */
  mark: number;
}

function runSequence(ops: readonly Op[]): void {
  const pool = wp.mainPool;
  const data = pool.device.data!;
  const arenaStart = Number(wp.arena.range.base);
  const arenaEnd = arenaStart + wp.arena.arenaBytes;
  const live: Live[] = [];
  let liveBytes = pool.stats().liveBytes;
  const one = new Uint8Array(1);
  const readByte = (block: Block, offset: number): number => {
    data.copyOut(block, one, offset);
    return one[0]!;
  };

  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    if (op.kind === 'acquire') {
      const before = pool.stats();
      let block: Block | undefined;
      try {
        block = pool.acquire(op.bytes);
      } catch (error) {
        if ((error as { code?: string }).code !== 'ERR_GPUPOOL_OUT_OF_MEMORY') throw error;
        same('liveBytes after a failed acquire', pool.stats().liveBytes, before.liveBytes);
        same('liveBlocks after a failed acquire', pool.stats().liveBlocks, before.liveBlocks);
      }
      if (block !== undefined) {
        const start = Number(block.ptr);
        const end = start + Math.max(block.bytes, 1);
        if (start < arenaStart || end > arenaEnd)
          throw new Error(`block #${block.id} lies outside the arena`);
        assertApart(live, block.id, start, end);
        const mark = (block.id % 251) + 1;
        if (block.bytes > 0) {
          one[0] = mark;
          data.copyIn(block, one, 0);
          data.copyIn(block, one, block.bytes - 1);
        }
        live.push({ block, start, end, mark });
        liveBytes += block.bytes;
      }
    } else if (op.kind === 'release') {
      if (live.length === 0) continue;
      const entry = takeAt(live, op.pick);
      if (entry.block.bytes > 0) {
        // Nothing else wrote into this block while it was live.
        same(`block #${entry.block.id} first byte`, readByte(entry.block, 0), entry.mark);
        same(`block #${entry.block.id} last byte`, readByte(entry.block, entry.block.bytes - 1), entry.mark);
      }
      entry.block.release();
      liveBytes -= entry.block.bytes;
    } else if (op.kind === 'trim') {
      const before = pool.stats().reservedBytes;
      same('trim() result', pool.trim(), before - pool.stats().reservedBytes);
    } else {
      if (live.length === 0) continue;
      const entry = live[op.pick % live.length]!;
      const d = toDescriptor(entry.block);
      if (fromDescriptor(structuredClone(d)) !== entry.block)
        throw new Error('a descriptor resolved to another block');
    }
    const stats = pool.stats();
    same('liveBytes', stats.liveBytes, liveBytes);
    same('liveBlocks', stats.liveBlocks, live.length);
    same(
      'reserved bytes vs superblocks the arena says this slice owns',
      stats.reservedBytes,
      wp.stats().arena.ownedSuperblocks * SUPERBLOCK_BYTES,
    );
    if (i % CHECK_EVERY === 0) {
      pool.checkInvariants();
      wp.arena.checkDirectory();
    }
  }
  pool.checkInvariants();
  const released = live.map((entry) => toDescriptor(entry.block));
  for (const entry of live) entry.block.release();
  for (const d of released) expect(() => fromDescriptor(d)).toThrow(/released/);
  pool.trim();
  same('superblocks owned after releasing everything and trim()', wp.stats().arena.ownedSuperblocks, 0);
  pool.checkInvariants();
  wp.arena.checkDirectory();
}

describe(`main-thread slice: random sequences against a model (${DEVICE_KIND})`, () => {
  it(`keeps blocks apart, bytes intact and the directory true over ${RUNS} sequences`, () => {
    const runs = checkProperty(
      fc.property(fc.array(opArb, { minLength: 1, maxLength: 400, size: 'max' }), (ops) => runSequence(ops)),
      RUNS,
    );
    expect(runs).toBe(RUNS);
  });
});
