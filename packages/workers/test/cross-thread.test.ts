/**
 * Blocks crossing threads, handled the way a buggy caller would: altered descriptors, a descriptor
 * released twice from two threads, stale descriptors, owners that die in between, releasing
 * threads that die with frees their owner's full queue could not take, and exporting from a pool
 * that was destroyed. What must hold: a clear typed error for bad input, blocks never overlap
 * (a live block's superblock is never handed to another thread), nothing is lost, stats add up.
 */
import { ArgumentRangeError, PoolDestroyedError } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import {
  type BlockDescriptor,
  fromDescriptor,
  type SliceStats,
  toDescriptor,
  type WorkerPool,
} from '../dist/index.js';
import {
  catchError,
  DEVICE_KIND,
  describeWithWorkers,
  expectBytesKept,
  SUPERBLOCK,
  waitFor,
  workerPools,
} from './test-device.js';

const { pool } = workerPools({ arenaBytes: 4 * SUPERBLOCK });

const worker = describeWithWorkers();

describe(`descriptors with altered fields (${DEVICE_KIND})`, () => {
  it('in the owner thread: bytes that are not the block’s are refused with a range error naming descriptor.bytes', () => {
    const wp = pool({ minThreads: 0 }); // the main thread only
    const block = wp.mainPool.acquire(1000);
    const d = toDescriptor(block);
    const error = catchError(() => fromDescriptor({ ...d, bytes: 5000 }));
    expect(error).toBeInstanceOf(ArgumentRangeError);
    expect(error).toMatchObject({ argument: 'descriptor.bytes' });
    expect(fromDescriptor(d)).toBe(block); // the real descriptor still resolves
  });

  it('an offset past the arena’s end is refused with a range error naming descriptor.offset', () => {
    const wp = pool({ minThreads: 0 }); // the main thread only
    const d = toDescriptor(wp.mainPool.acquire(1000));
    for (const offset of [wp.arena.arenaBytes, 100 * wp.arena.arenaBytes]) {
      const error = catchError(() => fromDescriptor({ ...d, offset, bytes: 0 }));
      expect(error).toBeInstanceOf(ArgumentRangeError);
      expect(error).toMatchObject({ argument: 'descriptor.offset' });
    }
  });

  it('toDescriptor on a block of a destroyed slice pool throws PoolDestroyedError and changes no count', () => {
    const wp = pool({ minThreads: 0 }); // the main thread only
    const main = wp.mainPool;
    const block = main.acquire(1000);
    main.destroy();
    const header = wp.arena.words.slice(0, 16);
    const stats = wp.stats().arena;
    expect(() => toDescriptor(block)).toThrow(PoolDestroyedError);
    expect(wp.arena.words.slice(0, 16)).toEqual(header);
    expect(wp.stats().arena).toEqual(stats);
  });

  it('an exported block released in its own thread after its slice pool was destroyed: its superblock goes back', () => {
    const wp = pool({ minThreads: 0 }); // the main thread only
    const main = wp.mainPool;
    const block = main.acquire(1000);
    toDescriptor(block); // handed out, but the receiver never used it
    main.destroy(); // the run stays owned: another thread may hold the block
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    block.release();
    wp.reclaim();
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
    wp.arena.checkDirectory();
  });

  it.each(['descriptor first', 'block first'])(
    'an exported block released twice after its slice pool was destroyed (%s) counts once: a later block in its superblock keeps it',
    (order) => {
      const wp = pool({ minThreads: 0, arenaBytes: SUPERBLOCK }); // one superblock: the later block lands in it
      const old = wp.mainPool;
      const block = old.acquire(1000);
      const d = toDescriptor(block);
      old.destroy(); // the run stays owned: d is out
      const releaseDescriptor = () => {
        fromDescriptor(d).release(); // a RemoteBlock here: this thread's slice is another now
        wp.reclaim();
      };
      if (order === 'descriptor first') releaseDescriptor();
      else block.release();
      wp.reclaim();
      expect(wp.stats().arena.ownedSuperblocks).toBe(0);
      // A new slice takes the superblock and hands out a block of it.
      const fresh = wp.mainPool;
      const later = fresh.acquire(1000);
      const d2 = toDescriptor(later);
      expect(wp.arena.exportedOf(0)).toBe(1);
      // The second release of the first block: it must not come off the later block's count.
      if (order === 'descriptor first') block.release();
      else expect(catchError(releaseDescriptor)).toMatchObject({ code: 'ERR_GPUPOOL_RELEASED_BLOCK' });
      wp.reclaim();
      expect(wp.arena.exportedOf(0)).toBe(1);
      fresh.destroy(); // d2 is out: its superblock stays owned
      expect(wp.stats().arena.ownedSuperblocks).toBe(1);
      fromDescriptor(d2).release();
      wp.reclaim();
      expect(wp.stats().arena.ownedSuperblocks).toBe(0);
      wp.arena.checkDirectory();
    },
  );
});

worker(`descriptors across threads (${DEVICE_KIND})`, () => {
  it('in another thread: bytes reaching past the owner’s run are refused with a range error naming descriptor.bytes', async () => {
    const wp = pool();
    const [d] = await wp.run<BlockDescriptor[]>(
      { blocks: 1, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    for (const bytes of [SUPERBLOCK + 10, 3 * SUPERBLOCK]) {
      const error = catchError(() => fromDescriptor({ ...d!, bytes }));
      expect(error).toBeInstanceOf(ArgumentRangeError);
      expect(error).toMatchObject({ argument: 'descriptor.bytes' });
    }
    expect(fromDescriptor(d!).bytes).toBe(1000);
    // A block over a run of three superblocks resolves whole.
    const bytes = 2 * SUPERBLOCK + 10;
    const [big] = await wp.run<BlockDescriptor[]>({ blocks: 1, bytes, fill: 5 }, { name: 'exportBlocks' });
    const got = new Uint8Array(bytes);
    wp.mainPool.device.data!.copyOut(fromDescriptor(big!), got);
    expect(got.every((x) => x === 5)).toBe(true);
  });

  it('a block released from two threads after its owner died: the superblock stays with the live block beside it', async () => {
    const wp = pool();
    const [d0, d1] = await wp.run<BlockDescriptor[]>(
      { blocks: 2, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    expect(Math.floor(d0!.offset / SUPERBLOCK)).toBe(Math.floor(d1!.offset / SUPERBLOCK));
    await wp.run({}, { name: 'exitThread' }).catch(() => {});
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1);
    // The main thread and the replacement worker both release d0: a double free.
    fromDescriptor(d0!).release();
    expect(await wp.run({ descriptors: [d0] }, { name: 'releaseDescriptors' })).toEqual(['ok']);
    wp.reclaim();
    expectBytesKept(wp, d1!, 7);
    // Once d1 is released too, the dead slice's superblock goes back and its counts add up.
    fromDescriptor(d1!).release();
    wp.reclaim();
    expect(wp.arena.ownerOf(Math.floor(d1!.offset / SUPERBLOCK))).not.toBe(d1!.owner);
    const dead = sliceOf(wp, d0!.owner);
    expect(dead).toMatchObject({ state: 'free', superblocks: 0, remoteFreesRejected: 1 });
    expect(dead.remoteFreesPushed).toBe(dead.remoteFreesMerged + dead.remoteFreesRejected);
    expect(wp.stats().arena).toMatchObject({ reclaimedSuperblocks: 1, reclaimedRemoteFrees: 2 });
    wp.arena.checkDirectory();
  });

  it('a stale descriptor released after its owner merged the first release and died never frees a live block’s superblock', async () => {
    const wp = pool();
    const [d0, d1] = await wp.run<BlockDescriptor[]>(
      { blocks: 2, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    fromDescriptor(d0!).release();
    await waitFor(() => sliceOf(wp, d0!.owner).remoteFreesMerged === 1); // merged while idle
    await wp.run({}, { name: 'exitThread' }).catch(() => {});
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1);
    fromDescriptor(d0!).release(); // stale: d0 was freed already
    wp.reclaim();
    expectBytesKept(wp, d1!, 7);
    fromDescriptor(d1!).release();
    await wp.destroy();
    expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
  });

  it('frees a worker could not queue (the owner’s queue was full) still arrive after that worker exits', async () => {
    const wp = pool({ remoteFreeQueueCells: 2 });
    const main = wp.mainPool;
    const descriptors = Array.from({ length: 24 }, () => toDescriptor(main.acquire(4096)));
    // The worker releases all 24 into a 2-cell queue, then exits before it could retry any.
    await wp.run({ descriptors, exit: true }, { name: 'releaseDescriptors' }).catch(() => {});
    await waitFor(() => main.stats().liveBlocks === 0);
    expect(sliceOf(wp, descriptors[0]!.owner)).toMatchObject({
      remoteFreesPushed: 24,
      remoteFreesMerged: 24,
      remoteFreesRejected: 0,
    });
  });
});

function sliceOf(wp: WorkerPool, ownerId: number): SliceStats {
  const s = wp.stats().arena.slices.find((x) => x.ownerId === ownerId);
  if (s === undefined) throw new Error(`no slice with owner ${ownerId}`);
  return s;
}
