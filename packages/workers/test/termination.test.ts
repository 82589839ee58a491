/**
 * Threads terminated at a chosen point of an arena slow path: a worker is armed to park at a named
 * step (SharedArena.stepHook: in the middle of claiming superblocks, of giving a run back, of
 * toDescriptor, of releasing an exported block in its own thread, of pushing a remote free) and
 * the test terminates it there, as Piscina's terminate() of a busy or idle worker can.
 * What must hold once the main thread adopted it: every superblock is free, or owned by a live
 * slice, or kept by an orphaned one for a block still exported; the slices' statistics agree with
 * the directory (checkDirectory); no live block's bytes change (its run is never handed to another
 * thread); every remote free arrives once (pushed = merged + rejected); and once the exported
 * blocks come back, the whole arena does.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Device, DeviceError } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import {
  type ArenaStep,
  type BlockDescriptor,
  fromDescriptor,
  NoArenaError,
  type SlicePool,
  threadPool,
  toDescriptor,
  type WorkerPool,
} from '../dist/index.js';
import {
  DEVICE_KIND,
  describeWithWorkers,
  expectBytesKept,
  SUPERBLOCK,
  waitFor,
  workerPools,
} from './test-device.js';

const { pool } = workerPools({ arenaBytes: 8 * SUPERBLOCK });

/** Arms the (one) worker to park at `step`, runs task `name` on it, and resolves once parked. */
async function parkAt(
  wp: WorkerPool,
  step: ArenaStep,
  name: string,
  task: object,
): Promise<{ flag: Int32Array; running: Promise<unknown> }> {
  const flag = new Int32Array(new SharedArrayBuffer(8));
  await wp.run({ step, flag: flag.buffer }, { name: 'parkAt' });
  const running = wp.run(task, { name });
  running.catch(() => {});
  await waitFor(() => Atomics.load(flag, 0) !== 0, 5_000);
  return { flag, running };
}

/** The worker whose threadId is in flag[i]. */
function threadIn(wp: WorkerPool, flag: Int32Array, i: number) {
  return wp.piscina.threads.find((w) => w.threadId === Atomics.load(flag, i))!;
}

/** Terminates the worker parked at `step` in task `name`, and waits until the main thread adopted it. */
async function terminateAt(wp: WorkerPool, step: ArenaStep, name: string, task: object): Promise<void> {
  const adopted = wp.stats().arena.reclaimedSlices;
  const { flag, running } = await parkAt(wp, step, name, task);
  await threadIn(wp, flag, 0).terminate();
  await running.then(
    () => undefined,
    () => undefined,
  );
  await waitFor(() => wp.stats().arena.reclaimedSlices > adopted, 5_000);
}

/** After adoption: the directory agrees with the slices' books, and every queued free was taken once. */
function expectSettled(wp: WorkerPool): void {
  wp.reclaim();
  wp.arena.checkDirectory({ adopted: true });
  for (const s of wp.stats().arena.slices)
    expect(s.remoteFreesPushed, `slice ${s.slot}`).toBe(s.remoteFreesMerged + s.remoteFreesRejected);
}

/** Releases `d` here; then the whole arena must come back. */
function expectAllBackAfter(wp: WorkerPool, d: BlockDescriptor): void {
  fromDescriptor(d).release();
  wp.reclaim();
  expect(wp.stats().arena.ownedSuperblocks).toBe(0);
  expectSettled(wp);
}

/**
 * The worker exports `blocks` blocks (filled with 7) and is then terminated at `step` in task
 * `name`. Once it is adopted: settled, one superblock still owned (the exported blocks'), then
 * `adopted(d)` with the first block's descriptor, the first block's bytes kept, and the whole arena
 * back once it is released.
 */
async function expectOnlyExportedKept(
  wp: WorkerPool,
  step: ArenaStep,
  name: string,
  task: object,
  { blocks = 1, adopted }: { blocks?: number; adopted?: (d: BlockDescriptor) => void } = {},
): Promise<void> {
  const [d] = await wp.run<BlockDescriptor[]>({ blocks, bytes: 1000, fill: 7 }, { name: 'exportBlocks' });
  await terminateAt(wp, step, name, task);
  expectSettled(wp);
  expect(wp.stats().arena.ownedSuperblocks).toBe(1);
  adopted?.(d!);
  expectBytesKept(wp, d!, 7);
  wp.mainPool.trim();
  expectAllBackAfter(wp, d!);
}

/**
 * Waits until `main` holds `live` blocks, merging its remote frees (after `wp.reclaim()` each time,
 * with `reclaim`); then the two frees pushed to it were both merged, none rejected, and all is settled.
 */
async function expectTwoFreesMerged(
  wp: WorkerPool,
  main: SlicePool,
  live: number,
  { reclaim }: { reclaim: boolean },
): Promise<void> {
  await waitFor(() => {
    if (reclaim) wp.reclaim();
    main.mergeRemoteFrees();
    return main.stats().liveBlocks === live;
  }, 3_000);
  expect(main.sliceStats()).toMatchObject({
    remoteFreesPushed: 2,
    remoteFreesMerged: 2,
    remoteFreesRejected: 0,
  });
  expectSettled(wp);
}

/** Descriptors of `n` blocks of 4096 bytes acquired from `main`. */
function descriptorsFrom(main: SlicePool, n: number): BlockDescriptor[] {
  return Array.from({ length: n }, () => toDescriptor(main.acquire(4096)));
}

/**
 * Runs task `first` on one worker and waits until it parked (flag[0]), then task `second` on the
 * other and waits until that one parked (flag[1]). Returns both runs (the first's failure handled).
 */
async function parkBoth(
  wp: WorkerPool,
  flag: Int32Array,
  first: { task: object; name: string },
  second: { task: object; name: string },
): Promise<[Promise<unknown>, Promise<unknown>]> {
  const one = wp.run(first.task, { name: first.name });
  one.catch(() => {});
  await waitFor(() => Atomics.load(flag, 0) !== 0, 5_000);
  const other = wp.run(second.task, { name: second.name });
  await waitFor(() => Atomics.load(flag, 1) !== 0, 5_000);
  return [one, other];
}

/**
 * Arms both workers with the fixture's armPushPair: the first to reach step `first` of a push parks
 * there (its threadId in flag[0]), the other parks at `second` (its threadId in flag[1]).
 */
async function armPushPair(
  wp: WorkerPool,
  flag: Int32Array,
  first: ArenaStep,
  second: ArenaStep,
): Promise<void> {
  await Promise.all([0, 1].map(() => wp.run({ flag: flag.buffer, first, second }, { name: 'armPushPair' })));
}

const worker = describeWithWorkers();

worker(`a worker terminated in the middle of an arena slow path (${DEVICE_KIND})`, () => {
  it.each(['claim:won', 'claim:mapped'] as const)(
    'claiming a run (%s): the run goes back, the exported block beside it stays',
    async (step) => {
      const wp = pool();
      await expectOnlyExportedKept(
        wp,
        step,
        'acquireHeld',
        { bytes: 2 * SUPERBLOCK },
        {
          adopted: (d) => {
            // The undone claim is not in the peak either.
            const dead = wp.stats().arena.slices.find((s) => s.ownerId === d.owner)!;
            expect(dead).toMatchObject({ superblocks: 1, superblocksPeak: 1, claims: 1 });
          },
        },
      );
    },
  );

  it.each(['return:detached', 'return:freed'] as const)(
    'giving a run back (%s): the run goes back once, the exported block beside it stays',
    async (step) => {
      const wp = pool({ emptySuperblocksMax: 0 });
      await expectOnlyExportedKept(wp, step, 'acquireRelease', { bytes: 2 * SUPERBLOCK });
    },
  );

  it('toDescriptor (between the run’s checksum and its count): the block never went out, its run goes back with the other one', async () => {
    const wp = pool();
    await expectOnlyExportedKept(wp, 'export:sum', 'exportBlocks', { blocks: 1, bytes: 1000, fill: 9 });
  });

  it('releasing an exported block in its own thread (between checksum and count): the release counts, once', async () => {
    const wp = pool();
    // The second block is the one released in its own thread; the first stays out.
    await expectOnlyExportedKept(wp, 'unexport:sum', 'releaseLastExported', {}, { blocks: 2 });
  });

  // 'push:claimed' is just after the compareExchange that wins the position, which is also what
  // counts the free (remoteFreesPushed is the tail's advance): no step between pushing and counting.
  it.each(['push:checked', 'push:claimed', 'push:won', 'push:published'] as const)(
    'pushing a remote free (%s): the queue moves on, every free arrives once, the counts add up',
    async (step) => {
      const wp = pool();
      const main = wp.mainPool as SlicePool;
      const [d0, d1] = descriptorsFrom(main, 2);
      await terminateAt(wp, step, 'releaseDescriptors', { descriptors: [d0] });
      // The replacement worker's free goes onto the same queue, behind the terminated one's.
      expect(await wp.run({ descriptors: [d1] }, { name: 'releaseDescriptors' })).toEqual(['ok']);
      await expectTwoFreesMerged(wp, main, 0, { reclaim: false });
    },
  );

  it('a slice closed by its own thread while another thread frees one of its exported blocks: the free is never dropped', async () => {
    const wp = pool();
    const [d] = await wp.run<BlockDescriptor[]>(
      { blocks: 1, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    const flag = new Int32Array(new SharedArrayBuffer(8));
    await wp.run({ step: 'close:closing', flag: flag.buffer }, { name: 'parkAt' });
    // Its pool is destroyed: it parks if it marks its slice closing (it must not: d is out).
    const closing = wp.run({}, { name: 'destroyPool' });
    let closed = false;
    closing.then(() => {
      closed = true;
    });
    await waitFor(() => closed || Atomics.load(flag, 0) !== 0, 5_000);
    fromDescriptor(d!).release();
    Atomics.store(flag, 1, 1);
    Atomics.notify(flag, 1);
    await closing;
    expect(wp.stats().arena.droppedRemoteFrees).toBe(0);
    await waitFor(() => {
      wp.reclaim();
      return wp.stats().arena.ownedSuperblocks === 0;
    }, 3_000);
    expectSettled(wp);
  });

  it('two producers ended on one queue position (one before its compareExchange, the other just after winning it): a tombstone fills it, both frees arrive once', async () => {
    const wp = pool({ minThreads: 2, maxThreads: 2 });
    const main = wp.mainPool as SlicePool;
    const [d0, d1] = descriptorsFrom(main, 3); // the third stays live
    // [first's threadId, second's threadId, arrivals, wake, role]
    const flag = new Int32Array(new SharedArrayBuffer(20));
    await armPushPair(wp, flag, 'push:trying', 'push:claimed');
    const [, other] = await parkBoth(
      wp,
      flag,
      { task: { descriptors: [d0] }, name: 'releaseDescriptors' },
      { task: { descriptors: [d1] }, name: 'releaseDescriptors' },
    );
    other.catch(() => {});
    await threadIn(wp, flag, 0).terminate();
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1, 5_000);
    // The other one, alive, holds the position: nothing is published or delivered for it yet.
    wp.reclaim();
    main.mergeRemoteFrees();
    expect(main.stats().liveBlocks).toBe(3);
    await threadIn(wp, flag, 1).terminate();
    await expectTwoFreesMerged(wp, main, 1, { reclaim: true });
  });

  it('a producer ended before trying for a position that a live one wins and publishes while the adopter looks at it: no tombstone over the live free', async () => {
    const wp = pool({ minThreads: 2, maxThreads: 2 });
    const main = wp.mainPool as SlicePool;
    const [d0, d1] = descriptorsFrom(main, 3); // the third stays live
    // [first's threadId, second's threadId, arrivals, wake, role, -]
    const flag = new Int32Array(new SharedArrayBuffer(24));
    // The first parks after its owner check (its record names the tail, which it never tries for);
    // the other after it won that position.
    await armPushPair(wp, flag, 'push:checked', 'push:won');
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const [, second] = await parkBoth(
      wp,
      flag,
      { task: { descriptors: [d0] }, name: 'releaseDescriptors' },
      { task: { descriptors: [d1], signal: signal.buffer }, name: 'releaseAndSignal' },
    );
    // The adopter of the first finds its position taken and unpublished; right then the second
    // (alive, the winner) publishes it and its record goes back to idle.
    let hooked = false;
    wp.arena.stepHook = (step) => {
      if (step !== 'resolve:pending') return;
      wp.arena.stepHook = null;
      hooked = true;
      Atomics.store(flag, 3, 1);
      Atomics.notify(flag, 3);
      Atomics.wait(signal, 0, 0, 5_000);
    };
    await threadIn(wp, flag, 0).terminate();
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1, 5_000);
    expect(hooked).toBe(true);
    expect(await second).toEqual(['ok']);
    await expectTwoFreesMerged(wp, main, 1, { reclaim: true });
  });

  it('opening a slice (its slot taken, not yet filled in): the slot is free again for the next thread', async () => {
    const wp = pool({ maxSlices: 2 }); // the main thread's slot and one worker's
    (wp.mainPool as SlicePool).acquire(4096).release();
    const flag = new Int32Array(new SharedArrayBuffer(8));
    await wp.run({ step: 'open:taken', flag: flag.buffer }, { name: 'parkAt' });
    await wp.run({}, { name: 'destroyPool' }); // its next threadPool() opens a slice anew
    const running = wp.run({ bytes: 4096 }, { name: 'acquireRelease' });
    running.catch(() => {});
    await waitFor(() => Atomics.load(flag, 0) !== 0, 5_000);
    await threadIn(wp, flag, 0).terminate();
    await running.then(
      () => undefined,
      () => undefined,
    );
    // The worker Piscina starts in its place gets that slot.
    await wp.run({ bytes: 4096 }, { name: 'acquireRelease' });
    expectSettled(wp);
  });

  it('a stale free held up after its owner check, pushed once the owner’s slice closed: never counted to the slot’s next owner', async () => {
    const wp = pool();
    const old = wp.mainPool as SlicePool;
    const block = old.acquire(4096);
    const d = toDescriptor(block);
    block.release(); // in its own thread: d is stale
    const { flag, running } = await parkAt(wp, 'push:checked', 'releaseDescriptors', { descriptors: [d] });
    old.destroy(); // the slice holds nothing now
    wp.reclaim();
    Atomics.store(flag, 1, 1); // the worker goes on: it pushes the stale free
    Atomics.notify(flag, 1);
    expect(await running).toEqual(['ok']);
    const fresh = wp.mainPool as SlicePool; // may take the closed slice's slot
    await waitFor(() => {
      wp.reclaim();
      fresh.mergeRemoteFrees();
      return wp
        .stats()
        .arena.slices.every((s) => s.remoteFreesPushed === s.remoteFreesMerged + s.remoteFreesRejected);
    }, 3_000);
    expect(fresh.sliceStats()).toMatchObject({
      remoteFreesPushed: 0,
      remoteFreesMerged: 0,
      remoteFreesRejected: 0,
    });
    expectSettled(wp);
  });
});

/**
 * Makes the device refuse its next `n` unmap calls (core's fault plans cover only the calls that
 * obtain memory: reserve, map, allocateSegment).
 */
function refuseUnmaps(device: Device, n: number): void {
  const unmap = device.unmap;
  let left = n;
  device.unmap = function (this: Device, ...args: Parameters<Device['unmap']>) {
    if (left > 0) {
      left--;
      throw new DeviceError('unmap', 'refused (test)');
    }
    return unmap.apply(this, args);
  };
}

describe.skipIf(DEVICE_KIND !== 'host')('a refused unmap', () => {
  it('while an ended thread’s claim is undone: its adoption does not throw, and a later pass gives the run back', async () => {
    const wp = pool();
    const { flag, running } = await parkAt(wp, 'claim:mapped', 'acquireHeld', { bytes: 2 * SUPERBLOCK });
    const adopted = wp.stats().arena.reclaimedSlices;
    refuseUnmaps(wp.arena.device, 1);
    // The worker's exit handler adopts its slice: undoing the claim unmaps the run, refused.
    await threadIn(wp, flag, 0).terminate();
    await running.then(
      () => undefined,
      () => undefined,
    );
    await waitFor(() => wp.stats().arena.reclaimedSlices > adopted, 5_000);
    expect(wp.stats().arena.ownedSuperblocks).toBeGreaterThan(0); // the run stays, mapped
    expect(wp.stats().arena.slices.filter((s) => s.state === 'orphaned')).toHaveLength(1);
    wp.reclaim(); // the next pass: the unmap goes through
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
    expectSettled(wp);
  });

  it('while the worker pool is destroyed: destroy() rejects with it, and destroy() again gives everything back', async () => {
    const wp = pool();
    const main = wp.mainPool as SlicePool;
    // An exported block keeps its run owned past the main slice's destroy: the arena gives it back.
    toDescriptor(main.acquire(4096));
    const device = wp.arena.device;
    refuseUnmaps(device, 1);
    const first = wp.destroy();
    expect(wp.destroy()).toBe(first); // a call while the first runs waits for it
    await expect(first).rejects.toThrow(DeviceError);
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    expect(device.calls.releaseRange).toBe(0);
    await wp.destroy();
    expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
    expect(device.calls.releaseRange).toBe(1);
    expect(device.memInfo().freeBytes).toBe(device.totalBytes);
    await wp.destroy(); // settled: resolves at once
    expect(device.calls.releaseRange).toBe(1);
  });

  it('while the worker pool is destroyed: threadPool() in the main thread opens no slice before destroy() is retried', async () => {
    const wp = pool();
    toDescriptor((wp.mainPool as SlicePool).acquire(4096));
    refuseUnmaps(wp.arena.device, 1);
    await expect(wp.destroy()).rejects.toThrow(DeviceError);
    // As after a destroy() that completed: no slice of an arena that is going away.
    expect(() => threadPool()).toThrow(NoArenaError);
    await wp.destroy();
    expect(wp.arena.stats().freeSuperblocks).toBe(wp.arena.superblockCount);
    expect(wp.arena.device.memInfo().freeBytes).toBe(wp.arena.device.totalBytes);
  });

  it('of a run a slice gives back: the run stays owned and usable, and goes back later', () => {
    const wp = pool({ emptySuperblocksMax: 0 });
    const main = wp.mainPool as SlicePool;
    main.acquire(4096).release();
    const claims = main.sliceStats().claims;
    refuseUnmaps(wp.arena.device, 2);
    // The release is finished here: the run empties and is given back, refused; trim() tries again, refused.
    expect(main.trim()).toBe(0);
    expect(main.sliceStats()).toMatchObject({ superblocks: 1, returns: 0 });
    wp.arena.checkDirectory();
    // Still the slice's: a block fits in it without a claim, and it goes back once empty again.
    main.acquire(4096).release();
    expect(main.sliceStats().claims).toBe(claims);
    main.trim();
    expect(main.sliceStats()).toMatchObject({ superblocks: 0, claims, returns: 1 });
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
    wp.arena.checkDirectory();
  });

  it('of an orphaned slice’s run: adoption does not throw, and a later one returns it', () => {
    const wp = pool();
    const main = wp.mainPool as SlicePool;
    const d = toDescriptor(main.acquire(4096));
    main.destroy(); // the run stays owned (d is out): the slice is orphaned
    fromDescriptor(d).release();
    refuseUnmaps(wp.arena.device, 1);
    expect(wp.reclaim()).toBe(0);
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    expect(wp.reclaim()).toBe(1);
    expectSettled(wp);
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
  });

  it('while a slice pool is destroyed: its other runs go back, the refused one through the creator', () => {
    const wp = pool();
    const main = wp.mainPool as SlicePool;
    main.acquire(SUPERBLOCK);
    main.acquire(SUPERBLOCK);
    expect(main.sliceStats().superblocks).toBe(2);
    refuseUnmaps(wp.arena.device, 1);
    main.destroy();
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    expect(wp.reclaim()).toBe(1);
    expectSettled(wp);
    expect(wp.stats().arena.ownedSuperblocks).toBe(0);
  });
});

describe.skipIf(DEVICE_KIND !== 'host')('the main thread’s retry of deferred frees', () => {
  it('does not keep the process alive: a process with frees still deferred exits', () => {
    const script = fileURLToPath(new URL('./fixtures/deferred-exit.mjs', import.meta.url));
    const child = spawnSync(process.execPath, [script], { timeout: 8_000, encoding: 'utf8' });
    expect(child.stdout).toContain('deferred: 4');
    expect({ status: child.status, signal: child.signal, stderr: child.stderr }).toEqual({
      status: 0,
      signal: null,
      stderr: '',
    });
  });
});
