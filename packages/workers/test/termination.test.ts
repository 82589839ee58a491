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
import { type Device, DeviceError, MiB } from '@gpupool/core';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type ArenaStep,
  type BlockDescriptor,
  createWorkerPool,
  fromDescriptor,
  type SlicePool,
  toDescriptor,
  type WorkerPool,
} from '../dist/index.js';
import { DEVICE_KIND, makeDevice, WORKER_FILE, waitFor, workersCanMap } from './test-device.js';

const SUPERBLOCK = 4 * MiB;

let open: WorkerPool | null = null;
afterEach(async () => {
  await open?.destroy();
  open = null;
});

function pool(extra: Partial<Parameters<typeof createWorkerPool>[0]> = {}): WorkerPool {
  open = createWorkerPool({
    device: makeDevice(),
    filename: WORKER_FILE,
    arenaBytes: 8 * SUPERBLOCK,
    superblockBytes: SUPERBLOCK,
    minThreads: 1,
    maxThreads: 1,
    idleTimeout: 60_000,
    ...extra,
  });
  return open;
}

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

/** Terminates the worker parked at `step` in task `name`, and waits until the main thread adopted it. */
async function terminateAt(wp: WorkerPool, step: ArenaStep, name: string, task: object): Promise<void> {
  const adopted = wp.stats().arena.reclaimedSlices;
  const { flag, running } = await parkAt(wp, step, name, task);
  const worker = wp.piscina.threads.find((w) => w.threadId === Atomics.load(flag, 0));
  await worker!.terminate();
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

/** Fills every superblock the main thread can get, then checks that `d`'s bytes are still `byte`. */
function expectBytesKept(wp: WorkerPool, d: BlockDescriptor, byte: number): void {
  expect(wp.arena.ownerOf(Math.floor(d.offset / SUPERBLOCK))).toBe(d.owner);
  const main = wp.mainPool;
  const taken = [];
  for (;;) {
    try {
      taken.push(main.acquire(SUPERBLOCK));
    } catch {
      break;
    }
  }
  for (const b of taken) main.device.data!.fill(b, byte + 1);
  const got = new Uint8Array(d.bytes);
  main.device.data!.copyOut(fromDescriptor(d), got);
  expect(got.every((x) => x === byte)).toBe(true);
  for (const b of taken) b.release();
  main.trim();
}

/** Releases `d` here; then the whole arena must come back. */
function expectAllBackAfter(wp: WorkerPool, d: BlockDescriptor): void {
  fromDescriptor(d).release();
  wp.reclaim();
  expect(wp.stats().arena.ownedSuperblocks).toBe(0);
  expectSettled(wp);
}

const worker = describe.skipIf(!workersCanMap(makeDevice(16 * MiB)));

worker(`a worker terminated in the middle of an arena slow path (${DEVICE_KIND})`, () => {
  it.each(['claim:won', 'claim:mapped'] as const)(
    'claiming a run (%s): the run goes back, the exported block beside it stays',
    async (step) => {
      const wp = pool();
      const [d] = await wp.run<BlockDescriptor[]>(
        { blocks: 1, bytes: 1000, fill: 7 },
        { name: 'exportBlocks' },
      );
      await terminateAt(wp, step, 'acquireHeld', { bytes: 2 * SUPERBLOCK });
      expectSettled(wp);
      expect(wp.stats().arena.ownedSuperblocks).toBe(1);
      // The undone claim is not in the peak either.
      const dead = wp.stats().arena.slices.find((s) => s.ownerId === d!.owner)!;
      expect(dead).toMatchObject({ superblocks: 1, superblocksPeak: 1, claims: 1 });
      expectBytesKept(wp, d!, 7);
      expectAllBackAfter(wp, d!);
    },
  );

  it.each(['return:detached', 'return:freed'] as const)(
    'giving a run back (%s): the run goes back once, the exported block beside it stays',
    async (step) => {
      const wp = pool({ emptySuperblocksMax: 0 });
      const [d] = await wp.run<BlockDescriptor[]>(
        { blocks: 1, bytes: 1000, fill: 7 },
        { name: 'exportBlocks' },
      );
      await terminateAt(wp, step, 'acquireRelease', { bytes: 2 * SUPERBLOCK });
      expectSettled(wp);
      expect(wp.stats().arena.ownedSuperblocks).toBe(1);
      expectBytesKept(wp, d!, 7);
      expectAllBackAfter(wp, d!);
    },
  );

  it('toDescriptor (between the run’s checksum and its count): the block never went out, its run goes back with the other one', async () => {
    const wp = pool();
    const [d] = await wp.run<BlockDescriptor[]>(
      { blocks: 1, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    await terminateAt(wp, 'export:sum', 'exportBlocks', { blocks: 1, bytes: 1000, fill: 9 });
    expectSettled(wp);
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    expectBytesKept(wp, d!, 7);
    expectAllBackAfter(wp, d!);
  });

  it('releasing an exported block in its own thread (between checksum and count): the release counts, once', async () => {
    const wp = pool();
    const [d0] = await wp.run<BlockDescriptor[]>(
      { blocks: 2, bytes: 1000, fill: 7 },
      { name: 'exportBlocks' },
    );
    await terminateAt(wp, 'unexport:sum', 'releaseLastExported', {});
    expectSettled(wp);
    expect(wp.stats().arena.ownedSuperblocks).toBe(1);
    expectBytesKept(wp, d0!, 7);
    expectAllBackAfter(wp, d0!);
  });

  // 'push:claimed' is just after the compareExchange that wins the position, which is also what
  // counts the free (remoteFreesPushed is the tail's advance): no step between pushing and counting.
  it.each(['push:checked', 'push:claimed', 'push:won', 'push:published'] as const)(
    'pushing a remote free (%s): the queue moves on, every free arrives once, the counts add up',
    async (step) => {
      const wp = pool();
      const main = wp.mainPool as SlicePool;
      const [d0, d1] = [main.acquire(4096), main.acquire(4096)].map((b) => toDescriptor(b));
      await terminateAt(wp, step, 'releaseDescriptors', { descriptors: [d0] });
      // The replacement worker's free goes onto the same queue, behind the terminated one's.
      expect(await wp.run({ descriptors: [d1] }, { name: 'releaseDescriptors' })).toEqual(['ok']);
      await waitFor(() => {
        main.mergeRemoteFrees();
        return main.stats().liveBlocks === 0;
      }, 3_000);
      expect(main.sliceStats()).toMatchObject({
        remoteFreesPushed: 2,
        remoteFreesMerged: 2,
        remoteFreesRejected: 0,
      });
      expectSettled(wp);
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
    const [d0, d1] = [main.acquire(4096), main.acquire(4096), main.acquire(4096)].map((b) => toDescriptor(b));
    // [first's threadId, second's threadId, arrivals, wake, role]
    const flag = new Int32Array(new SharedArrayBuffer(20));
    await Promise.all([0, 1].map(() => wp.run({ flag: flag.buffer }, { name: 'armPushRace' })));
    const tasks = [wp.run({ descriptors: [d0] }, { name: 'releaseDescriptors' })];
    await waitFor(() => Atomics.load(flag, 0) !== 0, 5_000);
    tasks.push(wp.run({ descriptors: [d1] }, { name: 'releaseDescriptors' })); // the other worker
    await waitFor(() => Atomics.load(flag, 1) !== 0, 5_000);
    for (const t of tasks) t.catch(() => {});
    const thread = (i: number) => wp.piscina.threads.find((w) => w.threadId === Atomics.load(flag, i))!;
    await thread(0).terminate();
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1, 5_000);
    // The other one, alive, holds the position: nothing is published or delivered for it yet.
    wp.reclaim();
    main.mergeRemoteFrees();
    expect(main.stats().liveBlocks).toBe(3);
    await thread(1).terminate();
    await waitFor(() => {
      wp.reclaim();
      main.mergeRemoteFrees();
      return main.stats().liveBlocks === 1;
    }, 3_000);
    expect(main.sliceStats()).toMatchObject({
      remoteFreesPushed: 2,
      remoteFreesMerged: 2,
      remoteFreesRejected: 0,
    });
    expectSettled(wp);
  });

  it('a producer ended before trying for a position that a live one wins and publishes while the adopter looks at it: no tombstone over the live free', async () => {
    const wp = pool({ minThreads: 2, maxThreads: 2 });
    const main = wp.mainPool as SlicePool;
    const [d0, d1] = [main.acquire(4096), main.acquire(4096), main.acquire(4096)].map((b) => toDescriptor(b));
    // [first's threadId, second's threadId, arrivals, wake, role, -]
    const flag = new Int32Array(new SharedArrayBuffer(24));
    await Promise.all(
      [0, 1].map(() => wp.run({ flag: flag.buffer, step: 'push:won' }, { name: 'armPushOvertake' })),
    );
    const first = wp.run({ descriptors: [d0] }, { name: 'releaseDescriptors' });
    first.catch(() => {});
    await waitFor(() => Atomics.load(flag, 0) !== 0, 5_000);
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const second = wp.run({ descriptors: [d1], signal: signal.buffer }, { name: 'releaseAndSignal' });
    await waitFor(() => Atomics.load(flag, 1) !== 0, 5_000);
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
    await wp.piscina.threads.find((w) => w.threadId === Atomics.load(flag, 0))!.terminate();
    await waitFor(() => wp.stats().arena.reclaimedSlices === 1, 5_000);
    expect(hooked).toBe(true);
    expect(await second).toEqual(['ok']);
    await waitFor(() => {
      wp.reclaim();
      main.mergeRemoteFrees();
      return main.stats().liveBlocks === 1;
    }, 3_000);
    expect(main.sliceStats()).toMatchObject({
      remoteFreesPushed: 2,
      remoteFreesMerged: 2,
      remoteFreesRejected: 0,
    });
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
