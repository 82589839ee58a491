/**
 * The device the suite runs on: HostDevice by default (CI); GPUPOOL_TEST_DEVICE=cuda uses
 * CudaDevice from the workspace's built @gpupool/native (the GPU check script sets it).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { type Device, HostDevice, MiB } from '@gpupool/core';

export const DEVICE_KIND = process.env.GPUPOOL_TEST_DEVICE === 'cuda' ? 'cuda' : 'host';
export const WORKER_FILE = fileURLToPath(new URL('./fixtures/slice-worker.mjs', import.meta.url));
if (!existsSync(new URL('../dist/index.js', import.meta.url))) {
  throw new Error('@gpupool/workers tests run against dist/: run `npx tsup` in packages/workers first');
}

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
