/**
 * How a CUDA device reaches the workers: the share carries everything a worker's CudaDevice must
 * agree on with the creator's (pages, and the allocation windows only whole ones of which unmap).
 * A stand-in module plays @gpupool/native, so this runs without a GPU.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Device, MiB, SimulatedDevice } from '@gpupool/core';
import { afterAll, describe, expect, it } from 'vitest';
import { openSharedDevice, shareDevice } from '../dist/index.js';

const dir = mkdtempSync(join(tmpdir(), 'gpupool-device-link-'));
const fakeModule = join(dir, 'fake-native.cjs');
// Records the options each worker-side CudaDevice is opened with.
writeFileSync(
  fakeModule,
  'exports.CudaDevice = class { constructor(options) { this.kind = "cuda"; this.options = options; } };\n',
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A device that says it is CUDA, as CudaDevice does, over a simulated one. */
function cudaLike(allocationBytes: number): Device {
  const device = new SimulatedDevice({ capacityBytes: 512 * MiB });
  return Object.assign(Object.create(device), {
    kind: 'cuda',
    deviceIndex: 0,
    mode: 'vmm',
    allocationBytes,
  }) as Device;
}

describe('device link (CUDA)', () => {
  it('a worker opens its CudaDevice with the creator’s pages and allocation windows', () => {
    const share = shareDevice(cudaLike(128 * MiB), fakeModule);
    expect(share).toMatchObject({ kind: 'cuda', pageBytes: 2 * MiB, allocationBytes: 128 * MiB });
    const opened = openSharedDevice(share) as unknown as { options: Record<string, unknown> };
    expect(opened.options).toEqual({
      deviceIndex: 0,
      mode: 'vmm',
      pageBytes: 2 * MiB,
      allocationBytes: 128 * MiB,
    });
  });

  it('a segment-mode device passes no page options', () => {
    const device = Object.assign(cudaLike(2 * MiB), { mode: 'malloc' });
    const opened = openSharedDevice(shareDevice(device, fakeModule)) as unknown as {
      options: Record<string, unknown>;
    };
    expect(opened.options).toEqual({ deviceIndex: 0, mode: 'malloc' });
  });
});
