// destroy() and workers still loading their task module. Piscina loads an ES task module with
// require(), and Node 20 aborts the whole process when a worker is terminated inside that; so
// destroy() lets every worker finish loading before it ends them.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { MiB } from '@gpupool/core';
import { describe, expect, it } from 'vitest';
import { createWorkerPool } from '../dist/index.js';
import { makeDevice, waitFor } from './test-device.js';

const SLOW_FILE = new URL('./fixtures/slow-load-worker.mjs', import.meta.url).href;

function slowPool(loadMs: number, minThreads: number, loadedCells: SharedArrayBuffer) {
  return createWorkerPool({
    device: makeDevice(),
    filename: SLOW_FILE,
    arenaBytes: 16 * MiB,
    superblockBytes: 4 * MiB,
    minThreads,
    maxThreads: Math.max(1, minThreads),
    workerData: { loadMs, loadedCells },
  });
}

describe('destroy() while workers load their task module', () => {
  it('right after creation: every worker finishes loading before it is ended', async () => {
    const cells = new SharedArrayBuffer(4);
    const wp = slowPool(300, 2, cells);
    await wp.destroy();
    expect(Atomics.load(new Int32Array(cells), 0)).toBe(2);
  });

  it('a worker started for a task, still loading: it finishes loading before it is ended', async () => {
    const cells = new SharedArrayBuffer(4);
    const wp = slowPool(300, 0, cells); // no worker until the first task
    const task = wp.run(7).catch((error: unknown) => error);
    await waitFor(() => wp.piscina.threads.length === 1);
    await wp.destroy();
    expect(Atomics.load(new Int32Array(cells), 0)).toBe(1);
    await task; // settled either way: ran, or refused because the pool was destroyed
  });

  it('workers that loaded long ago: destroy() ends them (it waits for nothing)', async () => {
    const cells = new SharedArrayBuffer(4);
    const wp = slowPool(20, 1, cells);
    expect(await wp.run(7)).toBe(7);
    await wp.destroy(); // a wait for a ready message already sent would time the test out
    expect(Atomics.load(new Int32Array(cells), 0)).toBe(1);
    expect(wp.piscina.threads.length).toBe(0);
  });

  it('a worker Piscina starts while destroy() waits (in place of one whose load failed): it finishes loading too', () => {
    // In a child process: on Node 20, a worker ended inside require() can abort the whole process.
    const script = fileURLToPath(new URL('./fixtures/destroy-replaced.mjs', import.meta.url));
    const child = spawnSync(process.execPath, [script], { timeout: 15_000, encoding: 'utf8' });
    expect({ status: child.status, signal: child.signal, stdout: child.stdout.trim() }).toEqual({
      status: 0,
      signal: null,
      stdout: 'loaded: 1',
    });
  });
});
