/**
 * The device the suite runs on: HostDevice by default (CI); GPUPOOL_TEST_DEVICE=cuda uses
 * CudaDevice from the workspace's built @gpupool/native (the GPU check script sets it).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { type Device, HostDevice, MiB } from '@gpupool/core';
import { afterEach, describe, expect } from 'vitest';
import { type BlockDescriptor, createWorkerPool, fromDescriptor, type WorkerPool } from '../dist/index.js';

export const DEVICE_KIND = process.env.GPUPOOL_TEST_DEVICE === 'cuda' ? 'cuda' : 'host';
export const WORKER_FILE = fileURLToPath(new URL('./fixtures/slice-worker.mjs', import.meta.url));
if (!existsSync(new URL('../dist/index.js', import.meta.url))) {
  throw new Error('@gpupool/workers tests run against dist/: run `npx tsup` in packages/workers first');
}

/** The superblock size of the suites over the fixture (workerPools' default). */
export const SUPERBLOCK = 4 * MiB;

export type WorkerPoolOptions = Parameters<typeof createWorkerPool>[0];

export function makeDevice(capacityBytes = 256 * MiB): Device {
  if (DEVICE_KIND === 'host') return new HostDevice({ capacityBytes });
  const require = createRequire(import.meta.url);
  const native = require('../../native/dist/index.cjs') as {
    CudaDevice: new (options: { pageBytes: number }) => Device;
  };
  // The driver's 2 MiB granularity, not the 16 MiB default: the suite's superblocks are 4 MiB.
  return new native.CudaDevice({ pageBytes: 2 * MiB });
}

/** Whether worker threads can map pages on this device kind (CudaDevice needs adoptRange). */
export function workersCanMap(device: Device): boolean {
  return device.kind === 'host' || typeof (device as { adoptRange?: unknown }).adoptRange === 'function';
}

/** describe, skipped where worker threads cannot map pages on this device kind. */
export function describeWithWorkers(): ReturnType<typeof describe.skipIf> {
  return describe.skipIf(!workersCanMap(makeDevice(16 * MiB)));
}

/**
 * Worker pools for the calling test file, each destroyed after the test that opened it (this
 * registers the file's afterEach). `pool(extra)` opens one over the fixture (slice-worker.mjs) on a
 * fresh makeDevice(), with SUPERBLOCK superblocks, one thread, a 60 s idle timeout, then `defaults`,
 * then `extra`; `keep(wp)` has a pool the test opened itself destroyed the same way.
 */
export function workerPools(defaults: Partial<WorkerPoolOptions> & Pick<WorkerPoolOptions, 'arenaBytes'>): {
  pool: (extra?: Partial<WorkerPoolOptions>) => WorkerPool;
  keep: (wp: WorkerPool) => WorkerPool;
} {
  let open: WorkerPool[] = [];
  afterEach(async () => {
    const pools = open;
    open = [];
    for (const wp of pools) await wp.destroy();
  });
  const keep = (wp: WorkerPool): WorkerPool => {
    open.push(wp);
    return wp;
  };
  const pool = (extra: Partial<WorkerPoolOptions> = {}): WorkerPool =>
    keep(
      createWorkerPool({
        device: makeDevice(),
        filename: WORKER_FILE,
        superblockBytes: SUPERBLOCK,
        minThreads: 1,
        maxThreads: 1,
        idleTimeout: 60_000,
        ...defaults,
        ...extra,
      }),
    );
  return { pool, keep };
}

/**
 * `d`'s superblock is still its owner's; then fills every SUPERBLOCK the main thread can get, checks
 * that `d`'s bytes are still `byte`, and releases what it took (the main slice keeps the runs).
 */
export function expectBytesKept(wp: WorkerPool, d: BlockDescriptor, byte: number): void {
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
}

/** The error `f` throws; fails the test when it throws none. */
export function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

/** Polls `condition` until it holds; throws after `timeoutMs`. */
export async function waitFor(condition: () => boolean, timeoutMs = 20_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
