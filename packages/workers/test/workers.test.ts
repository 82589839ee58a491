import {
  ArgumentRangeError,
  type Block,
  type HostDevice,
  InvalidArgumentError,
  MiB,
  OutOfMemoryError,
} from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import {
  type BlockDescriptor,
  createWorkerPool,
  fromDescriptor,
  NoArenaError,
  SharedArena,
  threadPool,
  toDescriptor,
  type WorkerPool,
} from '../dist/index.js';
import {
  catchError,
  DEVICE_KIND,
  describeWithWorkers,
  makeDevice,
  SUPERBLOCK,
  WORKER_FILE,
  waitFor,
  workerPools,
} from './test-device.js';

const THREADS = Number(process.env.THREADS ?? 2);
const ITERATIONS = Number(process.env.ITERATIONS ?? 1500);

const { pool, keep } = workerPools({
  arenaBytes: 64 * SUPERBLOCK,
  minThreads: THREADS,
  maxThreads: THREADS,
});

const worker = describeWithWorkers();

describe(`arguments (${DEVICE_KIND})`, () => {
  it('rejects bad sizes with typed errors naming the argument, reserving nothing', () => {
    const device = makeDevice();
    const before = device.calls.reserve;
    expect(() => SharedArena.create({ device, arenaBytes: 3 * MiB, superblockBytes: SUPERBLOCK })).toThrow(
      ArgumentRangeError,
    );
    expect(() => SharedArena.create({ device, arenaBytes: 8 * MiB, superblockBytes: 1000 })).toThrow(
      /superblockBytes/,
    );
    expect(() =>
      createWorkerPool({ device, filename: WORKER_FILE, arenaBytes: 8 * MiB, policy: (() => 0) as never }),
    ).toThrow(InvalidArgumentError);
    expect(device.calls.reserve).toBe(before);
  });

  it.each([
    ['emptySuperblocksMax', -1],
    ['emptySuperblocksMax', 1.5],
    ['emptySuperblocksMax', 65],
    ['idleMergeMs', -5],
    ['idleMergeMs', Number.NaN],
    ['idleMergeMs', '25'],
    ['detectLeaks', 'sometimes'],
  ])('createWorkerPool refuses %s = %o at once, naming it, and leaves nothing reserved', (key, value) => {
    const device = makeDevice();
    let error: unknown;
    try {
      createWorkerPool({
        device,
        filename: WORKER_FILE,
        arenaBytes: 64 * SUPERBLOCK,
        superblockBytes: SUPERBLOCK,
        minThreads: 1,
        maxThreads: 1,
        [key]: value,
      });
    } catch (e) {
      error = e;
    }
    expect(error).toMatchObject({
      argument: key,
      code: expect.stringMatching(/^ERR_GPUPOOL_(RANGE|ARGUMENT)$/),
    });
    expect(device.calls.releaseRange).toBe(device.calls.reserve);
    expect(() => threadPool()).toThrow(NoArenaError);
  });

  it('maxSlices below maxThreads + 1 is refused; by default there is a slot for every thread', async () => {
    const device = makeDevice();
    const options = {
      device,
      filename: WORKER_FILE,
      arenaBytes: 8 * SUPERBLOCK,
      superblockBytes: SUPERBLOCK,
    };
    expect(() => createWorkerPool({ ...options, maxThreads: 4, maxSlices: 4 })).toThrow(
      expect.objectContaining({ argument: 'maxSlices', code: 'ERR_GPUPOOL_RANGE' }),
    );
    expect(device.calls.reserve).toBe(0);
    const wp = keep(createWorkerPool({ ...options, minThreads: 1, maxThreads: 100 }));
    expect(wp.arena.sliceSlots).toBeGreaterThanOrEqual(101);
  });

  it('a superblock too large for the directory’s 32-bit granule count is refused before reserving', () => {
    const device = makeDevice();
    const error = catchError(() =>
      SharedArena.create({ device, arenaBytes: 2 ** 39, superblockBytes: 2 ** 39 }),
    );
    expect(error).toBeInstanceOf(ArgumentRangeError);
    expect(error).toMatchObject({ argument: 'superblockBytes' });
    expect(device.calls.reserve).toBe(0);
  });

  it('threadPool() outside a worker pool says why', () => {
    expect(() => threadPool()).toThrow(NoArenaError);
  });
});

describe(`main-thread slice (${DEVICE_KIND})`, () => {
  it('claims superblocks on demand, keeps bytes intact, and returns them on trim', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1 });
    const main = wp.mainPool;
    const device = main.device;
    const a = main.acquire(1 * MiB);
    const big = main.acquire(3 * SUPERBLOCK); // a run of superblocks
    device.data!.copyIn(a, new Uint8Array(1 * MiB).fill(7));
    const out = new Uint8Array(16);
    device.data!.copyOut(a, out, 1 * MiB - 16);
    expect([...out]).toEqual(new Array(16).fill(7));
    expect(wp.stats().arena.ownedSuperblocks).toBe(4);
    expect(big.bytes).toBe(3 * SUPERBLOCK);
    a.release();
    big.release();
    main.trim();
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
    wp.arena.checkDirectory();
  });

  it('a descriptor from the owner thread resolves to the same block', () => {
    const wp = pool({ minThreads: 1, maxThreads: 1 });
    const b = wp.mainPool.acquire(1000);
    const d = toDescriptor(b);
    expect(d).toMatchObject({ offset: b.offset, bytes: 1000, arenaId: wp.arena.arenaId });
    expect(fromDescriptor(structuredClone(d))).toBe(b);
    b.release();
    expect(() => fromDescriptor(d)).toThrow(/released/);
  });
});

worker(
  `workers (${DEVICE_KIND}; stress, not a benchmark: THREADS=${THREADS} ITERATIONS=${ITERATIONS})`,
  () => {
    it('random work with a third of releases by another thread: no overlap, patterns intact, all back', async () => {
      const wp = pool();
      const tasks = Array.from({ length: THREADS * 2 }, (_, i) =>
        wp.run<{ corrupt: number; exported: { d: unknown; seed: number }[] }>(
          { seed: i + 1, iterations: ITERATIONS, exportCount: Math.floor(ITERATIONS / 20), maxBytes: 96_000 },
          { name: 'churn' },
        ),
      );
      const results = await Promise.all(tasks);
      expect(results.every((r) => r.corrupt === 0)).toBe(true);
      // No two live exported blocks overlap.
      const spans = results.flatMap((r) => r.exported.map((e) => e.d as { offset: number; bytes: number }));
      spans.sort((p, q) => p.offset - q.offset);
      for (let i = 1; i < spans.length; i++)
        expect(spans[i - 1]!.offset + spans[i - 1]!.bytes).toBeLessThanOrEqual(spans[i]!.offset);
      // Hand every exported block to a thread (often another) and to the main thread.
      const all = results.flatMap((r) => r.exported);
      const half = Math.floor(all.length / 2);
      const freed = await wp.run<{ corrupt: number }>(
        { items: all.slice(0, half) },
        { name: 'releaseForeign' },
      );
      expect(freed.corrupt).toBe(0);
      for (const { d } of all.slice(half)) fromDescriptor(d as never).release();
      // Owners merge remote frees on their next call or when idle.
      await waitFor(() => allMerged(wp));
      const stats = wp.stats().arena;
      expect(stats.total.remoteFreesPushed).toBeGreaterThan(0);
      expect(stats.total.remoteFreesMerged).toBe(stats.total.remoteFreesPushed);
      wp.arena.checkDirectory();
      await wp.destroy();
      expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
    });

    it('many threads claiming at once never share a superblock', async () => {
      const wp = pool({ minThreads: THREADS + 1, maxThreads: THREADS + 1, arenaBytes: 24 * SUPERBLOCK });
      // Every task holds its blocks until all have claimed: held at the same time, never shared.
      const barrier = new SharedArrayBuffer(4);
      const results = await Promise.all(
        Array.from({ length: THREADS + 1 }, () =>
          wp.run<{ offsets: number[]; owner: number; together: boolean }>(
            { blocks: 12, bytes: SUPERBLOCK - 4096, barrier, parties: THREADS + 1 },
            { name: 'claimMany' },
          ),
        ),
      );
      expect(results.every((r) => r.together)).toBe(true);
      const seen = new Map<number, number>();
      for (const r of results)
        for (const o of r.offsets) {
          const sb = Math.floor(o / SUPERBLOCK);
          expect(seen.get(sb) ?? r.owner).toBe(r.owner);
          seen.set(sb, r.owner);
        }
      expect(seen.size).toBeGreaterThan(0);
      wp.arena.checkDirectory();
    });

    it.each(['exit', 'terminate'])(
      'a worker killed mid-run (%s): the arena gets everything back',
      async (how) => {
        const wp = pool({ minThreads: 1, maxThreads: 1 });
        const running = wp.run(
          { how: how === 'terminate' ? 'hang' : how, blocks: 3, bytes: SUPERBLOCK },
          { name: 'die' },
        );
        running.catch(() => {});
        // The worker may die (exit) and be reclaimed before this first look: either is progress.
        await waitFor(() => {
          const a = wp.stats().arena;
          return a.ownedSuperblocks >= 3 || a.reclaimedSuperblocks >= 3;
        });
        if (how === 'terminate') await wp.piscina.threads[0]!.terminate();
        await running.then(
          () => undefined,
          () => undefined,
        );
        await waitFor(() => wp.stats().arena.ownedSuperblocks === 0);
        const s = wp.stats().arena;
        expect(s.reclaimedSlices).toBe(1);
        expect(s.reclaimedSuperblocks).toBeGreaterThanOrEqual(3);
        wp.arena.checkDirectory();
      },
    );

    it('a task that throws keeps its worker; destroy() returns what the task held', async () => {
      const wp = pool({ minThreads: 1, maxThreads: 1 });
      await expect(wp.run({ how: 'throw', blocks: 2, bytes: SUPERBLOCK }, { name: 'die' })).rejects.toThrow(
        /on purpose/,
      );
      expect(wp.stats().arena.ownedSuperblocks).toBeGreaterThanOrEqual(2);
      await wp.destroy();
      expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
    });
  },
);

worker(`threads that end in the middle of an arena operation (${DEVICE_KIND})`, () => {
  it('a worker ended just after it unmapped a superblock it was giving back: the main thread adopts its slice', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1 });
    await wp.run({ bytes: 1000 }, { name: 'exitWhileGivingBack' }).catch(() => {});
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1);
    await waitFor(() => wp.stats().arena.ownedSuperblocks === 0, 5_000);
    wp.arena.checkDirectory();
    await wp.destroy();
    // Nothing left mapped (unmapped once, not twice: the adopter's unmap did not throw).
    if (DEVICE_KIND === 'host') expect((wp.arena.device as HostDevice).usedBytes).toBe(0);
  });

  it('a worker ended while it merged remote frees (the run the last one emptied going back): every merged free counts', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1, emptySuperblocksMax: 0 });
    // Blocks above the pool's block cache (64 KiB): a free empties its bytes at once.
    const descriptors = await wp.run<BlockDescriptor[]>(
      { blocks: 3, bytes: 1 * MiB, fill: 7 },
      { name: 'exportBlocks' },
    );
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    await wp.run({}, { name: 'exitAfterNextUnmap' });
    // The worker merges the three frees on its idle timer; the last one empties its superblock.
    for (const d of descriptors) fromDescriptor(d).release();
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1);
    await waitFor(() => wp.stats().arena.ownedSuperblocks === 0, 5_000);
    const dead = wp.stats().arena.slices.find((s) => s.ownerId === descriptors[0]!.owner)!;
    expect(dead).toMatchObject({ remoteFreesPushed: 3, remoteFreesMerged: 3, remoteFreesRejected: 0 });
    wp.arena.checkDirectory();
  });
  it('a worker ended between taking a remote free off its queue and applying it: its adopter applies it', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1 });
    const descriptors = await wp.run<BlockDescriptor[]>(
      { blocks: 2, bytes: 1 * MiB, fill: 7 },
      { name: 'exportBlocks' },
    );
    await wp.run({}, { name: 'exitBeforeNextExportedChange' });
    fromDescriptor(descriptors[0]!).release(); // merged on the worker's idle timer: it ends there
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1);
    fromDescriptor(descriptors[1]!).release(); // merged by the adopter
    await waitFor(() => wp.stats().arena.ownedSuperblocks === 0, 5_000).catch(() => {});
    const dead = wp.stats().arena.slices.find((s) => s.ownerId === descriptors[0]!.owner)!;
    expect(dead).toMatchObject({ remoteFreesPushed: 2, remoteFreesMerged: 2, remoteFreesRejected: 0 });
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
    wp.arena.checkDirectory();
  });
});

worker(`sharing the arena between threads (${DEVICE_KIND})`, () => {
  it('a slice out of superblocks gets back the empty ones an idle thread keeps', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1, arenaBytes: 6 * SUPERBLOCK });
    const filled = await wp.run<{ acquired: number; superblocksKept: number }>(
      { bytes: SUPERBLOCK },
      { name: 'fillAndEmpty' },
    );
    expect(filled).toEqual({ acquired: 6, superblocksKept: 2 });
    const main = wp.mainPool;
    // The worker keeps two empty superblocks (its allowance) and is idle: the first try fails…
    expect(() => main.acquire(6 * SUPERBLOCK)).toThrow(OutOfMemoryError);
    // …and the failure asks the other slices to give their empty superblocks back.
    const block = await acquireWhenGivenBack(main, 6 * SUPERBLOCK);
    expect(block.bytes).toBe(6 * SUPERBLOCK);
    await waitFor(() => workersHoldNothing(wp)); // its books count the last run a moment later
    wp.arena.checkDirectory();
  });

  it.skipIf(DEVICE_KIND !== 'host')(
    'a slice whose map the device refuses (memory, not address space, ran out) gets back the empty superblocks an idle thread keeps',
    async () => {
      const wp = pool({ minThreads: 1, maxThreads: 1, arenaBytes: 6 * SUPERBLOCK });
      const filled = await wp.run<{ acquired: number; superblocksKept: number }>(
        { bytes: SUPERBLOCK },
        { name: 'fillAndEmpty' },
      );
      expect(filled).toEqual({ acquired: 6, superblocksKept: 2 });
      // As on a GPU whose memory is smaller than the arena's address space: the device maps the
      // three superblocks asked for below only while at most one other is mapped.
      const device = wp.arena.device as HostDevice;
      device.setFaults((call) => call === 'map' && device.usedBytes > SUPERBLOCK);
      const main = wp.mainPool;
      // The worker keeps two empty superblocks mapped: the run is free in the arena, but its map fails…
      expect(() => main.acquire(3 * SUPERBLOCK)).toThrow(OutOfMemoryError);
      // …and that asks the other slices to give their empty superblocks back, as a failed claim does.
      const block = await acquireWhenGivenBack(main, 3 * SUPERBLOCK);
      expect(block.bytes).toBe(3 * SUPERBLOCK);
      // The worker may still be giving back its second empty superblock: checked once it is done.
      await waitFor(() => workersHoldNothing(wp));
      wp.arena.checkDirectory();
    },
  );

  it('destroy() called twice: both calls resolve once everything is back', async () => {
    const wp = pool({ minThreads: 1, maxThreads: 1 });
    wp.mainPool.acquire(SUPERBLOCK);
    const first = wp.destroy();
    await wp.destroy();
    expect(wp.arena.device.calls.releaseRange).toBe(1);
    expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
    await first;
  });
});

/** Retries `bytes` until the idle slices have given their empty superblocks back. */
async function acquireWhenGivenBack(pool: { acquire(bytes: number): Block }, bytes: number): Promise<Block> {
  let block: Block | undefined;
  await waitFor(() => {
    try {
      block = pool.acquire(bytes);
      return true;
    } catch {
      return false;
    }
  });
  return block!;
}

/** The workers' slices hold no superblock (they gave back every empty one). */
function workersHoldNothing(wp: WorkerPool): boolean {
  return wp.stats().arena.slices.every((s) => s.threadId === 0 || s.superblocks === 0);
}

function allMerged(wp: WorkerPool): boolean {
  const t = wp.stats().arena.total;
  return t.remoteFreesMerged === t.remoteFreesPushed;
}
